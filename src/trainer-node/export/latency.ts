/**
 * Latency of ONNX models on onnxruntime-node's CPU provider. Models are compared with interleaved runs (A, B,
 * A, B, ... with the order alternating each round) so that drift on a shared machine (other processes, turbo,
 * thermal) hits both alike; figures are medians and p95 over the timed runs after warm-up.
 */
import os from "node:os";
import * as ort from "onnxruntime-node";
import { decodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { maxSequenceLength } from "../import/limits";
import { feedsFor, fixedSequenceOf, sessionOptions, syntheticBatch, vocabSizeOf } from "./run";

export interface LatencyOptions {
  batch: number;
  seq: number;
  /** Intra-op threads; 0 = all cores (os.availableParallelism()). */
  threads: number;
  /** Timed runs per model (default 30) after `warmup` untimed ones (default 5). */
  runs?: number;
  warmup?: number;
}

export interface LatencyStats {
  p50Ms: number;
  /** Median CPU time of the process per run (user + system, all threads): robust to other processes
   * competing for the cores, and what "CPU time" claims compare. */
  cpuP50Ms: number;
  p95Ms: number;
  meanMs: number;
  runs: number;
  batch: number;
  seqLen: number;
  threads: number;
  runtime: string;
}

export const allThreads = () => os.availableParallelism();

export function runtimeDescription(threads: number): string {
  return `onnxruntime-node ${ort.env.versions.node} cpu ${threads} thread${threads === 1 ? "" : "s"}`;
}

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/**
 * A model to time: its ONNX bytes, or the bytes with the Graph they encode. With the graph, the feeds and
 * sequence length are read from it instead of from a decoded copy (a second copy of the weights while the
 * sessions hold their own: 0.9 GB for a BERT-base pair).
 */
export type LatencyModel = Uint8Array | { bytes: Uint8Array; graph: Graph };

const bytesOf = (m: LatencyModel) => (m instanceof Uint8Array ? m : m.bytes);

/** Interleaved latency of several models on the same inputs. Keys of `models` name the results. */
export async function compareLatency(
  models: Record<string, LatencyModel>,
  opts: LatencyOptions,
): Promise<Record<string, LatencyStats>> {
  const threads = opts.threads === 0 ? allThreads() : opts.threads;
  const runs = opts.runs ?? 30;
  const warmup = opts.warmup ?? 5;
  const entries = await Promise.all(
    Object.entries(models).map(async ([name, model]) => {
      const bytes = bytesOf(model);
      const graph = model instanceof Uint8Array ? decodeModel(bytes) : model.graph;
      // A model with fewer positions than asked for is timed at its longest sequence (recorded in seqLen).
      // A fixed-length export is timed at its length.
      const seq = fixedSequenceOf(graph) ?? Math.min(opts.seq, (await maxSequenceLength(graph)) ?? opts.seq);
      const batch = syntheticBatch(vocabSizeOf(graph), opts.batch, seq, 1, false);
      const session = await ort.InferenceSession.create(bytes, sessionOptions(threads));
      return {
        name,
        session,
        seq,
        feeds: feedsFor(graph, batch),
        times: [] as number[],
        cpu: [] as number[],
      };
    }),
  );
  try {
    for (let round = 0; round < warmup + runs; round++) {
      const order = round % 2 === 0 ? entries : [...entries].reverse();
      for (const e of order) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await e.session.run(e.feeds);
        const dt = performance.now() - t0;
        const c = process.cpuUsage(c0);
        if (round >= warmup) {
          e.times.push(dt);
          e.cpu.push((c.user + c.system) / 1000);
        }
      }
    }
  } finally {
    for (const e of entries) await e.session.release();
  }
  const out: Record<string, LatencyStats> = {};
  for (const e of entries) {
    const sorted = [...e.times].sort((a, b) => a - b);
    out[e.name] = {
      p50Ms: quantile(sorted, 0.5),
      cpuP50Ms: quantile(
        [...e.cpu].sort((a, b) => a - b),
        0.5,
      ),
      p95Ms: quantile(sorted, 0.95),
      meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
      runs,
      batch: opts.batch,
      seqLen: e.seq,
      threads,
      runtime: runtimeDescription(threads),
    };
  }
  return out;
}

/** Latency of one model (median and p95 of `runs` timed runs). */
export async function measureLatency(model: LatencyModel, opts: LatencyOptions): Promise<LatencyStats> {
  return (await compareLatency({ model }, opts)).model;
}

/** The grid: batch 1 × seq 128 and batch 16 × seq 64, 1 thread and all threads, dense vs pruned. */
export const LATENCY_GRID: Omit<LatencyOptions, "runs" | "warmup">[] = [
  { batch: 1, seq: 128, threads: 1 },
  { batch: 1, seq: 128, threads: 0 },
  { batch: 16, seq: 64, threads: 1 },
  { batch: 16, seq: 64, threads: 0 },
];

export interface LatencyComparison {
  batch: number;
  seqLen: number;
  threads: number;
  dense: LatencyStats;
  pruned: LatencyStats;
  /** dense p50 / pruned p50 (wall clock). */
  speedup: number;
  /** dense / pruned median CPU time. */
  cpuSpeedup: number;
}

/** Dense vs pruned over the grid, interleaved per configuration. */
export async function compareOnGrid(
  dense: LatencyModel,
  pruned: LatencyModel,
  opts: { runs?: number; warmup?: number; grid?: typeof LATENCY_GRID } = {},
): Promise<LatencyComparison[]> {
  const out: LatencyComparison[] = [];
  for (const cfg of opts.grid ?? LATENCY_GRID) {
    const r = await compareLatency({ dense, pruned }, { ...cfg, runs: opts.runs, warmup: opts.warmup });
    out.push({
      batch: cfg.batch,
      seqLen: r.dense.seqLen,
      threads: r.dense.threads,
      dense: r.dense,
      pruned: r.pruned,
      speedup: r.dense.p50Ms / r.pruned.p50Ms,
      cpuSpeedup: r.dense.cpuP50Ms / r.pruned.cpuP50Ms,
    });
  }
  return out;
}
