/**
 * `exportVariant`: the library function behind `sluice export` and the export step of `sluice train`. Imported
 * user model + checkpoint → pruned model (verified equal to the gated model), test-split accuracy, latency grid,
 * and the variant directory with its manifest, which it returns typed.
 */
import { readFile } from "node:fs/promises";
import type { Manifest } from "../../core/manifest";
import { encodeModel } from "../../core/onnx/codec";
import { encodeBatch, loadTokenizer } from "../../core/tokenizer";
import type { DataFieldFlags, DataFields } from "../data/fields";
import { loadDataFile, loadTask } from "../data/tasks";
import { applyCheckpointParams, type GateCheckpoint } from "../gates/checkpoint";
import { maxSequenceLength } from "../import/limits";
import type { UserModel } from "../import/load";
import { compareEdgeLatency, type EdgeLatencyStats, type EdgeModel } from "./edge-latency";
import { exportPrunedModel } from "./export";
import { compareOnGrid, LATENCY_GRID } from "./latency";
import {
  DEFAULT_GRAPH_OPTIMIZATION,
  type GraphOptimization,
  type OptimizeReport,
  optimizeForEdge,
} from "./optimize";
import type { ResidualPolicy } from "./plan";
import { type Precision, type QuantizeOptions, quantizeGraph } from "./quantize";
import { fixedSequenceOf, type TokenBatch } from "./run";
import type { HeadLayout } from "./surgery";
import { type EvalSet, writeVariant } from "./variant";

const EVAL_BATCH = 32;

/**
 * Tokenizes a task split into batches (padded to a fixed-length model's length), labels in the checkpoint's
 * order. A data file's texts are read from `fields` (what training read: the checkpoint's `task.fields`), and a
 * pair task's examples go through the tokenizer's pair template with their token type ids.
 */
export async function loadEvalSet(opts: {
  source: string;
  split: string;
  tokenizerFile: string;
  maxLen: number;
  labels: string[];
  fixedSeqLen?: number;
  fields?: DataFieldFlags;
}): Promise<EvalSet> {
  const dataset = opts.source.endsWith(".jsonl")
    ? loadDataFile(opts.source, opts.fields)
    : loadTask(opts.source);
  const examples = dataset.splits[opts.split];
  if (!examples?.length)
    throw new Error(`'${dataset.name}' has no '${opts.split}' split (has ${Object.keys(dataset.splits)})`);
  const tok = loadTokenizer(await readFile(opts.tokenizerFile, "utf8"));
  const labels = examples.map((ex) => {
    const idx = opts.labels.indexOf(dataset.labels[ex.label]);
    if (idx < 0)
      throw new Error(
        `eval label '${dataset.labels[ex.label]}' is not one of the checkpoint's labels (${opts.labels.join(", ")})`,
      );
    return idx;
  });
  const pairs = dataset.pairFields !== undefined;
  const batches: TokenBatch[] = [];
  for (let i = 0; i < examples.length; i += EVAL_BATCH) {
    const chunk = examples.slice(i, i + EVAL_BATCH);
    const seconds = pairs ? chunk.map((e) => e.textPair ?? "") : undefined;
    const enc = encodeBatch(
      tok,
      chunk.map((e) => e.text),
      opts.maxLen,
      opts.fixedSeqLen,
      seconds,
    );
    // Single texts carry no token types: feeds give the model zeros, as before pairs existed.
    batches.push(pairs ? enc : { ...enc, tokenTypeIds: undefined });
  }
  return {
    name: `${dataset.name}/${opts.split}`,
    batches,
    labels,
    sha256: dataset.fingerprints[opts.split],
    textPairs: pairs,
    ...(dataset.fields ? { fields: dataset.fields } : {}),
  };
}

/**
 * Refuses an eval set whose examples are not what the model was trained on: pairs for a single-text run, or
 * single texts for a pair run (its accuracy and evidence would describe another task).
 */
export function checkEvalInput(evalSet: EvalSet, trained: DataFields | undefined, what: string): void {
  const trainedPairs = trained?.textPair !== undefined;
  if (trainedPairs === (evalSet.textPairs ?? false)) return;
  throw new Error(
    trainedPairs
      ? `${what} was trained on sentence pairs (fields ${trained?.text}, ${trained?.textPair}) but ${evalSet.name} holds single texts; evaluate on pair data (its fields named by --text-field / --text-pair-field)`
      : `${what} was trained on single texts but ${evalSet.name} holds sentence pairs (${evalSet.fields?.text}, ${evalSet.fields?.textPair})`,
  );
}

