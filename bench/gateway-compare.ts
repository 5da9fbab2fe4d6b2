/**
 * The gateway's overhead before and after, side by side: runs bench:gateway (concurrency 1) on a base checkout
 * (`--base`, e.g. /work/main or a `git worktree` of an older commit) and on this tree with the same client,
 * alternating base / this for `--rounds` rounds so both see the same machine load, and writes
 * bench-results/gateway-compare.json (then docs/benchmarks.md).
 *
 * The headline is the gateway's own CPU per request: each run profiles `--profile` requests at concurrency 1
 * (bench:gateway --profile: V8 CPU profile of the Worker's isolate, its thread's CPU split by the samples'
 * modules; everything but onnxruntime-web, the tokenizer and V8/workerd's own work counts as the gateway's).
 * CPU time, unlike workerd's whole-millisecond wall clock in server-timing, barely moves with the machine's load.
 *
 * Both trees are also compared on the legacy overhead formula (total - load - tokenize - infer + auth + generation),
 * which every tree reports; a tree that reports `pre` and `body` is also given its own overhead (all middleware,
 * without the request body's arrival) and the body's arrival beside it.
 *
 *   npm run bench:gateway-compare -- --base /work/main [--rounds 3] [--requests 200] [--profile 600] [--out file.json]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    base: { type: "string" },
    rounds: { type: "string", default: "3" },
    requests: { type: "string", default: "200" },
    /** Requests per run under the CPU profile (the gateway's own CPU per request). */
    profile: { type: "string", default: "600" },
    out: { type: "string" },
  },
});
if (!args.base) throw new Error("--base <checkout> is required (the tree to compare this one with)");
const root = path.resolve(import.meta.dirname, "..");
const base = path.resolve(args.base);
const rounds = Number(args.rounds);
const requests = Number(args.requests);
if (!Number.isInteger(rounds) || rounds < 1)
  throw new Error(`--rounds must be an integer >= 1, got '${args.rounds}'`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// biome-ignore lint/suspicious/noExplicitAny: bench JSON
type Json = any;

const tmp = mkdtempSync(path.join(os.tmpdir(), "sluice-gateway-compare-"));
const loadAtStart = os.loadavg();
const runs: Json[] = [];
try {
  for (let round = 1; round <= rounds; round++) {
    for (const [side, tree] of [
      ["base", base],
      ["this", root],
    ] as const) {
      const out = path.join(tmp, `${side}-${round}.json`);
      console.error(`round ${round}/${rounds}: ${side} (${tree})`);
      execFileSync(
        process.execPath,
        [
          path.join(root, "node_modules/tsx/dist/cli.mjs"),
          path.join(root, "bench/gateway.ts"),
          "--tree",
          tree,
          "--concurrency",
          "1",
          "--requests",
          String(requests),
          "--profile",
          args.profile,
          "--out",
          out,
        ],
        { cwd: root, stdio: ["ignore", "ignore", "inherit"] },
      );
      const d = JSON.parse(readFileSync(out, "utf8"));
      const l = d.levels[0];
      runs.push({
        side,
        round,
        commit: d.tree.commit,
        n: l.n,
        legacyOverheadMeanMs: l.overheadLegacy?.meanMs ?? l.overhead.meanMs,
        overheadMeanMs: l.overhead.meanMs,
        stagesReported: l.stagesReported ?? { pre: false, body: false },
        parts: l.overheadParts,
        e2eP50Ms: l.e2e.p50Ms,
        inferP50Ms: l.infer.p50Ms,
        cpu: d.profile
          ? {
              gatewayMs: d.profile.cpuMsPerRequest.gateway,
              isolateMs: d.profile.isolateCpuMsPerRequest,
              parts: d.profile.cpuMsPerRequest,
              samplingCoverage: d.profile.samplingCoverage,
              gatewayModules: d.profile.gatewayModules.slice(0, 10),
            }
          : null,
      });
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const sideSummary = (side: string) => {
  const rs = runs.filter((r) => r.side === side);
  const own = rs.every((r) => r.stagesReported.pre && r.stagesReported.body);
  return {
    commit: rs[0].commit,
    legacyOverheadMedianMs: median(rs.map((r) => r.legacyOverheadMeanMs)),
    ...(own
      ? {
          overheadMedianMs: median(rs.map((r) => r.overheadMeanMs)),
          bodyArrivalMedianMs: median(rs.map((r) => r.parts.bodyMeanMs)),
          authMedianMs: median(rs.map((r) => r.parts.authMeanMs)),
          otherMiddlewareMedianMs: median(rs.map((r) => r.parts.preOtherMeanMs)),
          routeMedianMs: median(rs.map((r) => r.parts.routeMeanMs)),
          restMedianMs: median(rs.map((r) => r.parts.restMeanMs)),
        }
      : {}),
    gatewayCpuMedianMs: median(rs.map((r) => r.cpu.gatewayMs)),
    isolateCpuMedianMs: median(rs.map((r) => r.cpu.isolateMs)),
    onnxruntimeCpuMedianMs: median(rs.map((r) => r.cpu.parts.onnxruntime)),
    vmCpuMedianMs: median(rs.map((r) => r.cpu.parts.vm)),
    // the gateway's CPU per ms of the runtime's in the same run: a loaded machine inflates both alike
    gatewayPerOnnxruntimeCpuMedian: median(rs.map((r) => r.cpu.gatewayMs / r.cpu.parts.onnxruntime)),
    e2eP50MedianMs: median(rs.map((r) => r.e2eP50Ms)),
    inferP50MedianMs: median(rs.map((r) => r.inferP50Ms)),
    // A loaded machine slows every stage alike (preemption): the overhead per ms of inference in the same run
    // takes that factor out where rounds saw different load.
    legacyOverheadPerInferMedian: median(rs.map((r) => r.legacyOverheadMeanMs / r.inferP50Ms)),
  };
};
const before = sideSummary("base");
const after = sideSummary("this");
const result = {
  benchmark: "gateway-compare",
  command: `npm run bench:gateway-compare -- --base <checkout> --rounds ${rounds} --requests ${requests} --profile ${args.profile}`,
  date: new Date().toISOString(),
  machine: {
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    node: process.version,
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: os.loadavg(),
  },
  statistic:
    "gateway CPU: per run, the Worker isolate's CPU time over the profiled requests split by a V8 CPU profile's samples (bench/lib/cpu-profile.ts); server-timing overheads: per run, the mean over its requests (workerd's clock has whole-ms resolution and counts wall time); per side: the median of its runs",
  auth: "on",
  before,
  after,
  gatewayCpuRatio: after.gatewayCpuMedianMs / before.gatewayCpuMedianMs,
  gatewayPerOnnxruntimeCpuRatio: after.gatewayPerOnnxruntimeCpuMedian / before.gatewayPerOnnxruntimeCpuMedian,
  legacyOverheadRatio: after.legacyOverheadMedianMs / before.legacyOverheadMedianMs,
  inferP50Ratio: after.inferP50MedianMs / before.inferP50MedianMs,
  legacyOverheadPerInferRatio: after.legacyOverheadPerInferMedian / before.legacyOverheadPerInferMedian,
  runs,
};
const out = args.out ? path.resolve(args.out) : path.join(root, "bench-results/gateway-compare.json");
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(
  JSON.stringify(
    {
      before,
      after,
      gatewayCpuRatio: result.gatewayCpuRatio,
      gatewayPerOnnxruntimeCpuRatio: result.gatewayPerOnnxruntimeCpuRatio,
      legacyOverheadRatio: result.legacyOverheadRatio,
      inferP50Ratio: result.inferP50Ratio,
      legacyOverheadPerInferRatio: result.legacyOverheadPerInferRatio,
    },
    null,
    2,
  ),
);
console.log(`wrote ${path.relative(process.cwd(), out)}`);
if (!args.out) updateBenchmarksPage();
