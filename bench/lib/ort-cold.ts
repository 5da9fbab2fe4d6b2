/**
 * Child process of bench:fusion: one cold start in onnxruntime-web's wasm build, in a fresh process (the
 * gateway's isolate start, minus workerd). It creates a session for a one-node model first, so the backend's
 * own start-up (wasm instantiation) is timed apart from the model's session creation, then creates the model's
 * session at the given optimisation level, runs it once (first run) and `runs` more times (p50).
 *
 *   tsx bench/lib/ort-cold.ts <init.onnx> <model.onnx> <disabled|all> <runs> <batch>x<seq>
 * prints JSON: { backendMs, createMs, firstRunMs, p50Ms }
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const [initFile, file, level, runsArg, shape] = process.argv.slice(2);
const require = createRequire(import.meta.url);
// Only onnxruntime-web is loaded here: with onnxruntime-node in the same process it would run natively.
const ort: typeof import("onnxruntime-web") = require("onnxruntime-web");
ort.env.wasm.numThreads = 1; // what a Worker isolate gets
const [batch, seq] = shape.split("x").map(Number);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const initBytes = new Uint8Array(readFileSync(initFile));
  const bytes = new Uint8Array(readFileSync(file));
  let t0 = performance.now();
  const init = await ort.InferenceSession.create(initBytes, { executionProviders: ["wasm"] });
  const backendMs = performance.now() - t0;
  await init.release();
  t0 = performance.now();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: level as "disabled" | "all",
  });
  const createMs = performance.now() - t0;
  // Inputs as bench/lib/ort-time.ts builds them: ids in [5, 4000), the last quarter of each row padding.
  const n = batch * seq;
  const ids = new BigInt64Array(n);
  const mask = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const on = i % seq < Math.ceil(0.75 * seq);
    ids[i] = on ? BigInt(5 + ((i * 7919) % 3995)) : 0n;
    mask[i] = on ? 1n : 0n;
  }
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const name of session.inputNames)
    feeds[name] = new ort.Tensor(
      "int64",
      name === "input_ids" ? ids : name === "attention_mask" ? mask : new BigInt64Array(n),
      [batch, seq],
    );
  t0 = performance.now();
  await session.run(feeds);
  const firstRunMs = performance.now() - t0;
  const times: number[] = [];
  for (let r = 0; r < Number(runsArg); r++) {
    t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  await session.release();
  console.log(JSON.stringify({ backendMs, createMs, firstRunMs, p50Ms: median(times) }));
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
