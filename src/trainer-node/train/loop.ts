/**
 * The training loop: gates (FineGates and variants), LoRA or head-only, all through one engine (training graph
 * on onnxruntime-node, AdamW in Node). Reproducible by construction: every random draw comes from an Rng seeded
 * by (seed, purpose, step or epoch), so a run resumed from a checkpoint continues exactly as the uninterrupted
 * run would have.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Graph } from "../../core/onnx/graph";
import { Rng } from "../../core/random";
import { CHECKPOINT_FORMAT, type GateCheckpoint, prepareTaskGraph, tensorToJson } from "../gates/checkpoint";
import {
  closedGateFraction,
  createGateMethod,
  type GateLayerShape,
  type GateMethod,
  type GateMethodName,
  type LayerGateValues,
  LayerLocalRemoval,
  type RemovalModel,
} from "../gates/finegates";
import type { HardConcreteOptions } from "../gates/hardconcrete";
import type { LayerSelector } from "../import/linears";
import { epochBatches, makeBatch, sequentialBatches, type TokenizedSplit } from "./data";
import { buildTrainGraphs, loraA, type TrainGraphs, type TrainMethod } from "./graphs";
import { AdamW, type AdamWState } from "./optimizer";
import { exportRemovalModel } from "./removal";
import { type Device, TrainerSession } from "./session";

export interface TrainOptions {
  base: Graph;
  baseInfo?: { name: string; sha256: string };
  task: { name: string; labels: string[] };
  train: TokenizedSplit;
  validation: TokenizedSplit;
  method?: TrainMethod;
  /** Gate method when method = gates. */
  gates?: GateMethodName;
  targetSparsity?: number;
  lambda?: number;
  lr?: number;
  weightDecay?: number;
  /** Length of the main phase: steps, or epochs over the training split (default 3 epochs). */
  steps?: number;
  epochs?: number;
  batchSize?: number;
  seed?: number;
  /** Evaluate every N steps (default: once per epoch, and at the end). */
  evalEvery?: number;
  /** Stop when validation accuracy has not improved for this many evaluations (default: off). */
  patience?: number;
  trainBiases?: boolean;
  loraRank?: number;
  loraAlpha?: number;
  /** Gates only: rank of low-rank adapters learned inside the gates (graphs.ts); export merges them. */
  adapterRank?: number;
  recoverySteps?: number;
  /** Method-specific gate settings (e.g. hardconcrete's lagrangianLr, warmupFraction, initLogAlpha). */
  gateOptions?: Partial<HardConcreteOptions>;
  selector?: LayerSelector;
  pooling?: "cls" | "mean";
  device?: Device;
  threads?: number;
  /** Directory for checkpoints (written at every evaluation and at the end). */
  checkpointDir?: string;
  /** Continue from checkpointDir's trainer state. */
  resume?: boolean;
  /** Stop after this many steps in this process (to test resume); the checkpoint is written first. */
  stopAfter?: number;
  /** Called at every evaluation with the evaluation gates (the sparsity study records their histogram). */
  onEvaluate?: (point: CurvePoint, evalGates: LayerGateValues[] | undefined) => void;
  /** Progress output (default: stderr); pass null for silence. */
  progress?: ProgressSink | null;
}

export interface CurvePoint {
  step: number;
  phase: "main" | "recovery";
  loss: number;
  taskLoss: number;
  sparsityLoss: number;
  /** Validation accuracy at this point (evaluation gates), when an evaluation ran. */
  accuracy?: number;
  valLoss?: number;
  closedGates: number;
  /** Fraction of gated-layer weights export would remove (at evaluation points). */
  removedFraction?: number;
}

export interface TrainResult {
  checkpoint: GateCheckpoint;
  curve: CurvePoint[];
  steps: number;
  accuracy: number;
  /** Fraction of gated-layer weights export removes (counted by export's planner when it understands the model). */
  removedFraction: number;
  removalCounting: string;
  closedGates: number;
  trainableParams: number;
  notes: string[];
  stoppedEarly: boolean;
  interrupted: boolean;
}

