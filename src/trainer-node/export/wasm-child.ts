/**
 * Spawns export/wasm-check.ts, the child process that runs models in onnxruntime-web's wasm build (a process of
 * its own: onnxruntime-node and onnxruntime-web in one process share onnxruntime-common's backend registry, and a
 * "wasm" session then silently runs natively). Used by the edge equivalence check (optimize.ts) and the edge
 * latency (edge-latency.ts).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { TokenBatch } from "./run";
import type { WasmJob } from "./wasm-check";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const WASM_CHECK = path.join(import.meta.dirname, "wasm-check.ts");

/**
 * Writes each model to a temporary file, builds the job from their paths, runs the child on it and returns the
 * JSON array it prints (one result per model). The files are removed afterwards, also on failure.
 */
export async function runWasmChild<R>(models: Uint8Array[], job: (files: string[]) => object): Promise<R[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "sluice-wasm-"));
  try {
    const files: string[] = [];
    for (const [i, bytes] of models.entries()) {
      const file = path.join(dir, `model-${i}.onnx`);
      await writeFile(file, bytes);
      files.push(file);
    }
    const jobFile = path.join(dir, "job.json");
    await writeFile(jobFile, JSON.stringify(job(files)));
    // cwd: the repository, where `--import tsx` resolves (the CLI itself runs through tsx).
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", WASM_CHECK, jobFile], {
      cwd: ROOT,
      maxBuffer: 1 << 28,
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    return JSON.parse(stdout.trim().split("\n").at(-1) ?? "[]");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A token batch as the child's JSON job carries it. */
export function wasmBatch(b: TokenBatch): WasmJob["batches"][number] {
  return {
    batch: b.batch,
    seqLen: b.seqLen,
    ids: Array.from(b.inputIds, Number),
    mask: Array.from(b.attentionMask, Number),
    ...(b.tokenTypeIds ? { typeIds: Array.from(b.tokenTypeIds, Number) } : {}),
  };
}
