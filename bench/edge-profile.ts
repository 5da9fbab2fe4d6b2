/**
 * Where one request's time goes, per op, in onnxruntime-web's wasm build (in Node, one thread: the same V8 wasm
 * engine and the same kernels as inside workerd, where no profile can be read back). onnxruntime's own profiler
 * (session option `enableProfiling`) times every node's kernel; in the wasm build `endProfiling` prints its JSON
 * events straight to file descriptor 1, so each model is profiled in a child process (this file with --child)
 * whose stdout the parent parses. After `--warmup` runs, `--runs` runs are profiled; each node's time is its
 * minimum over the runs (on a shared machine a kernel is often preempted; the minimum is the uncontended cost),
 * summed per op and per category (linears, attention, LayerNorm, GELU, layout, other). The wall time is timed
 * without the profiler, median and minimum.
 *
 *   tsx bench/edge-profile.ts [--runs 10] [--warmup 3] [--batch 1] [--seq 128] [--json out.json] file.onnx@level ...
 * level: disabled (a graph fused at export, as the gateway runs it) or all.
 * Prints one table per model: op, nodes, ms, share of the summed kernel time; then the wall time per run.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { decodeModel } from "../src/core/onnx/codec";

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: "string", default: "10" },
    warmup: { type: "string", default: "3" },
    batch: { type: "string", default: "1" },
    seq: { type: "string", default: "128" },
    json: { type: "string" },
    child: { type: "boolean", default: false },
  },
});
const int = (name: "runs" | "warmup" | "batch" | "seq") => {
  const v = Number(flags[name]);
  if (!Number.isInteger(v) || v < (name === "warmup" ? 0 : 1))
    throw new Error(`--${name} must be a positive integer, got '${flags[name]}'`);
  return v;
};
const [RUNS, WARMUP, BATCH, SEQ] = [int("runs"), int("warmup"), int("batch"), int("seq")];
const models = positionals.map((p) => {
  const m = /^(.+)@(all|disabled)$/.exec(p);
  if (!m) throw new Error(`model '${p}': expected file.onnx@all|disabled`);
  return { file: m[1], level: m[2] as "all" | "disabled" };
});
if (models.length === 0) throw new Error("no models given");

// onnxruntime-web only (never onnxruntime-node in this process: they would share one backend registry).
const require = createRequire(import.meta.url);
const ort: typeof import("onnxruntime-web") = require("onnxruntime-web");
ort.env.wasm.numThreads = 1;

/** What a node's op counts as (the categories a request's time is read in). */
export function category(op: string, constWeight: boolean): string {
  if (/MatMulInteger|DynamicQuantizeMatMul|MatMulIntegerToFloat|QGemm/.test(op)) return "linear (int8)";
  if (op === "DynamicQuantizeLinear") return "linear (int8)";
  if (["MatMul", "FusedMatMul", "Gemm"].includes(op)) return constWeight ? "linear (fp32)" : "attention";
  if (/Attention/.test(op) || op === "Softmax") return "attention";
  if (/LayerNorm/.test(op)) return "LayerNorm";
  if (/Gelu|Erf/.test(op)) return "GELU";
  if (["Reshape", "Transpose", "Split", "Concat", "Slice", "Squeeze", "Unsqueeze", "Expand"].includes(op))
    return "layout";
  return "other";
}

function feeds(names: readonly string[]) {
  const n = BATCH * SEQ;
  const ids = new BigInt64Array(n);
  const mask = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const on = i % SEQ < Math.ceil(0.75 * SEQ); // as bench/lib/ort-time.ts: the last quarter padding
    ids[i] = on ? BigInt(5 + ((i * 7919) % 3995)) : 0n;
    mask[i] = on ? 1n : 0n;
  }
  return Object.fromEntries(
    names.map((name) => [
      name,
      new ort.Tensor(
        "int64",
        name === "input_ids" ? ids : name === "attention_mask" ? mask : new BigInt64Array(n),
        [BATCH, SEQ],
      ),
    ]),
  );
}

interface NodeEvent {
  name: string;
  dur: number;
  args: { op_name: string };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Child: times `m` unprofiled, then profiles it; stdout gets the profiler's JSON, then `WALL <json>`. */
async function child(m: (typeof models)[number]) {
  const bytes = new Uint8Array(readFileSync(m.file));
  // Wall time without the profiler first (it adds a little per node), then the profiled session.
  const plain = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: m.level });
  const input = feeds(plain.inputNames);
  for (let i = 0; i < WARMUP; i++) await plain.run(input);
  const wall: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await plain.run(input);
    wall.push(performance.now() - t0);
  }
  await plain.release();
  const session = await ort.InferenceSession.create(bytes, {
    graphOptimizationLevel: m.level,
    enableProfiling: true,
  });
  for (let i = 0; i < WARMUP + RUNS; i++) await session.run(input);
  session.endProfiling();
  await session.release();
  process.stdout.write(`\nWALL ${JSON.stringify(wall)}\n`);
}