export interface ProgressSink {
  update(line: string): void;
  done(line: string): void;
}

/** A progress line on stderr: rewritten in place on a TTY, printed every ~5% otherwise. */
export function stderrProgress(total: () => number): ProgressSink {
  const tty = process.stderr.isTTY;
  let lastPrinted = -1;
  return {
    update(line) {
      if (tty) process.stderr.write(`\r\x1b[2K${line}`);
      else {
        const step = Number(/step (\d+)/.exec(line)?.[1] ?? 0);
        const every = Math.max(1, Math.floor(total() / 20));
        if (step - lastPrinted >= every || step === total()) {
          lastPrinted = step;
          process.stderr.write(`${line}\n`);
        }
      }
    },
    done(line) {
      process.stderr.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
  };
}

/** Independent seeded streams: (seed, purpose, index) -> Rng. */
export function streamRng(seed: number, purpose: number, index: number): Rng {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(purpose + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) ^ Math.imul(index + 1, 0x846ca68b);
  h = Math.imul(h ^ (h >>> 15), 0x27d4eb2d);
  return new Rng((h ^ (h >>> 16)) >>> 0);
}
const STREAM = { init: 0, batches: 1, noise: 2 } as const;

interface TrainerState {
  format: "sluice-trainer-state/1";
  config: Record<string, unknown>;
  step: number;
  phase: "main" | "recovery";
  mainEnd: number;
  recoveryEnd: number;
  params: Record<string, string>;
  optimizer: AdamWState;
  methodState: Record<string, unknown>;
  curve: CurvePoint[];
  best: { accuracy: number; sinceImproved: number };
  notes: string[];
}

const f32ToB64 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function b64ToF32Into(s: string, into: Float32Array, name: string) {
  const buf = Buffer.from(s, "base64");
  if (buf.byteLength !== into.byteLength) throw new Error(`trainer state for ${name} has the wrong size`);
  new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(buf);
}

function writeJsonAtomic(file: string, value: unknown) {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(value));
  renameSync(tmp, file);
}

export const GATES_FILE = "gates.json";
export const STATE_FILE = "trainer-state.json";
export const CURVE_FILE = "curve.json";

/** Kaiming-uniform(a=√5) as torch initialises Linear (and PEFT initialises LoRA A): U(−1/√in, 1/√in). */
function initLora(graphs: TrainGraphs, params: Map<string, Float32Array>, rng: Rng) {
  for (const l of graphs.layers) {
    const a = params.get(loraA(l.node));
    if (!a) continue;
    const bound = 1 / Math.sqrt(l.inFeatures);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
  }
}

/** Export's own removal count when its analysis understands the model, else layer-local counting. */
function removalModelFor(
  base: Graph,
  numLabels: number,
  pooling: "cls" | "mean" | undefined,
  shapes: GateLayerShape[],
): RemovalModel & { kind: string } {
  if (shapes.length === 0) return { kind: "none", removedFraction: () => 0 };
  try {
    const model = exportRemovalModel(prepareTaskGraph(base, numLabels, pooling ?? "cls").graph);
    model.removedFraction(
      shapes.map((s) => ({
        node: s.node,
        row: new Float32Array(s.rows).fill(1),
        col: new Float32Array(s.cols).fill(1),
      })),
    );
    return model;
  } catch {
    const local = new LayerLocalRemoval(shapes);
    return { kind: "layer-local", removedFraction: (g) => local.removedFraction(g) };
  }
}

