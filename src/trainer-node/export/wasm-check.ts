/**
 * Child process of export/optimize.ts: runs ONNX models in onnxruntime-web's wasm build (the gateway's runtime)
 * on token batches and prints their first output. It is a process of its own because onnxruntime-node and
 * onnxruntime-web loaded in one process share onnxruntime-common's backend registry, and a "wasm" session then
 * silently runs on the native backend — the check would prove nothing about the wasm build.
 *
 *   tsx src/trainer-node/export/wasm-check.ts <job.json>
 * job: { models: [{ file, level }], batches: [{ batch, seqLen, ids: number[], mask: number[], typeIds?: number[] }] }
 * prints one JSON line: [{ ok: true, output: number[] } | { ok: false, error: string }] per model, in order.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

export interface WasmJob {
  models: { file: string; level: "disabled" | "basic" | "extended" | "all" }[];
  /** `typeIds`: token type ids of sentence pairs (absent: zeros). */
  batches: { batch: number; seqLen: number; ids: number[]; mask: number[]; typeIds?: number[] }[];
}
export type WasmResult = { ok: true; output: number[] } | { ok: false; error: string };

async function main(jobFile: string) {
  const require = createRequire(import.meta.url);
  const ort: typeof import("onnxruntime-web") = require("onnxruntime-web");
  ort.env.wasm.numThreads = 1; // what a Worker isolate gets
  ort.env.logLevel = "error";
  const job: WasmJob = JSON.parse(readFileSync(jobFile, "utf8"));
  const results: WasmResult[] = [];
  for (const m of job.models) {
    try {
      const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(m.file)), {
        executionProviders: ["wasm"],
        graphOptimizationLevel: m.level,
      });
      const output: number[] = [];
      try {
        for (const b of job.batches) {
          const dims = [b.batch, b.seqLen];
          const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
          for (const name of session.inputNames) {
            const values =
              name === "input_ids"
                ? b.ids
                : name === "attention_mask"
                  ? b.mask
                  : name === "token_type_ids" && b.typeIds
                    ? b.typeIds
                    : b.ids.map(() => 0);
            feeds[name] = new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);
          }
          const name = session.outputNames.includes("logits") ? "logits" : session.outputNames[0];
          const out = (await session.run(feeds, [name]))[name];
          output.push(...(out.data as Float32Array));
        }
      } finally {
        await session.release();
      }
      results.push({ ok: true, output });
    } catch (err) {
      results.push({ ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  }
  console.log(JSON.stringify(results));
}

// A script, never imported for its values (optimize.ts imports only its types, which are erased).
main(process.argv[2]).catch((err) => {
  console.error(err);
  process.exit(1);
});
