/**
 * A trainer output directory for one exported variant: `model.onnx`, `tokenizer.json` (copied), `manifest.json`
 * (validated by the one manifest schema before it is written) and `export-report.json` (the full export report
 * and latency grid, for people; the registry reads only the manifest).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { encodeBitset } from "../../core/evidence";
import { MANIFEST_SCHEMA_VERSION, type Manifest, parseManifest } from "../../core/manifest";
import { encodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { ioSignatureOf } from "../../core/onnx/signature";
import type { DataFields } from "../data/fields";
import type { GateCheckpoint } from "../gates/checkpoint";
import { type EdgeLatencyStats, edgeFigures } from "./edge-latency";
import type { ExportReport } from "./export";
import type { LatencyComparison, LatencyStats } from "./latency";
import type { OptimizeReport } from "./optimize";
import type { Precision, QuantizeReport } from "./quantize";
import { argmaxRows, feedsFor, sessionOptions, type TokenBatch } from "./run";

/** Tokenized evaluation examples; `labels` follow the batches' rows in order. */
export interface EvalSet {
  name: string;
  batches: TokenBatch[];
  labels: number[];
  /** Fingerprint of the data (e.g. the dataset split's); defaults to a hash of the tokens and labels. */
  sha256?: string;
  /** Whether the examples are sentence pairs (batches carry token type ids); absent: single texts. */
  textPairs?: boolean;
  /** The data fields the texts were read from (data files). */
  fields?: DataFields;
}

