/**
 * Child process of bench:quantize and bench:edge: times ONNX models in ONE onnxruntime (onnxruntime-web's wasm
 * build, or onnxruntime-node's CPU provider), one thread, interleaved (A, B, A, B, ...) so drift on a shared
 * machine hits every model alike. A separate process per runtime is required: when onnxruntime-node and
 * onnxruntime-web are loaded in one process they share onnxruntime-common's backend registry and a "web" session
 * silently runs on the native backend.
 *
 *   tsx bench/lib/ort-time.ts <web|node> <runs> <cell>[,<cell>...] <model.onnx>[@<level>]...
 * <level>: the session's graph optimisation level (all | disabled; default all): bench:edge passes "disabled" for
 * a graph fused at export, as the gateway creates its session.
 * A cell is `<batch>x<seq>`, optionally `:<runs>` and `:<warm-up runs>` (defaults: <runs> and 5).
 * ORT_TIME_SEQUENTIAL=1 holds one session at a time (create, time every cell, release) instead of interleaving:
 * for models too large to hold side by side.
 * prints JSON: [{ model, batch, seqLen, p50Ms, cpuMs, runs }] — cpuMs is the mean process CPU time (user +
 * system, every thread) per run: what a CPU-time-billed host charges per request on average.
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
const grid = gridArg.split(",").map((c) => {
  const [shape, cellRuns, warm] = c.split(":");
  const [batch, seq] = shape.split("x").map(Number);
  const cell = { batch, seq, runs: Number(cellRuns ?? runs), warmup: Number(warm ?? 5) };
  if (
    ![cell.batch, cell.seq, cell.runs, cell.warmup].every((x) => Number.isInteger(x) && x >= 0) ||
    !batch ||
    !seq
  )
    throw new Error(`grid cell '${c}' must be <batch>x<seq>[:<runs>[:<warm-up>]]`);
  return cell;
});
const sequential = process.env.ORT_TIME_SEQUENTIAL === "1";

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

/** `<file>@<level>` split; the file alone means level "all". */
function modelArg(arg: string): { file: string; level: "all" | "disabled" } {
  const m = /^(.*)@(all|disabled)$/.exec(arg);
  return m ? { file: m[1], level: m[2] as "all" | "disabled" } : { file: arg, level: "all" };
}

const create = (arg: string) =>
  ort.InferenceSession.create(new Uint8Array(readFileSync(modelArg(arg).file)), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: modelArg(arg).level,
    ...(runtime === "web" ? { executionProviders: ["wasm"] } : {}),
  });
type Session = Awaited<ReturnType<typeof create>>;

/** Times `models` (interleaved) on every grid cell. */
async function timeAll(models: string[], sessions: Session[]) {
  const results = [];
  for (const { batch, seq, runs: cellRuns, warmup } of grid) {
    const times: number[][] = models.map(() => []);
    const cpu: number[][] = models.map(() => []);
    const inputs = sessions.map((s) => feeds(s.inputNames, batch, seq));
    for (let i = 0; i < warmup; i++) for (let m = 0; m < models.length; m++) await sessions[m].run(inputs[m]);
    for (let r = 0; r < cellRuns; r++)
      for (let m = 0; m < models.length; m++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await sessions[m].run(inputs[m]);
        times[m].push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu[m].push((c.user + c.system) / 1000);
      }
    for (let m = 0; m < models.length; m++)
      results.push({
        model: modelArg(models[m]).file,
        batch,
        seqLen: seq,
        p50Ms: median(times[m]),
        cpuMs: cpu[m].reduce((a, b) => a + b, 0) / cpu[m].length,
        runs: cellRuns,
      });
  }
  return results;
}

async function main() {
  const results = [];
  if (sequential) {
    for (const f of files) {
      const s = await create(f);
      results.push(...(await timeAll([f], [s])));
      await s.release();
    }
  } else {
    const sessions: Session[] = [];
    for (const f of files) sessions.push(await create(f));
    results.push(...(await timeAll(files, sessions)));
    for (const s of sessions) await s.release();
  }
  console.log(JSON.stringify(results));
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
