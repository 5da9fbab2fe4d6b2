/**
 * Child process of bench:quantize: times ONNX models in ONE onnxruntime (onnxruntime-web's wasm build, or
 * onnxruntime-node's CPU provider), one thread, interleaved (A, B, A, B, ...) so drift on a shared machine hits
 * every model alike. A separate process per runtime is required: when onnxruntime-node and onnxruntime-web are
 * loaded in one process they share onnxruntime-common's backend registry and a "web" session silently runs on
 * the native backend.
 *
 *   tsx bench/lib/ort-time.ts <web|node> <runs> <batch>x<seq>[,<batch>x<seq>...] <model.onnx>...
 * prints JSON: [{ model, batch, seqLen, p50Ms, runs }]
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const [runtime, runsArg, gridArg, ...files] = process.argv.slice(2);
if (!["web", "node"].includes(runtime) || files.length === 0) {
  console.error("usage: ort-time.ts <web|node> <runs> <batch>x<seq>[,...] <model.onnx>...");
  process.exit(2);
}
const require = createRequire(import.meta.url);
// Only the chosen runtime is loaded in this process (see above).
const ort: typeof import("onnxruntime-node") =
  runtime === "web" ? require("onnxruntime-web") : require("onnxruntime-node");
if (runtime === "web") {
  const env = ort.env as unknown as { wasm: { numThreads: number; simd?: boolean } };
  env.wasm.numThreads = 1; // what a Worker isolate gets
}
const runs = Number(runsArg);
const grid = gridArg.split(",").map((c) => c.split("x").map(Number) as [number, number]);

function feeds(inputNames: readonly string[], batch: number, seq: number) {
  // Real-looking rows: ids in [5, 4000), the last quarter of each row padding (mask 0).
  const n = batch * seq;
  const ids = new BigInt64Array(n);
  const mask = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const on = i % seq < Math.ceil(0.75 * seq);
    ids[i] = on ? BigInt(5 + ((i * 7919) % 3995)) : 0n;
    mask[i] = on ? 1n : 0n;
  }
  const out: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const name of inputNames)
    out[name] = new ort.Tensor(
      "int64",
      name === "input_ids" ? ids : name === "attention_mask" ? mask : new BigInt64Array(n),
      [batch, seq],
    );
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const sessions = [];
  for (const f of files)
    sessions.push(
      await ort.InferenceSession.create(new Uint8Array(readFileSync(f)), {
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        ...(runtime === "web" ? { executionProviders: ["wasm"] } : {}),
      }),
    );
  const results = [];
  for (const [batch, seq] of grid) {
    const times: number[][] = files.map(() => []);
    const inputs = sessions.map((s) => feeds(s.inputNames, batch, seq));
    for (let i = 0; i < 5; i++) for (let m = 0; m < files.length; m++) await sessions[m].run(inputs[m]);
    for (let r = 0; r < runs; r++)
      for (let m = 0; m < files.length; m++) {
        const t0 = performance.now();
        await sessions[m].run(inputs[m]);
        times[m].push(performance.now() - t0);
      }
    for (let m = 0; m < files.length; m++)
      results.push({ model: files[m], batch, seqLen: seq, p50Ms: median(times[m]), runs });
  }
  for (const s of sessions) await s.release();
  console.log(JSON.stringify(results));
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
