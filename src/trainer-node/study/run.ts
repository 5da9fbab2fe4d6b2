/**
 * One cell of a method study: train (gates with a given method and target, LoRA, or head only) on a frozen base
 * for a task, then measure what a user would get: gated runs are exported (the physically pruned model, checked
 * equivalent to the gated one) and the EXPORTED model is evaluated on the test split; LoRA and head-only runs are
 * evaluated by the engine's evaluation graph with their trained tensors. Also records the removed fraction (as
 * export counts it), parameter and FLOP reductions, trainable parameters, steps, wall time and the histogram of
 * evaluation gates at every evaluation (how the gates evolve: bimodal or all alike).
 */

import type { Graph } from "../../core/onnx/graph";
import { encodeText } from "../../core/tokenizer";
import { loadTask } from "../data/tasks";
import { loadTokenizerFile } from "../data/tokenizer-file";
import { countParameters, exportPrunedModel, flopsPerToken } from "../export/export";
import type { TokenBatch } from "../export/run";
import { evaluateAccuracy } from "../export/variant";
import { prepareTaskGraph, tensorFromJson } from "../gates/checkpoint";
import type { GateMethodName, LayerGateValues } from "../gates/finegates";
import type { HardConcreteOptions } from "../gates/hardconcrete";
import { analyzeEncoder } from "../import/blocks";
import { makeBatch, sequentialBatches, type TokenizedSplit } from "../train/data";
import { buildTrainGraphs, type TrainMethod } from "../train/graphs";
import { trainGates } from "../train/loop";
import { TrainerSession } from "../train/session";

export interface StudyTask {
  name: string;
  labels: string[];
  seq: number;
  train: TokenizedSplit;
  validation: TokenizedSplit;
  test: TokenizedSplit;
  fingerprint: string;
}

/** Tokenizes a built-in task's splits at `seq` tokens with the given tokenizer file. */
export function loadStudyTask(name: string, tokenizerFile: string, seq: number): StudyTask {
  const task = loadTask(name);
  const tok = loadTokenizerFile(tokenizerFile);
  const padId = tok.specialIds.pad;
  const split = (examples: { text: string; label: number }[]): TokenizedSplit => ({
    ids: examples.map((e) => encodeText(tok, e.text, seq)),
    labels: examples.map((e) => e.label),
    padId,
  });
  return {
    name,
    labels: task.labels,
    seq,
    train: split(task.splits.train),
    validation: split(task.splits.validation),
    test: split(task.splits.test),
    fingerprint: task.fingerprints.all ?? "",
  };
}

export interface CellSpec {
  task: string;
  method: TrainMethod;
  /** Gate method (method = gates). */
  gates?: GateMethodName;
  /** Target sparsity (method = gates). */
  target: number;
  /** Rank of low-rank adapters inside the gates (method = gates; absent = gates alone). */
  adapterRank?: number;
}

export interface CellBudget {
  steps: number;
  recoverySteps: number;
  evalEvery: number;
  batchSize: number;
  lr: number;
  lambda?: number;
  loraRank?: number;
  seed: number;
  threads: number;
  trainBiases: boolean;
  /** Pooling of the added classification head (first token, or mean over the sequence). */
  pooling: "cls" | "mean";
  gateOptions?: Partial<HardConcreteOptions>;
}

/** Fraction of gates per bin: [exactly 0, (0, .1], (.1, .2], …, (.9, 1]]. */
export type GateHistogram = number[];
export const HISTOGRAM_BINS = ["0", ...Array.from({ length: 10 }, (_, k) => `≤${((k + 1) / 10).toFixed(1)}`)];

export function gateHistogram(gates: readonly LayerGateValues[]): GateHistogram {
  const bins = new Array<number>(HISTOGRAM_BINS.length).fill(0);
  let n = 0;
  for (const g of gates)
    for (const v of [...g.row, ...g.col]) {
      bins[v <= 0 ? 0 : 1 + Math.min(9, Math.ceil(v * 10) - 1)]++;
      n++;
    }
  return bins.map((b) => (n ? b / n : 0));
}

export interface CellResult extends CellSpec {
  testAccuracy: number;
  validationAccuracy: number;
  /** Fraction of gated-layer weights the exported model no longer has (0 for dense methods). */
  removedFraction: number;
  params: { before: number; after: number };
  flopsPerToken: { seqLen: number; before: number; after: number };
  trainableParams: number;
  steps: number;
  wallSeconds: number;
  equivalenceMaxAbsDiff?: number;
  /** Whether |removed − target| ≤ 0.02 (what `sluice train` demands). */
  targetMet?: boolean;
  histogram: { step: number; phase: string; bins: GateHistogram }[];
  settings: Record<string, unknown>;
  notes: string[];
}