export const sha256Hex = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** sha256 over the token ids, masks and labels of an eval set (when the data has no fingerprint of its own). */
export function evalSetSha256(set: Pick<EvalSet, "batches" | "labels">): string {
  const h = createHash("sha256");
  for (const b of set.batches) {
    h.update(`${b.batch}x${b.seqLen};`);
    h.update(new Uint8Array(b.inputIds.buffer, b.inputIds.byteOffset, b.inputIds.byteLength));
    h.update(new Uint8Array(b.attentionMask.buffer, b.attentionMask.byteOffset, b.attentionMask.byteLength));
    // Pairs only (some type id not 0): single-text sets hash as they did before token types existed.
    const t = b.tokenTypeIds;
    if (t?.some((x) => x !== 0n)) h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  h.update(JSON.stringify(set.labels));
  return h.digest("hex");
}

/** Accuracy of a model (its `logits` output) on an eval set. */
export async function evaluateAccuracy(graph: Graph, set: EvalSet): Promise<number> {
  const predictions = await predict(graph, set);
  return predictions.filter((p, i) => p === set.labels[i]).length / predictions.length;
}

/**
 * The predicted label (argmax of `logits`) of every example of an eval set, in order. `bytes`, when the caller
 * already holds `encodeModel(graph)`, saves encoding (and holding) another copy of the weights.
 */
export async function predict(graph: Graph, set: EvalSet, bytes?: Uint8Array): Promise<number[]> {
  const rows = set.batches.reduce((n, b) => n + b.batch, 0);
  if (rows !== set.labels.length)
    throw new Error(`eval set '${set.name}' has ${rows} rows but ${set.labels.length} labels`);
  if (rows === 0) throw new Error(`eval set '${set.name}' is empty`);
  const session = await ort.InferenceSession.create(bytes ?? encodeModel(graph), sessionOptions(1));
  const output = graph.outputs.find((o) => o.name === "logits")?.name ?? graph.outputs[0].name;
  const predictions: number[] = [];
  try {
    for (const b of set.batches) {
      const out = (await session.run(feedsFor(graph, b), [output]))[output];
      predictions.push(...argmaxRows(out.data as Float32Array, Number(out.dims.at(-1))));
    }
  } finally {
    await session.release();
  }
  return predictions;
}

export interface VariantInput {
  /** Registry model name (lowercase letters, digits, '.', '_', '-'). */
  modelName: string;
  graph: Graph;
  report: ExportReport;
  ckpt: GateCheckpoint;
  /** The base model the gates were trained on (defaults to the checkpoint's record of it). */
  base?: { name: string; sha256: string; precision?: "fp32" | "fp16" };
  /** Sparsity the user asked for (defaults to the checkpoint's `settings.target`, else 0). */
  target?: number;
  tokenizerFile?: string;
  /** Longest sequence the model takes, when its graph proves a limit. */
  maxSequenceLength?: number;
  evalSet: EvalSet;
  /** The unpruned model with the same head and trained tensors: predictions are compared with it. */
  denseGraph?: Graph;
  /** Latency recorded in the manifest (the registry's and router's figure). */
  latency: LatencyStats;
  /** The full dense-vs-pruned grid, kept in export-report.json. */
  latencyGrid?: LatencyComparison[];
  /**
   * The variant's latency in onnxruntime-web wasm (manifest `latency.edge`) and the model it was timed beside
   * (export-report.json), with the time the step took; absent when it could not be measured.
   */
  edgeLatency?: { variant: EdgeLatencyStats; reference: EdgeLatencyStats; ms: number };
  /** Weight precision (default fp32). An int8 variant also passes its quantization report and fp32 graph. */
  precision?: Precision;
  quantization?: QuantizeReport;
  /** The same variant in fp32: predictions that changed are counted (metrics.others.predictionsChangedVsFp32). */
  fp32Graph?: Graph;
  /** What export-time graph optimisation did (absent: none was asked for). */
  optimization?: OptimizeReport;
  /** `encodeModel(graph)` and `encodeModel(denseGraph)`, when the caller already made them (not encoded again). */
  modelBytes?: Uint8Array;
  denseBytes?: Uint8Array;
}

/** Accuracy and per-example evidence of a graph on an eval set (what every variant's manifest records). */
export async function evaluateVariant(
  graph: Graph,
  evalSet: EvalSet,
  refs: { denseGraph?: Graph; fp32Graph?: Graph; modelBytes?: Uint8Array; denseBytes?: Uint8Array } = {},
): Promise<{ accuracy: number; metrics: Manifest["metrics"] }> {
  const predictions = await predict(graph, evalSet, refs.modelBytes);
  const correct = predictions.map((p, i) => p === evalSet.labels[i]);
  const accuracy = correct.filter(Boolean).length / correct.length;
  const dense = refs.denseGraph ? await predict(refs.denseGraph, evalSet, refs.denseBytes) : undefined;
  const others: Record<string, number> = {};
  if (refs.fp32Graph) {
    const fp32 = await predict(refs.fp32Graph, evalSet);
    others.predictionsChangedVsFp32 = fp32.filter((p, i) => p !== predictions[i]).length;
  }
  return {
    accuracy,
    metrics: {
      accuracy,
      others,
      evalSet: {
        name: evalSet.name,
        sha256: evalSet.sha256 ?? evalSetSha256(evalSet),
        size: evalSet.labels.length,
      },
      evidence: {
        correct: encodeBitset(correct),
        agreesWithDense: dense ? encodeBitset(dense.map((d, i) => d === predictions[i])) : undefined,
      },
    },
  };
}

/** What a quantization report contributes to the manifest's training.hyperparameters (lineage). */
export function quantizationRecord(q: QuantizeReport) {
  return {
    scheme: "dynamic int8, symmetric per output channel",
    opForm: q.form,
    quantizedLayers: q.quantized.length,
    fp32Layers: q.keptFp32.length,
    int8Embeddings: q.embeddings.length > 0,
  };
}

function targetOf(ckpt: GateCheckpoint): number {
  const s = ckpt.settings as Record<string, unknown>;
  const t = s.target ?? s.targetSparsity;
  return typeof t === "number" ? t : 0;
}

/** Writes model.onnx, tokenizer.json (if given), manifest.json and export-report.json into `dir`. */
export async function writeVariant(dir: string, v: VariantInput): Promise<Manifest> {
  await mkdir(dir, { recursive: true });
  const model = v.modelBytes ?? encodeModel(v.graph);
  const { accuracy, metrics } = await evaluateVariant(v.graph, v.evalSet, { ...v, modelBytes: model });
  let tokenizer: Manifest["tokenizer"];
  if (v.tokenizerFile) {
    const bytes = await readFile(v.tokenizerFile);
    await writeFile(path.join(dir, "tokenizer.json"), bytes);
    tokenizer = { file: "tokenizer.json", sha256: sha256Hex(bytes) };
  }
  const trainable =
    v.ckpt.layers.reduce((n, l) => n + l.rowGate.length + l.colGate.length, 0) +
    Object.values(v.ckpt.params).reduce((n, t) => n + t.data.length, 0);
  const manifest = parseManifest({
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    model: { name: v.modelName, task: v.ckpt.task.name },
    base: v.base ?? v.ckpt.base,
    artifact: { file: "model.onnx", sha256: sha256Hex(model), bytes: model.byteLength },
    tokenizer,
    io: ioSignatureOf(v.graph),
    maxSequenceLength: v.maxSequenceLength,
    labels: v.ckpt.task.labels,
    // What one example is, as training read it (the gateway asks callers for pairs when it says so).
    ...(v.ckpt.task.fields
      ? { input: { textPairs: v.ckpt.task.fields.textPair !== undefined, fields: v.ckpt.task.fields } }
      : {}),
    precision: v.precision ?? "fp32",
    graphOptimization: v.optimization?.applied ? "edge" : "none",
    sparsity: {
      target: v.target ?? targetOf(v.ckpt),
      removed: v.report.removedFraction,
      params: v.report.params.after,
      baseParams: v.report.params.before,
      flopsPerToken: v.report.flopsPerToken.after,
      baseFlopsPerToken: v.report.flopsPerToken.before,
    },
    metrics: {
      ...metrics,
      others: { maxAbsDiffVsGated: v.report.equivalence.maxAbsDiff, ...metrics.others },
    },
    latency: {
      p50Ms: v.latency.p50Ms,
      p95Ms: v.latency.p95Ms,
      batch: v.latency.batch,
      seqLen: v.latency.seqLen,
      runtime: v.latency.runtime,
      ...(v.edgeLatency ? { edge: edgeFigures(v.edgeLatency.variant) } : {}),
    },
    training: {
      method: v.ckpt.method,
      gateMethod: v.ckpt.method,
      // Adapters merged into the weights are part of how the variant was made (lineage), so they are recorded.
      hyperparameters: {
        ...v.ckpt.settings,
        ...(v.ckpt.adapters ? { adapters: v.ckpt.adapters } : {}),
        ...(v.quantization ? { quantization: quantizationRecord(v.quantization) } : {}),
      },
      seed: v.ckpt.seed,
      steps: v.ckpt.step,
      trainableParams: trainable,
      createdAt: new Date().toISOString(),
    },
  });
  await writeFile(path.join(dir, "model.onnx"), model);
  await writeFile(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(
    path.join(dir, "export-report.json"),
    `${JSON.stringify({ ...v.report, accuracy, latencyGrid: v.latencyGrid ?? [], ...(v.edgeLatency ? { edgeLatency: v.edgeLatency } : {}), ...(v.quantization ? { quantization: v.quantization } : {}), ...(v.optimization ? { optimization: v.optimization } : {}) }, null, 2)}\n`,
  );
  return manifest;
}
