/**
 * `exportPrunedModel`: base model + gate checkpoint → a physically smaller ONNX graph that computes exactly the
 * gated model (evaluation gates), with a report of what was removed. Every export is verified: the graph is
 * validated, loaded by onnxruntime, and run against the gated model; any difference beyond the tolerance or any
 * changed label throws.
 *
 * FLOPs per token (the report's definition): 2 × multiply-accumulates of every MatMul/Gemm whose weight is an
 * initializer (MatMul = applied to every token; Gemm = applied once per sequence, as PyTorch exports Linear on
 * 2-D inputs such as the pooler and classifier, so divided by the sequence length), plus per attention block
 * 2·S·(Σ kept Q/K dims) for the scores and 2·S·(Σ kept V dims) for the context at sequence length S.
 * Elementwise ops, Softmax, LayerNorm, Gathers and embeddings are not counted.
 */
import * as ort from "onnxruntime-node";
import { encodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { applyCheckpointParams, type GateCheckpoint } from "../gates/checkpoint";
import { colGateInput, insertGates, rowGateInput } from "../gates/insert";
import { analyzeEncoder, type EncoderAnalysis } from "../import/blocks";
import { findLinearLayers, type LinearLayer } from "../import/linears";
import { freezeAttentionScales } from "../import/scale";
import { tiedLayersByName, usesOf } from "../import/shared-weights";
import {
  type ExportPlan,
  keptWeights,
  type LayerGates,
  type PlanOptions,
  planExport,
  plannedLinears,
} from "./plan";
import {
  argmaxRows,
  feedsFor,
  fixedSequenceOf,
  sessionOptions,
  syntheticBatch,
  type TokenBatch,
  vocabSizeOf,
} from "./run";
import { applyPlan, type HeadLayout } from "./surgery";

export interface ExportOptions {
  /** Batches the equivalence check runs on (a synthetic padded batch is always added). */
  batches?: TokenBatch[];
  /** Max abs difference allowed between gated and exported logits. Default 1e-4. */
  tolerance?: number;
  /** Sequence length at which attention FLOPs per token are stated. Default 128. */
  flopsSeqLen?: number;
  /** Closed residual-stream features: gathered away, kept as zeros, or whichever is cheaper (default). */
  residual?: PlanOptions["residual"];
  gatherCost?: number;
  /** Uneven kept heads: one attention chain per equal-size group (default) or padded to one chain per layer. */
  heads?: HeadLayout;
}

export interface LayerReport {
  node: string;
  role: string;
  inFeatures: number;
  outFeatures: number;
  keptIn: number;
  keptOut: number;
}

export interface ExportReport {
  params: { before: number; after: number };
  /** Weights of the gated layers (in × out summed): what the sparsity figure is about. */
  gatedWeights: { before: number; after: number };
  /** Fraction of gated-layer weights export removed: THE sparsity number. */
  removedFraction: number;
  flopsPerToken: { seqLen: number; before: number; after: number };
  /** The same at the benchmark's sequence lengths (64 and 128), keyed by sequence length. */
  flopsPerTokenAt: Record<string, { before: number; after: number }>;
  layers: LayerReport[];
  attention: {
    output: string;
    heads: number;
    headDim: number;
    keptHeads: number;
    qkDims: number[];
    vDims: number[];
  }[];
  ffn: { down: string; neurons: number; kept: number }[];
  /** Gated layers outside a recognised attention/FFN pattern (handled per layer, still exact). */
  unrecognised: string[];
  equivalence: { batches: number; maxAbsDiff: number; tolerance: number };
}

export class ExportEquivalenceError extends Error {
  override name = "ExportEquivalenceError";
}

/**
 * Parameters: elements of float initializers of rank 1 or more (weights, biases, gains, embeddings). Rank-0
 * floats are graph constants (√dh, GELU's 0.5, mask fill values), not parameters.
 */
export const countParameters = (g: Graph) =>
  g.parameterCount((_, t) => t.dtype === "float32" && t.dims.length > 0);

/** Checks that every node input exists before it is used and every value has one producer. */
export function validateGraph(g: Graph): void {
  const known = new Set([...g.initializers.keys(), ...g.inputs.map((i) => i.name)]);
  for (const n of g.nodes) {
    for (const i of n.inputs)
      if (i && !known.has(i))
        throw new Error(`export produced an invalid graph: ${n.name} reads undefined value '${i}'`);
    for (const o of n.outputs) {
      if (known.has(o)) throw new Error(`export produced an invalid graph: value '${o}' has two producers`);
      known.add(o);
    }
  }
  for (const o of g.outputs) if (!known.has(o.name)) throw new Error(`export lost graph output '${o.name}'`);
}

/** FLOPs per token of a graph's linears and attention, optionally after a plan's pruning. See file comment. */
export function flopsPerToken(analysis: EncoderAnalysis, plan: ExportPlan | null, seqLen: number): number {
  const kept = new Map(
    plan ? plannedLinears(plan).map(({ plan: p }) => [p.folded.layer.node, keptWeights(p)]) : [],
  );
  let flops = 0;
  for (const l of analysis.linears) {
    const macs = kept.get(l.node) ?? l.inFeatures * l.outFeatures;
    flops += (2 * macs) / (l.op === "Gemm" ? seqLen : 1);
  }
  const planned = new Map(plan?.attention.map((a) => [a.block.o.node, a]) ?? []);
  for (const block of analysis.attention) {
    const a = planned.get(block.o.node);
    const qk = a ? a.qk.flat().length : block.heads * block.headDim;
    const v = a ? a.vDims.flat().length : block.heads * block.headDim;
    flops += 2 * seqLen * (qk + v);
  }
  return flops;
}

/**
 * Gates per linear node: the checkpoint's, with a shared weight's tied gate extended to all of its uses (checked
 * against the uses the checkpoint recorded, when it did).
 */
function gatesByLayer(ckpt: GateCheckpoint, linears: LinearLayer[]): Map<string, LayerGates> {
  const gates = new Map<string, LayerGates>();
  const tied = new Map(
    tiedLayersByName(
      ckpt.layers.map((l) => l.node),
      linears,
    ).map((l) => [l.node, l]),
  );
  for (const l of ckpt.layers) {
    for (const [kind, v] of [
      ["row", l.rowGate],
      ["col", l.colGate],
    ] as const)
      if (v.some((x) => !(x >= 0 && x <= 1)))
        throw new Error(`checkpoint ${kind} gate of '${l.node}' has values outside [0, 1]`);
    const uses = usesOf(tied.get(l.node)!).map((u) => u.node);
    if (l.uses && l.uses.join() !== uses.join())
      throw new Error(
        `checkpoint ties the gate of '${l.node}' to ${l.uses.join(", ")}, but its weight is read by ${uses.join(", ")}`,
      );
    for (const u of uses) gates.set(u, { row: l.rowGate, col: l.colGate });
  }
  return gates;
}

/** The gated model (task graph + gate inputs) and the feeds that set its gates to the evaluation values. */
export function gatedModel(
  task: Graph,
  ckpt: GateCheckpoint,
): { graph: Graph; gateFeeds: Record<string, ort.Tensor> } {
  const layers = tiedLayersByName(
    ckpt.layers.map((l) => l.node),
    findLinearLayers(task),
  );
  const graph = insertGates(task.clone(), layers);
  const gateFeeds: Record<string, ort.Tensor> = {};
  for (const l of ckpt.layers) {
    gateFeeds[rowGateInput(l.node)] = new ort.Tensor("float32", Float32Array.from(l.rowGate), [
      l.rowGate.length,
    ]);
    gateFeeds[colGateInput(l.node)] = new ort.Tensor("float32", Float32Array.from(l.colGate), [
      l.colGate.length,
    ]);
  }
  return { graph, gateFeeds };
}

async function logitsOf(
  session: ort.InferenceSession,
  g: Graph,
  batch: TokenBatch,
  extra: Record<string, ort.Tensor> = {},
): Promise<{ data: Float32Array; cols: number }> {
  const name = g.outputs.find((o) => o.name === "logits")?.name ?? g.outputs[0].name;
  const out = (await session.run(feedsFor(g, batch, extra), [name]))[name];
  return { data: out.data as Float32Array, cols: Number(out.dims.at(-1)) };
}

/**
 * Runs gated and exported models on the batches; throws unless logits agree within tolerance and labels match.
 * `exportedBytes`: `encodeModel(exported)`, when the caller already has it.
 */
export async function checkEquivalence(
  gated: { graph: Graph; gateFeeds: Record<string, ort.Tensor> },
  exported: Graph,
  batches: TokenBatch[],
  tolerance: number,
  exportedBytes?: Uint8Array,
): Promise<number> {
  const opts = sessionOptions(1);
  // One session at a time: the gated model's logits on every batch first (a few values per row), then the
  // exported model's compared with them. Both sessions alive together cost another copy of the weights (0.5 GB
  // on BERT-base) at what was the peak of `sluice export`.
  const reference: Awaited<ReturnType<typeof logitsOf>>[] = [];
  const ref = await ort.InferenceSession.create(encodeModel(gated.graph), opts);
  try {
    for (const batch of batches) reference.push(await logitsOf(ref, gated.graph, batch, gated.gateFeeds));
  } finally {
    await ref.release();
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(exportedBytes ?? encodeModel(exported), opts);
  } catch (err) {
    throw new Error(`onnxruntime rejects the exported model: ${err instanceof Error ? err.message : err}`);
  }
  let maxAbsDiff = 0;
  try {
    for (const [i, batch] of batches.entries()) {
      const a = reference[i];
      const b = await logitsOf(session, exported, batch);
      if (a.data.length !== b.data.length)
        throw new ExportEquivalenceError(
          `batch ${i}: exported logits have ${b.data.length} values, gated ${a.data.length}`,
        );
      for (let j = 0; j < a.data.length; j++) {
        const d = Math.abs(a.data[j] - b.data[j]);
        if (!(d <= tolerance))
          throw new ExportEquivalenceError(
            `exported model differs from the gated model: batch ${i}, logit ${j}: ${b.data[j]} vs ${a.data[j]} (|diff| ${d} > ${tolerance})`,
          );
        maxAbsDiff = Math.max(maxAbsDiff, d);
      }
      const la = argmaxRows(a.data, a.cols);
      const lb = argmaxRows(b.data, b.cols);
      const row = la.findIndex((l, r) => l !== lb[r]);
      if (row >= 0)
        throw new ExportEquivalenceError(
          `exported model predicts label ${lb[row]} for batch ${i} row ${row}, the gated model ${la[row]}`,
        );
    }
  } finally {
    await session.release();
  }
  return maxAbsDiff;
}

function report(
  task: Graph,
  exported: Graph,
  analysis: EncoderAnalysis,
  plan: ExportPlan,
  gates: Map<string, LayerGates>,
  seqLen: number,
  maxAbsDiff: number,
  batches: number,
  tolerance: number,
): ExportReport {
  const planned = plannedLinears(plan);
  const byNode = new Map(planned.map((p) => [p.plan.folded.layer.node, p]));
  let before = 0;
  let after = 0;
  // A shared weight is counted once: export writes one pruned copy that all of its uses read.
  const counted = new Set<string>();
  for (const node of gates.keys()) {
    const p = byNode.get(node)!;
    if (counted.has(p.plan.folded.layer.weight)) continue;
    counted.add(p.plan.folded.layer.weight);
    before += p.plan.folded.layer.inFeatures * p.plan.folded.layer.outFeatures;
    after += keptWeights(p.plan);
  }
  return {
    params: { before: countParameters(task), after: countParameters(exported) },
    gatedWeights: { before, after },
    removedFraction: before === 0 ? 0 : 1 - after / before,
    flopsPerToken: {
      seqLen,
      before: flopsPerToken(analysis, null, seqLen),
      after: flopsPerToken(analysis, plan, seqLen),
    },
    flopsPerTokenAt: Object.fromEntries(
      [64, 128].map((s) => [
        String(s),
        { before: flopsPerToken(analysis, null, s), after: flopsPerToken(analysis, plan, s) },
      ]),
    ),
    layers: planned.map(({ role, plan: p }) => ({
      node: p.folded.layer.node,
      role,
      inFeatures: p.folded.layer.inFeatures,
      outFeatures: p.folded.layer.outFeatures,
      keptIn: p.out.length === 0 ? 0 : p.read.length,
      keptOut: p.out.length,
    })),
    attention: plan.attention.map((a) => ({
      output: a.block.o.node,
      heads: a.block.heads,
      headDim: a.block.headDim,
      keptHeads: a.vDims.filter((d) => d.length > 0).length,
      qkDims: a.qk.map((d) => d.length),
      vDims: a.vDims.map((d) => d.length),
    })),
    ffn: plan.ffn.map((f) => ({
      down: f.block.down.node,
      neurons: f.block.up.outFeatures,
      kept: f.neurons.length,
    })),
    unrecognised: plan.generic.map((p) => p.folded.layer.node),
    equivalence: { batches, maxAbsDiff, tolerance },
  };
}

/**
 * Folds the checkpoint's evaluation gates into the base model, removes every closed row and column (propagated
 * through attention heads and FFN neurons), and verifies the result against the gated model. Also returns the
 * verified graph's encoding (`bytes`, what onnxruntime ran), so that callers need not encode it again.
 */
export async function exportPrunedModel(
  base: Graph,
  ckpt: GateCheckpoint,
  opts: ExportOptions = {},
): Promise<{ graph: Graph; bytes: Uint8Array; report: ExportReport }> {
  const tolerance = opts.tolerance ?? 1e-4;
  const seqLen = opts.flopsSeqLen ?? 128;
  const task = applyCheckpointParams(base, ckpt).toposort();
  // Import froze shape-computed attention scales already; a graph that did not come through import gets the
  // same here, since surgery shrinks the very dims such a scale is read from.
  freezeAttentionScales(task, analyzeEncoder(task).attention);
  const batches = [
    ...(opts.batches ?? []),
    syntheticBatch(vocabSizeOf(task), 4, fixedSequenceOf(task) ?? 12),
  ];
  const { exported, report: result } = prune(task, ckpt, opts, seqLen, batches.length, tolerance);
  const bytes = encodeModel(exported);
  result.equivalence.maxAbsDiff = await checkEquivalence(
    gatedModel(task, ckpt),
    exported,
    batches,
    tolerance,
    bytes,
  );
  return { graph: exported, bytes, report: result };
}

/**
 * Plan, surgery and report (its maxAbsDiff still to be measured). A function of its own so that the plan, which
 * holds every gated layer's folded weight (0.34 GB on BERT-base), is garbage before the equivalence check's
 * sessions are made.
 */
function prune(
  task: Graph,
  ckpt: GateCheckpoint,
  opts: ExportOptions,
  seqLen: number,
  batches: number,
  tolerance: number,
): { exported: Graph; report: ExportReport } {
  const analysis = analyzeEncoder(task);
  const gates = gatesByLayer(ckpt, analysis.linears);
  const plan = planExport(task, analysis, gates, { residual: opts.residual, gatherCost: opts.gatherCost });
  const exported = applyPlan(task.clone(), plan, opts.heads);
  exported.name = `${task.name}-pruned`;
  validateGraph(exported);
  return {
    exported,
    report: report(task, exported, analysis, plan, gates, seqLen, Number.NaN, batches, tolerance),
  };
}