export interface ExportVariantOptions {
  model: UserModel;
  ckpt: GateCheckpoint;
  outDir: string;
  evalSet: EvalSet;
  tokenizerFile: string;
  /** Registry model name. */
  name: string;
  /** Requested sparsity recorded in the manifest. */
  target?: number;
  runs?: number;
  residual?: ResidualPolicy;
  /** How uneven kept heads are laid out (export/surgery.ts HeadLayout); default grouped. */
  heads?: HeadLayout;
  /** "int8": the pruned model's linear layers quantized (export/quantize.ts) before it is measured and written. */
  precision?: Precision;
  quantize?: QuantizeOptions;
  /** "edge": onnxruntime's fusions applied at export, checked in onnxruntime-web (export/optimize.ts). */
  optimize?: GraphOptimization;
  log?: (line: string) => void;
}

export async function exportVariant(o: ExportVariantOptions): Promise<Manifest> {
  const log = o.log ?? ((line: string) => console.error(line));
  if (o.ckpt.base.sha256 !== o.model.sha256)
    throw new Error(
      `${o.model.file} (sha256 ${o.model.sha256.slice(0, 12)}…) is not the model this checkpoint was trained on (${o.ckpt.base.name}, sha256 ${o.ckpt.base.sha256.slice(0, 12)}…)`,
    );
  checkEvalInput(o.evalSet, o.ckpt.task.fields, "the checkpoint");
  log(`exporting ${o.ckpt.layers.length} gated layers of ${o.ckpt.base.name} ...`);
  // `bytes`: the pruned model encoded once (by the equivalence check), then reused by the latency grid, the
  // evaluation and model.onnx: each encoding of a BERT-base is another 0.44 GB, and several alive at once set
  // `sluice export`'s peak memory.
  let { graph, bytes, report } = await exportPrunedModel(o.model.graph, o.ckpt, {
    batches: o.evalSet.batches,
    residual: o.residual,
    heads: o.heads,
  });
  log(
    `removed ${(100 * report.removedFraction).toFixed(1)}% of gated-layer weights; parameters ` +
      `${report.params.before} -> ${report.params.after}; equivalent to the gated model on ` +
      `${o.evalSet.labels.length} ${o.evalSet.name} examples (max |diff| ${report.equivalence.maxAbsDiff.toExponential(1)})`,
  );
  let quantization: ReturnType<typeof quantizeGraph>["report"] | undefined;
  const fp32Graph = graph;
  if (o.precision === "int8") {
    const q = quantizeGraph(graph, o.quantize);
    graph = q.graph;
    // The fp32 encoding is neither measured nor written: let it go before the int8 one is made.
    bytes = new Uint8Array();
    bytes = encodeModel(graph);
    quantization = q.report;
    log(
      `int8 (${q.report.form} op form): ${q.report.quantized.length} linear layers quantized per output channel, ` +
        `${q.report.keptFp32.length} kept fp32 (${[...new Set(q.report.keptFp32.map((k) => k.reason))].join(", ") || "none"})` +
        (q.report.embeddings.length ? `, ${q.report.embeddings.length} int8 embedding tables` : ""),
    );
  }
  // Read from the graph before fusion: the position-table analysis knows the ONNX ops, not the fused ones.
  const fixed = fixedSequenceOf(o.model.graph);
  const maxLen = fixed ?? (await maxSequenceLength(graph));
  const optimized = await optimizeForEdge(
    graph,
    o.evalSet.batches,
    o.optimize ?? DEFAULT_GRAPH_OPTIMIZATION,
    undefined,
    bytes,
  );
  logOptimization(optimized.report, log);
  if (optimized.report.applied) {
    graph = optimized.graph;
    bytes = new Uint8Array(); // let the unfused encoding go before the fused one is made
    bytes = optimized.bytes ?? encodeModel(graph);
  }
  log(`measuring latency (dense fp32 vs pruned${quantization ? " int8" : ""}, interleaved) ...`);
  // Dense = the same task model (head, trained tensors) without pruning.
  const denseGraph = applyCheckpointParams(o.model.graph, o.ckpt);
  const denseBytes = encodeModel(denseGraph);
  const grid = await compareOnGrid(
    { bytes: denseBytes, graph: denseGraph },
    { bytes, graph },
    {
      runs: o.runs,
      grid: fixed ? LATENCY_GRID.map((c) => ({ ...c, seq: fixed })) : undefined,
    },
  );
  for (const l of grid)
    log(
      `  batch ${l.batch} x ${l.seqLen}, ${l.threads} thread(s): ${l.dense.p50Ms.toFixed(2)} -> ${l.pruned.p50Ms.toFixed(2)} ms (${l.speedup.toFixed(2)}x)`,
    );
  const serving = grid.find((l) => l.batch === 1 && l.threads === 1) ?? grid[0];
  const edge = await measureEdgePair(
    {
      dense: { bytes: denseBytes, graph: denseGraph, fusedAtExport: false },
      pruned: { bytes, graph, fusedAtExport: optimized.report.applied },
    },
    { batch: serving.batch, seq: serving.seqLen, runs: o.runs },
    "dense fp32",
    `pruned${quantization ? " int8" : ""}`,
    log,
  );
  return writeVariant(o.outDir, {
    modelName: o.name.toLowerCase(),
    graph,
    report,
    ckpt: o.ckpt,
    base: {
      name: o.ckpt.base.name,
      sha256: o.model.sha256,
      ...(o.model.report.precision ? { precision: o.model.report.precision.source } : {}),
    },
    target: o.target,
    tokenizerFile: o.tokenizerFile,
    maxSequenceLength: maxLen,
    evalSet: o.evalSet,
    denseGraph,
    latency: serving.pruned,
    latencyGrid: grid,
    ...(edge ? { edgeLatency: { reference: edge.dense, variant: edge.pruned, ms: edge.ms } } : {}),
    precision: o.precision ?? "fp32",
    quantization,
    fp32Graph: quantization ? fp32Graph : undefined,
    optimization: optimized.report,
    modelBytes: bytes,
    denseBytes,
  });
}

