/**
 * Export-time graph optimisation for the edge (`sluice export --optimize edge`): the fusions onnxruntime applies
 * at session creation (BiasGelu / Gelu, FusedMatMul, LayerNormalization, MatMulIntegerToFloat /
 * DynamicQuantizeMatMul for the int8 form, ...) are applied once, at export, so the gateway's cold start does not
 * redo them in wasm for every isolate.
 *
 * Not hand-written: onnxruntime-node itself writes the graph after its own fusions (SessionOptions
 * `optimizedModelFilePath`) at level "extended" — not "all", which adds CPU-EP-specific layout transforms
 * (NCHWc) that only that build may run. The result is accepted only if
 *  1. every node is in the ONNX or com.microsoft domain and none is a layout op (NCHWc / Nhwc*);
 *  2. onnxruntime-web's wasm build loads it with graph optimisations disabled and runs it (a separate process:
 *     wasm-check.ts says why) — so only fusions whose ops exist in the wasm build are kept;
 *  3. its logits on the first EDGE_CHECK_ROWS eval rows, in that wasm build, are within EDGE_TOLERANCE of the unfused graph's as
 *     the gateway has always run it (default optimisation level), with every predicted label identical;
 *  4. its inputs and outputs are the unfused graph's.
 * Otherwise export keeps the unfused graph and says why (`report.reason`); it never fails because of this step.
 *
 * With `contrib` (off by default), export/edge-fusion.ts also fuses residual Add + LayerNormalization into
 * SkipLayerNormalization and each attention chain into MultiHeadAttention (contrib ops of the wasm build that
 * onnxruntime's optimiser does not form on these graphs). That graph goes through the same checks; if it fails
 * one, the graph with onnxruntime's fusions alone is written (`report.contrib` says which). Off by default:
 * bench/edge-ab.ts measured no gain from it inside workerd on the reference encoder's dense fp32 model, and a
 * gain on its 0.4 int8 twin, where `sluice quantize --contrib-fusions` asks for it (docs/edge-heads.md).
 *
 * With `pack` (off by default), export/pack-int8.ts also packs the int8 linears that read one activation (Q, K, V)
 * into one DynamicQuantizeMatMul + Split, in the same candidate graph and under the same checks.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import type { GraphOptimization } from "../../core/manifest";
import { decodeModel, encodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { ioSignatureOf } from "../../core/onnx/signature";
import { type ContribFusionReport, fuseContribOps } from "./edge-fusion";
import { type PackReport, packInt8Linears } from "./pack-int8";
import { argmaxRows, type TokenBatch } from "./run";
import type { WasmJob, WasmResult } from "./wasm-check";
import { runWasmChild, wasmBatch } from "./wasm-child";

export type { GraphOptimization };
export const GRAPH_OPTIMIZATIONS: readonly GraphOptimization[] = ["edge", "none"];
/** What `sluice export` / `sluice quantize` / `sluice train` write unless told otherwise (bench:fusion). */
export const DEFAULT_GRAPH_OPTIMIZATION: GraphOptimization = "edge";
/** Largest |Δlogit| accepted between the fused graph and the unfused one, both in onnxruntime-web wasm. */
export const EDGE_TOLERANCE = 1e-4;
/**
 * Eval rows the wasm check runs on (whole batches, from the start of the split). Three wasm passes over a
 * BERT-base eval split would take longer than training; the variant's accuracy is still measured on every row.
 */
export const EDGE_CHECK_ROWS = 32;

/** The leading batches holding at least `rows` rows (all of them when the split is smaller). */
function leadingBatches(batches: TokenBatch[], rows: number): TokenBatch[] {
  const out: TokenBatch[] = [];
  let n = 0;
  for (const b of batches) {
    if (n >= rows) break;
    out.push(b);
    n += b.batch;
  }
  return out;
}

/** The onnxruntime level that writes the fused graph: "all" would add CPU-EP layout ops (NCHWc). */
const EXPORT_LEVEL = "extended";
const ALLOWED_DOMAINS = new Set(["", "ai.onnx", "com.microsoft"]);
/** Ops only the native CPU EP's layout transformers emit (and the wasm build need not have). */
const LAYOUT_OP = /^(Nchwc|Nhwc|Reorder)/;