export async function trainGates(opts: TrainOptions): Promise<TrainResult> {
  const method = opts.method ?? "gates";
  const gateMethodName = opts.gates ?? "finegates";
  const seed = opts.seed ?? 1;
  const batchSize = opts.batchSize ?? 16;
  const targetSparsity = opts.targetSparsity ?? 0.4;
  const lambda = opts.lambda ?? 50;
  const lr = opts.lr ?? 1e-3;
  const numLabels = opts.task.labels.length;
  if (opts.train.ids.length < batchSize)
    throw new Error(
      `the training split has ${opts.train.ids.length} examples, fewer than one batch of ${batchSize}`,
    );
  if (opts.validation.ids.length === 0) throw new Error("the validation split is empty");
  const stepsPerEpoch = Math.floor(opts.train.ids.length / batchSize);
  const mainSteps = opts.steps ?? (opts.epochs ?? 3) * stepsPerEpoch;
  const evalEvery = opts.evalEvery ?? stepsPerEpoch;

  const graphs = buildTrainGraphs(opts.base, {
    numLabels,
    method,
    pooling: opts.pooling,
    selector: opts.selector,
    trainBiases: opts.trainBiases,
    loraRank: opts.loraRank,
    loraAlpha: opts.loraAlpha,
    adapterRank: method === "gates" ? opts.adapterRank : undefined,
  });
  const adapters =
    method === "gates" && opts.adapterRank
      ? { rank: opts.adapterRank, alpha: opts.loraAlpha ?? 2 * opts.adapterRank }
      : undefined;
  const initRng = streamRng(seed, STREAM.init, 0);
  const params = new Map<string, Float32Array>();
  for (const [name, t] of graphs.trainable) params.set(name, Float32Array.from(t.data as Float32Array));
  initLora(graphs, params, initRng);
  const shapes = graphs.layers.map((l) => ({ node: l.node, rows: l.outFeatures, cols: l.inFeatures }));
  const removal = removalModelFor(opts.base, numLabels, opts.pooling, shapes);
  const gates: GateMethod | undefined =
    method === "gates"
      ? createGateMethod(
          gateMethodName,
          shapes,
          {
            ...opts.gateOptions,
            targetSparsity,
            lambda,
            recoverySteps: opts.recoverySteps,
            removal,
            mainSteps,
          },
          initRng,
        )
      : undefined;

  // One optimizer over everything trainable: model tensors and gate logits.
  const all = new Map<string, Float32Array>([...params, ...(gates?.params ?? [])]);
  const optimizer = new AdamW(all, { lr, weightDecay: opts.weightDecay });
  const trainableParams = [...all.values()].reduce((s, a) => s + a.length, 0);

  const config = {
    method,
    gates: method === "gates" ? gateMethodName : undefined,
    gateSettings: gates?.settings(),
    seed,
    batchSize,
    lr,
    weightDecay: optimizer.options.weightDecay,
    mainSteps,
    trainBiases: !!opts.trainBiases,
    loraRank: method === "lora" ? (opts.loraRank ?? 8) : undefined,
    adapters,
    train: opts.train.ids.length,
    task: opts.task.name,
  };

  let step = 0;
  let phase: "main" | "recovery" = "main";
  let mainEnd = mainSteps;
  let recoveryEnd = mainSteps;
  let curve: CurvePoint[] = [];
  let best = { accuracy: -1, sinceImproved: 0 };
  let notes: string[] = [];
  const dir = opts.checkpointDir;
  if (opts.resume) {
    if (!dir) throw new Error("--resume needs a checkpoint directory");
    const state = JSON.parse(readFileSync(path.join(dir, STATE_FILE), "utf8")) as TrainerState;
    if (JSON.stringify(state.config) !== JSON.stringify(config))
      throw new Error(
        `the checkpoint in ${dir} was trained with different settings: ${JSON.stringify(state.config)}`,
      );
    for (const [name, p] of all) {
      if (!(name in state.params)) throw new Error(`checkpoint has no tensor ${name}`);
      b64ToF32Into(state.params[name], p, name);
    }
    optimizer.load(state.optimizer);
    gates?.loadState(state.methodState);
    ({ step, phase, mainEnd, recoveryEnd, curve, best, notes } = state);
  }

  const session = await TrainerSession.create(graphs, params, { device: opts.device, threads: opts.threads });
  const progress = opts.progress === null ? undefined : (opts.progress ?? stderrProgress(() => total()));
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of gates?.params ?? []) grads.set(name, new Float32Array(p.length));

  const evaluate = async (): Promise<{ accuracy: number; valLoss: number }> => {
    const evalGates = gates?.evalGates();
    let correct = 0;
    let lossSum = 0;
    for (const idx of sequentialBatches(opts.validation.ids.length, Math.max(batchSize, 32))) {
      const batch = makeBatch(opts.validation, idx);
      const logits = await session.logits(batch, evalGates);
      for (let b = 0; b < batch.batch; b++) {
        const row = logits.subarray(b * numLabels, (b + 1) * numLabels);
        let arg = 0;
        let max = -Infinity;
        for (let k = 0; k < numLabels; k++) if (row[k] > max) [max, arg] = [row[k], k];
        if (arg === batch.labels[b]) correct++;
        let z = 0;
        for (let k = 0; k < numLabels; k++) z += Math.exp(row[k] - max);
        lossSum += -(row[batch.labels[b]] - max - Math.log(z));
      }
    }
    const n = opts.validation.ids.length;
    return { accuracy: correct / n, valLoss: lossSum / n };
  };

  const closedNow = () => {
    const g = gates?.evalGates();
    return g ? closedGateFraction(g) : 0;
  };
  const sparsityNow = () => {
    const g = gates?.evalGates();
    return g
      ? { closedGates: closedGateFraction(g), removedFraction: removal.removedFraction(g) }
      : { closedGates: 0, removedFraction: 0 };
  };

  const saveCheckpoint = (evalGates?: LayerGateValues[]) => {
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    writeJsonAtomic(path.join(dir, GATES_FILE), gateCheckpoint(evalGates ?? gates?.evalGates()));
    const state: TrainerState = {
      format: "sluice-trainer-state/1",
      config,
      step,
      phase,
      mainEnd,
      recoveryEnd,
      params: Object.fromEntries([...all].map(([k, v]) => [k, f32ToB64(v)])),
      optimizer: optimizer.state(),
      methodState: gates?.saveState() ?? {},
      curve,
      best,
      notes,
    };
    writeJsonAtomic(path.join(dir, STATE_FILE), state);
    writeJsonAtomic(path.join(dir, CURVE_FILE), { config, curve, notes });
  };

  const gateCheckpoint = (evalGates?: LayerGateValues[]): GateCheckpoint => ({
    format: CHECKPOINT_FORMAT,
    base: opts.baseInfo ?? { name: opts.base.name, sha256: "" },
    task: { name: opts.task.name, labels: opts.task.labels },
    head: graphs.head,
    method: method === "gates" ? gateMethodName : method,
    settings: {
      ...(gates?.settings() ?? {}),
      lr,
      batchSize,
      trainBiases: !!opts.trainBiases,
      ...(method === "lora"
        ? { rank: opts.loraRank ?? 8, alpha: opts.loraAlpha ?? 2 * (opts.loraRank ?? 8) }
        : {}),
    },
    // LoRA adapters sit after the layer (y = xW + b + s·xAB), so export merges them into W exactly as well.
    ...(adapters || method === "lora"
      ? {
          adapters: adapters ?? {
            rank: opts.loraRank ?? 8,
            alpha: opts.loraAlpha ?? 2 * (opts.loraRank ?? 8),
          },
        }
      : {}),
    seed,
    step,
    layers: (evalGates ?? []).map((g) => ({
      node: g.node,
      rowGate: Array.from(g.row),
      colGate: Array.from(g.col),
    })),
    params: Object.fromEntries(
      [...params].map(([name, data]) => [
        name,
        tensorToJson({ dtype: "float32", dims: graphs.trainable.get(name)!.dims, data }),
      ]),
    ),
  });

  let stoppedEarly = false;
  let interrupted = false;
  let lastEval = curve.findLast((c) => c.accuracy !== undefined);
  let startedHere = 0;
  let epochOrder: { epoch: number; batches: number[][] } | undefined;

  const total = () => (phase === "main" ? mainEnd : recoveryEnd);
  while (step < total()) {
    if (opts.stopAfter !== undefined && startedHere >= opts.stopAfter) {
      interrupted = true;
      break;
    }
    const epoch = Math.floor(step / stepsPerEpoch);
    if (epochOrder?.epoch !== epoch)
      epochOrder = {
        epoch,
        batches: epochBatches(opts.train.ids.length, batchSize, streamRng(seed, STREAM.batches, epoch)),
      };
    const batch = makeBatch(opts.train, epochOrder.batches[step % stepsPerEpoch]);
    const sampled = gates?.sample(streamRng(seed, STREAM.noise, step));
    const out = await session.step(batch, sampled);
    for (const [name, g] of out.paramGrads) grads.set(name, g);
    const { sparsityLoss, penalty } = gates?.backward(out.gateGrads, grads) ?? {
      sparsityLoss: 0,
      penalty: 0,
    };
    optimizer.update(grads);
    step++;
    startedHere++;

    const point: CurvePoint = {
      step,
      phase,
      loss: out.loss + penalty,
      taskLoss: out.loss,
      sparsityLoss,
      closedGates: closedNow(),
    };
    if (step % evalEvery === 0 || step === total()) {
      point.removedFraction = sparsityNow().removedFraction;
      const e = await evaluate();
      point.accuracy = e.accuracy;
      point.valLoss = e.valLoss;
      if (e.accuracy > best.accuracy) best = { accuracy: e.accuracy, sinceImproved: 0 };
      else best.sinceImproved++;
      opts.onEvaluate?.(point, gates?.evalGates());
    }
    curve.push(point);
    if (point.accuracy !== undefined) lastEval = point;
    progress?.update(
      `step ${step}/${total()}${phase === "recovery" ? " (recovery)" : ""} loss ${point.loss.toFixed(4)} ` +
        `task ${point.taskLoss.toFixed(4)} sparsity ${point.sparsityLoss.toFixed(4)} ` +
        `acc ${lastEval?.accuracy?.toFixed(3) ?? "-"} closed ${(100 * point.closedGates).toFixed(1)}% ` +
        `removed ${lastEval?.removedFraction !== undefined ? `${(100 * lastEval.removedFraction).toFixed(1)}%` : "-"}`,
    );
    if (
      phase === "main" &&
      opts.patience !== undefined &&
      best.sinceImproved >= opts.patience &&
      step < mainEnd
    ) {
      notes.push(`early stop at step ${step}: no accuracy improvement in ${opts.patience} evaluations`);
      stoppedEarly = true;
      mainEnd = step;
    }
    if (phase === "main" && step === mainEnd) {
      const before = sparsityNow();
      notes.push(
        `main phase ended at step ${step}: ${(100 * before.closedGates).toFixed(2)}% of gates closed, ` +
          `${(100 * before.removedFraction).toFixed(2)}% of gated weights removed` +
          (point.accuracy !== undefined ? `, validation accuracy ${point.accuracy.toFixed(4)}` : ""),
      );
      const end = gates?.endOfTraining?.() ?? { recoverySteps: 0 };
      if (end.note) notes.push(end.note);
      if (end.recoverySteps > 0) {
        phase = "recovery";
        recoveryEnd = step + end.recoverySteps;
      }
    }
    if (point.accuracy !== undefined || step === total()) saveCheckpoint();
  }
  if (interrupted) saveCheckpoint();

  const lastAccuracy = curve.at(-1)?.accuracy;
  const finalEval =
    lastAccuracy !== undefined && !interrupted ? { accuracy: lastAccuracy } : await evaluate();
  const evalGates = gates?.evalGates();
  const { closedGates, removedFraction } = sparsityNow();
  const checkpoint = gateCheckpoint(evalGates);
  progress?.done(
    `${interrupted ? "interrupted" : "done"} after ${step} steps: accuracy ${finalEval.accuracy.toFixed(3)}, closed gates ${(100 * closedGates).toFixed(1)}%, removed ${(100 * removedFraction).toFixed(1)}% of gated weights`,
  );
  await session.release();
  return {
    checkpoint,
    curve,
    steps: step,
    accuracy: finalEval.accuracy,
    removedFraction,
    removalCounting: removal.kind,
    closedGates,
    trainableParams,
    notes,
    stoppedEarly,
    interrupted,
  };
}