/** One line saying what the optimisation step did, or why it kept the unfused graph. */
export function logOptimization(r: OptimizeReport, log: (line: string) => void): void {
  if (r.applied)
    log(
      `optimized for the edge: ${r.nodes.before} -> ${r.nodes.after} nodes (${Object.entries(r.fusedOps)
        .map(([op, n]) => `${n} ${op.replace(/^.*:/, "")}`)
        .join(", ")}); onnxruntime-web runs it, max |diff| ${r.maxAbsDiff?.toExponential(1)} vs unfused, ` +
        `${r.predictionsChanged} of ${r.rows} predictions changed (${((r.ms ?? 0) / 1000).toFixed(1)} s)`,
    );
  else if (r.reason) log(`graph optimisation skipped, the unfused graph is written: ${r.reason}`);
  if (r.pack)
    log(
      r.pack.applied
        ? `int8 packing: ${r.pack.linears} int8 linears packed into ${r.pack.groups} (one per shared input)`
        : `int8 packing not kept: ${r.pack.reason ?? "nothing to pack"}`,
    );
}

/**
 * A variant and the model it is compared with (dense, or its fp32 source), timed interleaved in onnxruntime-web's
 * wasm build; logged with the time the step took. Undefined, with the reason logged, when the wasm build cannot
 * run them: the manifest then has no edge figure and the router ranks by onnxruntime-node's.
 */
export async function measureEdgePair(
  models: { dense: EdgeModel; pruned: EdgeModel },
  opts: { batch: number; seq: number; runs?: number },
  referenceName: string,
  variantName: string,
  log: (line: string) => void,
): Promise<{ dense: EdgeLatencyStats; pruned: EdgeLatencyStats; ms: number } | undefined> {
  const t0 = performance.now();
  try {
    const r = await compareEdgeLatency(models, opts);
    const ms = performance.now() - t0;
    log(
      `  edge (${r.pruned.runtime}), batch ${r.pruned.batch} x ${r.pruned.seqLen}: ${referenceName} ${r.dense.p50Ms.toFixed(2)} -> ` +
        `${variantName} ${r.pruned.p50Ms.toFixed(2)} ms (${(r.dense.p50Ms / r.pruned.p50Ms).toFixed(2)}x), median of ${r.pruned.runs} runs each (${(ms / 1000).toFixed(1)} s)`,
    );
    return { dense: r.dense, pruned: r.pruned, ms };
  } catch (err) {
    log(
      `  edge latency not measured (the router will rank by onnxruntime-node's): ${(err as Error).message}`,
    );
    return undefined;
  }
}