export interface OptimizeReport {
  requested: GraphOptimization;
  /** Whether the written graph is the fused one. */
  applied: boolean;
  /** Why the unfused graph was kept (when `applied` is false and edge was requested). */
  reason?: string;
  nodes: { before: number; after: number };
  /** Op counts (domain:op) of the fused graph that the unfused one does not have, e.g. com.microsoft:BiasGelu. */
  fusedOps: Record<string, number>;
  /** Max |Δlogit|, fused (wasm, optimisations disabled) vs unfused (wasm, default level), on the eval batches. */
  maxAbsDiff?: number;
  /** The same against the unfused graph run literally (wasm, optimisations disabled), for the record. */
  maxAbsDiffVsLiteral?: number;
  /** Eval rows whose predicted label differs between the two (must be 0). */
  predictionsChanged?: number;
  rows?: number;
  /** Time the step took (optimisation, checks in the wasm child), ms. */
  ms?: number;
  /** The contrib fusions on top of onnxruntime's (edge-fusion.ts): how many, or why they were not kept. */
  contrib?: ContribFusionReport & { applied: boolean; reason?: string };
  /** The packed int8 projections (pack-int8.ts), when asked for: how many, and whether the graph kept them. */
  pack?: PackReport & { applied: boolean; reason?: string };
}

const opKey = (n: Graph["nodes"][number]) => `${n.domain || "ai.onnx"}:${n.op}`;

function opCounts(g: Graph): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of g.nodes) m.set(opKey(n), (m.get(opKey(n)) ?? 0) + 1);
  return m;
}