const toTokenBatch = (split: TokenizedSplit, idx: number[]): TokenBatch => {
  const b = makeBatch(split, idx);
  return { inputIds: b.inputIds, attentionMask: b.attentionMask, batch: b.batch, seqLen: b.seq };
};

/** Accuracy of a LoRA/head-only result on a split, through the engine's evaluation graph. */
async function engineAccuracy(
  base: Graph,
  spec: CellSpec,
  budget: CellBudget,
  numLabels: number,
  params: Record<string, unknown>,
  split: TokenizedSplit,
): Promise<number> {
  const graphs = buildTrainGraphs(base, {
    numLabels,
    method: spec.method,
    trainBiases: budget.trainBiases,
    loraRank: budget.loraRank,
    pooling: budget.pooling,
  });
  const values = new Map<string, Float32Array>();
  for (const name of graphs.trainable.keys()) {
    const t = params[name];
    if (!t) throw new Error(`checkpoint has no tensor ${name}`);
    values.set(name, tensorFromJson(t as Parameters<typeof tensorFromJson>[0]).data as Float32Array);
  }
  const session = await TrainerSession.create(graphs, values, { threads: budget.threads });
  let correct = 0;
  try {
    for (const idx of sequentialBatches(split.ids.length, 64)) {
      const batch = makeBatch(split, idx);
      const logits = await session.logits(batch);
      for (let b = 0; b < batch.batch; b++) {
        let arg = 0;
        for (let k = 1; k < numLabels; k++)
          if (logits[b * numLabels + k] > logits[b * numLabels + arg]) arg = k;
        if (arg === batch.labels[b]) correct++;
      }
    }
  } finally {
    await session.release();
  }
  return correct / split.ids.length;
}

export async function runCell(
  base: Graph,
  baseInfo: { name: string; sha256: string },
  task: StudyTask,
  spec: CellSpec,
  budget: CellBudget,
): Promise<CellResult> {
  const started = performance.now();
  const histogram: CellResult["histogram"] = [];
  const result = await trainGates({
    base,
    baseInfo,
    task: { name: task.name, labels: task.labels },
    train: task.train,
    validation: task.validation,
    method: spec.method,
    gates: spec.gates,
    targetSparsity: spec.target,
    lambda: budget.lambda,
    lr: budget.lr,
    steps: budget.steps,
    recoverySteps: budget.recoverySteps,
    evalEvery: budget.evalEvery,
    batchSize: budget.batchSize,
    seed: budget.seed,
    threads: budget.threads,
    trainBiases: budget.trainBiases,
    loraRank: budget.loraRank,
    adapterRank: spec.adapterRank,
    pooling: budget.pooling,
    gateOptions: budget.gateOptions,
    progress: null,
    onEvaluate: (point, gates) => {
      if (gates) histogram.push({ step: point.step, phase: point.phase, bins: gateHistogram(gates) });
    },
  });
  const numLabels = task.labels.length;
  const testBatches = sequentialBatches(task.test.ids.length, 64).map((idx) => toTokenBatch(task.test, idx));
  const common = {
    ...spec,
    validationAccuracy: result.accuracy,
    trainableParams: result.trainableParams,
    steps: result.steps,
    histogram,
    settings: result.checkpoint.settings as Record<string, unknown>,
    notes: result.notes,
  };
  if (spec.method !== "gates") {
    const testAccuracy = await engineAccuracy(
      base,
      spec,
      budget,
      numLabels,
      result.checkpoint.params,
      task.test,
    );
    const taskGraph = prepareTaskGraph(base, numLabels, budget.pooling).graph;
    const flops = flopsPerToken(analyzeEncoder(taskGraph.toposort()), null, task.seq);
    const params = countParameters(taskGraph);
    return {
      ...common,
      testAccuracy,
      removedFraction: 0,
      params: { before: params, after: params },
      flopsPerToken: { seqLen: task.seq, before: flops, after: flops },
      wallSeconds: (performance.now() - started) / 1000,
    };
  }
  // Export (throws unless the pruned model equals the gated one on the test batches) and evaluate it.
  const { graph, report } = await exportPrunedModel(base, result.checkpoint, {
    batches: testBatches.slice(0, 2),
    flopsSeqLen: task.seq,
  });
  const testAccuracy = await evaluateAccuracy(graph, {
    name: `${task.name}/test`,
    batches: testBatches,
    labels: task.test.labels,
  });
  return {
    ...common,
    testAccuracy,
    removedFraction: report.removedFraction,
    params: report.params,
    flopsPerToken: report.flopsPerToken,
    equivalenceMaxAbsDiff: report.equivalence.maxAbsDiff,
    targetMet: Math.abs(report.removedFraction - spec.target) <= 0.02,
    wallSeconds: (performance.now() - started) / 1000,
  };
}
