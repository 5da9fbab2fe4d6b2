/**
 * bench:edge's workerd cell for a few model files side by side: onnxruntime-web inside workerd (the bench Worker,
 * bench/edge-worker), every model loaded into one isolate, then `--runs` rounds of one session.run per model in
 * turn (alternating, so a change in machine load hits every model alike). workerd's clock moves in whole ms only
 * at I/O, so each request times `--inner` consecutive session.runs together between two I/O ticks and divides by
 * `--inner` (as bench:edge does); the statistic is the median of those per-run times over the rounds. Also workerd's CPU time per session.run (the
 * workerd processes' user + system time around each request, 10 ms ticks, summed over all rounds and divided by
 * the runs: far steadier than wall time on a loaded machine). Prints both per model, their ratios to the first
 * model, and the load average before and after.
 *
 *   tsx bench/edge-ab.ts [--runs 25] [--inner 4] [--batch 1] [--seq 128] [--out file.json] label=file.onnx@level ...
 * level: disabled (a graph fused at export, as the gateway runs it) or all. --out also writes the JSON to a file.
 */
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { unstable_dev } from "wrangler";
import { processCpuMs, workerdPids } from "./lib/workerd-cpu";

const ROOT = path.resolve(import.meta.dirname, "..");
const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: "string", default: "25" },
    batch: { type: "string", default: "1" },
    seq: { type: "string", default: "128" },
    warmup: { type: "string", default: "3" },
    inner: { type: "string", default: "4" },
    out: { type: "string" },
  },
});
const int = (name: keyof typeof flags) => {
  const v = Number(flags[name]);
  if (!Number.isInteger(v) || v < 1)
    throw new Error(`--${name} must be an integer >= 1, got '${flags[name]}'`);
  return v;
};
const [RUNS, BATCH, SEQ, WARMUP, INNER] = [
  int("runs"),
  int("batch"),
  int("seq"),
  int("warmup"),
  int("inner"),
];
const models = positionals.map((p) => {
  const m = /^([^=]+)=(.+)@(all|disabled)$/.exec(p);
  if (!m) throw new Error(`model '${p}': expected label=file.onnx@all|disabled`);
  return { label: m[1], file: m[2], level: m[3] };
});
if (models.length === 0) throw new Error("no models given");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const loadBefore = os.loadavg();
const dev = await unstable_dev(path.join(ROOT, "bench/edge-worker/worker.ts"), {
  config: path.join(ROOT, "bench/edge-worker/wrangler.toml"),
  experimental: { disableExperimentalWarning: true },
  logLevel: "error",
});
const call = async (url: string, init: RequestInit = {}) => {
  // biome-ignore lint/suspicious/noExplicitAny: undici's RequestInit and the DOM's differ only in typing.
  const res = await dev.fetch(url, init as any);
  const text = await res.text();
  if (!res.ok) throw new Error(`bench worker ${url}: ${res.status} ${text}`);
  return JSON.parse(text);
};
try {
  for (const [i, m] of models.entries()) {
    const bytes = readFileSync(m.file);
    await call(`/model/m${i}?offset=0&total=${bytes.length}`, { method: "PUT", body: bytes });
    await call(`/session/m${i}?level=${m.level}`, { method: "POST" });
    await call(`/run/m${i}?batch=${BATCH}&seq=${SEQ}&runs=${WARMUP}`, { method: "POST" });
  }
  const ms: number[][] = models.map(() => []);
  const cpu = models.map(() => 0);
  const pids = workerdPids();
  for (let r = 0; r < RUNS; r++)
    for (let i = 0; i < models.length; i++) {
      const c0 = processCpuMs(pids);
      const res = await call(`/run/m${i}?batch=${BATCH}&seq=${SEQ}&runs=1&inner=${INNER}`, {
        method: "POST",
      });
      cpu[i] += processCpuMs(pids) - c0;
      ms[i].push(res.ms[0]);
    }
  const p50 = ms.map(median);
  const cpuMs = cpu.map((c) => c / (RUNS * INNER));
  const rows = models.map((m, i) => ({
    label: m.label,
    level: m.level,
    p50Ms: Number(p50[i].toFixed(2)),
    vsFirst: Number((p50[0] / p50[i]).toFixed(3)),
    cpuMs: Number(cpuMs[i].toFixed(2)),
    cpuVsFirst: Number((cpuMs[0] / cpuMs[i]).toFixed(3)),
  }));
  console.table(rows);
  const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  const result = {
    command: `tsx bench/edge-ab.ts ${process.argv.slice(2).join(" ")}`,
    generatedAt: new Date().toISOString(),
    batch: BATCH,
    seq: SEQ,
    runs: RUNS,
    inner: INNER,
    /** The inner runs of a round are timed together between two I/O ticks (not one by one). */
    bracketed: true,
    load: { before: fmt(loadBefore), after: fmt(os.loadavg()) },
    rows,
  };
  console.log(JSON.stringify(result));
  if (flags.out) writeFileSync(flags.out, `${JSON.stringify(result, null, 2)}\n`);
} finally {
  await dev.stop();
}