/** The graph as onnxruntime-node writes it after its session-creation fusions at level "extended". */
export async function ortFusedGraph(graph: Graph, bytes?: Uint8Array): Promise<Graph> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "sluice-optimize-"));
  try {
    const file = path.join(dir, "fused.onnx");
    const session = await ort.InferenceSession.create(bytes ?? encodeModel(graph), {
      graphOptimizationLevel: EXPORT_LEVEL,
      optimizedModelFilePath: file,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: "sequential",
    });
    await session.release();
    return decodeModel(await readFile(file));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Nodes the wasm build may lack: other domains than ONNX / com.microsoft, or CPU-EP layout ops. */
export function nonPortableOps(g: Graph): string[] {
  return [
    ...new Set(g.nodes.filter((n) => !ALLOWED_DOMAINS.has(n.domain) || LAYOUT_OP.test(n.op)).map(opKey)),
  ];
}

/** Runs models in onnxruntime-web's wasm build, in a child process (wasm-child.ts), on the batches. */
export function runInWasm(
  models: { bytes: Uint8Array; level: WasmJob["models"][number]["level"] }[],
  batches: TokenBatch[],
): Promise<WasmResult[]> {
  return runWasmChild<WasmResult>(
    models.map((m) => m.bytes),
    (files): WasmJob => ({
      models: models.map((m, i) => ({ file: files[i], level: m.level })),
      batches: batches.map(wasmBatch),
    }),
  );
}

function maxAbsDiff(a: number[], b: number[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * The graph to write for `requested`: the fused one when every check passes, else `graph` itself, with the
 * reason. `batches` are the eval batches (the equivalence check runs on them).
 */
export async function optimizeForEdge(
  graph: Graph,
  batches: TokenBatch[],
  requested: GraphOptimization = DEFAULT_GRAPH_OPTIMIZATION,
  tolerance = EDGE_TOLERANCE,
  /** `encodeModel(graph)` when the caller has it already (a BERT-base encoding is 0.44 GB). */
  graphBytes?: Uint8Array,
  /** Also apply edge-fusion.ts's contrib fusions (see the file comment). */
  contrib = false,
  /** Also pack the int8 linears that share an input (pack-int8.ts). */
  pack = false,
): Promise<{ graph: Graph; report: OptimizeReport; bytes?: Uint8Array }> {
  const t0 = performance.now();
  const report: OptimizeReport = {
    requested,
    applied: false,
    nodes: { before: graph.nodes.length, after: graph.nodes.length },
    fusedOps: {},
  };
  const keep = (reason?: string) => ({
    graph,
    report: { ...report, reason, ...(requested === "edge" ? { ms: performance.now() - t0 } : {}) },
  });
  if (requested === "none") return keep();
  if (batches.length === 0) return keep("no eval batches to check the fused graph on");
  batches = leadingBatches(batches, EDGE_CHECK_ROWS);
  let fused: Graph;
  try {
    fused = await ortFusedGraph(graph, graphBytes);
  } catch (err) {
    return keep(`onnxruntime could not optimise the graph: ${(err as Error).message}`);
  }
  const foreign = nonPortableOps(fused);
  if (foreign.length) return keep(`the fused graph has ops the wasm build may lack: ${foreign.join(", ")}`);
  if (JSON.stringify(ioSignatureOf(fused)) !== JSON.stringify(ioSignatureOf(graph)))
    return keep("onnxruntime changed the graph's inputs or outputs");
  const contribGraph = fused.clone();
  let contribCounts: ContribFusionReport = { skipLayerNorm: 0, multiHeadAttention: 0 };
  let packCounts: PackReport = { groups: 0, linears: 0 };
  let contribError: string | undefined;
  try {
    if (contrib) contribCounts = fuseContribOps(contribGraph);
    if (pack) packCounts = packInt8Linears(contribGraph);
  } catch (err) {
    contribError = `the ${contrib ? "contrib fusions" : "int8 packing"} failed: ${(err as Error).message}`;
  }
  // One candidate holds both (the contrib fusions and the packing), checked together in wasm.
  const withContrib =
    !contribError && contribCounts.skipLayerNorm + contribCounts.multiHeadAttention + packCounts.groups > 0;
  // What is checked is what will be written: the fused graph as this codebase encodes it.
  const fusedBytes = encodeModel(fused);
  const contribBytes = withContrib ? encodeModel(contribGraph) : undefined;
  const unfusedBytes = graphBytes ?? encodeModel(graph);
  let results: WasmResult[];
  try {
    results = await runInWasm(
      [
        { bytes: unfusedBytes, level: "all" }, // how the gateway has always run the unfused graph
        { bytes: unfusedBytes, level: "disabled" },
        { bytes: fusedBytes, level: "disabled" }, // how it runs a fused one
        ...(contribBytes ? [{ bytes: contribBytes, level: "disabled" as const }] : []),
      ],
      batches,
    );
  } catch (err) {
    return keep(`the onnxruntime-web check could not run: ${(err as Error).message}`);
  }
  const [ref, literal, ortOnly, contribResult] = results;
  if (!ref?.ok) return keep(`onnxruntime-web cannot run the unfused graph: ${ref ? ref.error : "no result"}`);
  const cols = ref.output.length / batches.reduce((n, b) => n + b.batch, 0);
  const a = argmaxRows(Float32Array.from(ref.output), cols);
  /** Why a candidate's wasm result is not acceptable, or undefined when it is. */
  const refusal = (out: WasmResult | undefined) => {
    if (!out?.ok)
      return `onnxruntime-web's wasm build cannot run the fused graph: ${out ? out.error : "no result"}`;
    if (out.output.length !== ref.output.length) return "the fused graph's output has another shape";
    const b = argmaxRows(Float32Array.from(out.output), cols);
    const diff = maxAbsDiff(ref.output, out.output);
    const changed = a.filter((p, i) => p !== b[i]).length;
    if (diff > tolerance || changed > 0)
      return (
        `the fused graph differs from the unfused one in onnxruntime-web: max |Δlogit| ${diff.toExponential(2)} ` +
        `(tolerance ${tolerance}), ${changed} of ${a.length} predictions changed`
      );
    return undefined;
  };
  const contribRefusal = withContrib
    ? refusal(contribResult)
    : (contribError ?? (contrib || pack ? "nothing to fuse" : "not requested"));
  const useContrib = withContrib && contribRefusal === undefined;
  const chosen = useContrib ? contribResult : ortOnly;
  if (useContrib) {
    fused = contribGraph;
  }
  if (contrib)
    report.contrib = {
      ...contribCounts,
      applied: useContrib,
      ...(contribRefusal ? { reason: contribRefusal } : {}),
    };
  if (pack)
    report.pack = {
      ...packCounts,
      applied: useContrib,
      ...(contribRefusal ? { reason: contribRefusal } : {}),
    };
  const before = opCounts(graph);
  for (const [op, n] of opCounts(fused)) if (!before.has(op)) report.fusedOps[op] = n;
  report.nodes.after = fused.nodes.length;
  report.rows = a.length;
  const reason = refusal(chosen);
  if (reason) return keep(reason);
  const out = chosen as Extract<WasmResult, { ok: true }>;
  report.maxAbsDiff = maxAbsDiff(ref.output, out.output);
  if (literal?.ok) report.maxAbsDiffVsLiteral = maxAbsDiff(literal.output, out.output);
  report.predictionsChanged = 0;
  return {
    graph: fused,
    bytes: useContrib ? contribBytes : fusedBytes,
    report: { ...report, applied: true, ms: performance.now() - t0 },
  };
}