if (flags.child) {
  await child(models[0]);
  process.exit(0);
}

const results = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), "sluice-edge-profile-"));
for (const m of models) {
  // The child's stdout goes to a file, not a pipe: the profiler's synchronous writes of a few MB to a pipe
  // stalled (EAGAIN) on a busy machine.
  const out = path.join(tmp, "profile.txt");
  const fd = openSync(out, "w");
  try {
    execFileSync(
      process.execPath,
      [
        ...["--import", "tsx", import.meta.filename, "--child"],
        ...[
          "--runs",
          String(RUNS),
          "--warmup",
          String(WARMUP),
          "--batch",
          String(BATCH),
          "--seq",
          String(SEQ),
        ],
        `${m.file}@${m.level}`,
      ],
      { stdio: ["ignore", fd, "inherit"] },
    );
  } finally {
    closeSync(fd);
  }
  const text = readFileSync(out, "utf8");
  const wallAt = text.lastIndexOf("\nWALL ");
  const wall = JSON.parse(text.slice(wallAt + 6).trim()) as number[];
  const body = text.slice(0, wallAt);
  const events = JSON.parse(body.slice(body.indexOf("["), body.lastIndexOf("]") + 1)) as (NodeEvent & {
    cat: string;
  })[];
  // Which matmuls read a constant weight (linear layers) rather than two activations (attention products).
  const graph = decodeModel(new Uint8Array(readFileSync(m.file)));
  const constWeight = new Map(graph.nodes.map((n) => [n.name, graph.initializers.has(n.inputs[1] ?? "")]));
  // Per node: its durations in run order (one kernel_time event per node per run); the warm-up runs dropped.
  const perNode = new Map<string, { op: string; durs: number[] }>();
  const modelRuns: number[] = [];
  for (const e of events) {
    if (e.cat === "Session" && e.name === "model_run") modelRuns.push(e.dur / 1000);
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time")) continue;
    const key = e.name.slice(0, -"_kernel_time".length);
    const entry = perNode.get(key) ?? { op: e.args.op_name, durs: [] };
    entry.durs.push(e.dur / 1000);
    perNode.set(key, entry);
  }
  const byOp = new Map<string, { nodes: number; ms: number; category: string }>();
  const byCategory = new Map<string, number>();
  let total = 0;
  const nodes = [];
  for (const [name, { op, durs }] of perNode) {
    const ms = Math.min(...durs.slice(-RUNS));
    const cat = category(op, constWeight.get(name) ?? false);
    const o = byOp.get(op) ?? { nodes: 0, ms: 0, category: cat };
    o.nodes++;
    o.ms += ms;
    byOp.set(op, o);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + ms);
    total += ms;
    nodes.push({ name, op, ms });
  }
  const runMin = Math.min(...modelRuns.slice(-RUNS));
  const pct = (x: number) => `${((100 * x) / total).toFixed(1)}%`;
  console.log(`\n${m.file}@${m.level}: ${perNode.size} nodes, b${BATCH}x${SEQ}`);
  console.log(
    `wall (unprofiled) p50 ${median(wall).toFixed(2)} ms, min ${Math.min(...wall).toFixed(2)} ms, kernel sum ${total.toFixed(2)} ms, onnxruntime's model_run (profiled) min ${runMin.toFixed(2)} ms`,
  );
  for (const [op, o] of [...byOp].sort((a, b) => b[1].ms - a[1].ms))
    console.log(
      `  ${op.padEnd(28)} ${String(o.nodes).padStart(4)}  ${o.ms.toFixed(2).padStart(7)} ms  ${pct(o.ms)}`,
    );
  console.log("  by category:");
  for (const [c, ms] of [...byCategory].sort((a, b) => b[1] - a[1]))
    console.log(`    ${c.padEnd(26)} ${ms.toFixed(2).padStart(7)} ms  ${pct(ms)}`);
  results.push({
    file: m.file,
    level: m.level,
    wallP50Ms: median(wall),
    wallMinMs: Math.min(...wall),
    kernelMs: total,
    modelRunMinMs: runMin,
    byOp: Object.fromEntries(byOp),
    byCategory: Object.fromEntries(byCategory),
    nodes: nodes.sort((a, b) => b.ms - a.ms),
  });
}
rmSync(tmp, { recursive: true, force: true });
if (flags.json)
  writeFileSync(
    flags.json,
    `${JSON.stringify(
      {
        command: `tsx bench/edge-profile.ts ${process.argv.slice(2).join(" ")}`,
        generatedAt: new Date().toISOString(),
        loadAverage: os.loadavg(),
        ...{ batch: BATCH, seq: SEQ, runs: RUNS, warmup: WARMUP, models: results },
      },
      null,
      2,
    )}\n`,
  );
