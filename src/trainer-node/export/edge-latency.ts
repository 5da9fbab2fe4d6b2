/**
 * Latency of ONNX models in the runtime that serves them: onnxruntime-web's wasm build on one thread (what a
 * Worker isolate gets), at the session optimisation level the gateway uses for each (src/gateway/sessions.ts:
 * "disabled" for a graph fused at export, else "all"). Timed in the wasm child process (wasm-child.ts says why),
 * interleaved like export/latency.ts's onnxruntime-node figures, median and p95 over the timed runs.
 */
import type { LatencyFigures } from "../../core/manifest";
import { decodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { maxSequenceLength } from "../import/limits";
import { fixedSequenceOf, syntheticBatch, vocabSizeOf } from "./run";
import type { WasmTimingJob, WasmTimingResult } from "./wasm-check";
import { runWasmChild, wasmBatch } from "./wasm-child";

/** Fewest timed runs an edge figure is taken from (the router ranks on it; 3 runs are noise on a loaded machine). */
export const EDGE_MIN_RUNS = 15;
export const EDGE_WARMUP = 3;

export interface EdgeModel {
  bytes: Uint8Array;
  /** The decoded graph, when the caller has it (read for the sequence length and vocabulary). */
  graph?: Graph;
  /** Whether the graph was fused at export (manifest graphOptimization "edge"): the gateway then does not optimise it. */
  fusedAtExport: boolean;
}

export interface EdgeLatencyStats extends LatencyFigures {
  meanMs: number;
  runs: number;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];

/**
 * Interleaved wasm latency of several models at batch × seq (a model with fewer positions is timed at its
 * longest sequence, recorded in seqLen), `max(runs, EDGE_MIN_RUNS)` timed runs each. Throws when the child
 * cannot run a model, naming it.
 */
export async function compareEdgeLatency(
  models: Record<string, EdgeModel>,
  opts: { batch: number; seq: number; runs?: number; warmup?: number },
): Promise<Record<string, EdgeLatencyStats>> {
  const runs = Math.max(opts.runs ?? 20, EDGE_MIN_RUNS);
  const warmup = opts.warmup ?? EDGE_WARMUP;
  const names = Object.keys(models);
  const prepared = await Promise.all(
    names.map(async (name) => {
      const m = models[name];
      const graph = m.graph ?? decodeModel(m.bytes);
      const seq = fixedSequenceOf(graph) ?? Math.min(opts.seq, (await maxSequenceLength(graph)) ?? opts.seq);
      return {
        name,
        bytes: m.bytes,
        seq,
        level: m.fusedAtExport ? ("disabled" as const) : ("all" as const),
        batch: syntheticBatch(vocabSizeOf(graph), opts.batch, seq, 1, false),
      };
    }),
  );
  const results = await runWasmChild<WasmTimingResult>(
    prepared.map((p) => p.bytes),
    (files): WasmTimingJob => ({
      kind: "time",
      models: prepared.map((p, i) => ({ file: files[i], level: p.level, batch: wasmBatch(p.batch) })),
      warmup,
      runs,
    }),
  );
  const out: Record<string, EdgeLatencyStats> = {};
  for (const [i, p] of prepared.entries()) {
    const r = results[i];
    if (!r?.ok) throw new Error(`onnxruntime-web could not time '${p.name}': ${r ? r.error : "no result"}`);
    const sorted = [...r.timesMs].sort((a, b) => a - b);
    out[p.name] = {
      p50Ms: quantile(sorted, 0.5),
      p95Ms: quantile(sorted, 0.95),
      meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
      runs: sorted.length,
      batch: opts.batch,
      seqLen: p.seq,
      runtime: r.runtime,
    };
  }
  return out;
}

/** The manifest's `latency.edge` from a measurement (the figures the schema keeps). */
export function edgeFigures(s: EdgeLatencyStats): LatencyFigures {
  return { p50Ms: s.p50Ms, p95Ms: s.p95Ms, batch: s.batch, seqLen: s.seqLen, runtime: s.runtime };
}
