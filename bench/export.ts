/**
 * `npm run bench:export`: structured export on the reference encoder (4 layers, d 256, 4 heads, FFN 1024) at
 * target sparsities 0, 0.2, 0.3, 0.4, 0.5. Trained gates come from the trainer; here seeded gate patterns close
 * the target fraction of gated-layer weights the way structured gates do: whole FFN neurons (through the up-row
 * or the down-column) and, in every head, Q/K dimensions (Q or K row) and V dimensions (V row or output
 * column). Every export is checked for equivalence by exportPrunedModel itself.
 *
 * Prints parameters and FLOPs removed, the ideal speedup from FLOPs, and the measured dense/pruned latency
 * ratio (interleaved medians, onnxruntime-node CPU) at batch 16 × 64 and 1 × 128 with 1 and all threads.
 * Writes bench-results/export.json and docs/export-benchmark.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import * as ort from "onnxruntime-node";
import { buildEncoder, REFERENCE_ENCODER } from "../src/core/models/encoder";
import { encodeModel } from "../src/core/onnx/codec";
import type { Graph } from "../src/core/onnx/graph";
import { Rng } from "../src/core/random";
import { countParameters, type ExportReport, exportPrunedModel } from "../src/trainer-node/export/export";
import { allThreads, compareOnGrid, type LatencyComparison } from "../src/trainer-node/export/latency";
import {
  keptWeights,
  planExport,
  plannedLinears,
  type ResidualPolicy,
} from "../src/trainer-node/export/plan";
import type { GateCheckpoint } from "../src/trainer-node/gates/checkpoint";
import { analyzeEncoder } from "../src/trainer-node/import/blocks";
import { updateBenchmarksPage } from "./lib/docs";
import { structuredGates } from "./lib/gates";

type Pattern = "structured" | "uneven" | "rows+cols";
const TARGETS: { target: number; pattern: Pattern; residual?: ResidualPolicy }[] = [
  ...[0, 0.2, 0.3, 0.4, 0.5].map((target) => ({ target, pattern: "structured" as const })),
  { target: 0.4, pattern: "uneven" },
  { target: 0.4, pattern: "rows+cols" },
  // The same gates with every residual-side removal done by Gather: fewer parameters, but slower (see docs).
  { target: 0.4, pattern: "rows+cols", residual: "gather" },
];

/** Fraction of gated-layer weights a checkpoint's gates remove (from the export plan; no graph is built). */
function plannedRemoval(base: Graph, ckpt: GateCheckpoint): number {
  const gates = new Map(ckpt.layers.map((l) => [l.node, { row: l.rowGate, col: l.colGate }]));
  const plan = planExport(base, analyzeEncoder(base), gates);
  const linears = plannedLinears(plan).filter((p) => gates.has(p.plan.folded.layer.node));
  const before = linears.reduce(
    (n, p) => n + p.plan.folded.layer.inFeatures * p.plan.folded.layer.outFeatures,
    0,
  );
  return 1 - linears.reduce((n, p) => n + keptWeights(p.plan), 0) / before;
}

/**
 * The unstructured worst case, as FineGates trains them: every row and column of every gated layer closes
 * independently with probability q, q chosen by bisection so that `target` of the gated weights go. Closed
 * residual-stream columns and rows make export read through Gathers and write back to full width.
 */
function rowColGates(base: Graph, target: number, seed: number): GateCheckpoint {
  const make = (q: number) => {
    const rng = new Rng(seed);
    const ckpt = structuredGates(base, 0, seed);
    for (const l of ckpt.layers) {
      l.rowGate = l.rowGate.map(() => (rng.next() < q ? 0 : 1));
      l.colGate = l.colGate.map(() => (rng.next() < q ? 0 : 1));
    }
    ckpt.settings = { target, q };
    return ckpt;
  };
  let [lo, hi] = [0, 1];
  for (let i = 0; i < 20; i++) {
    const mid = (lo + hi) / 2;
    if (plannedRemoval(base, make(mid)) < target) lo = mid;
    else hi = mid;
  }
  return make((lo + hi) / 2);
}
const RUNS = Number(process.env.BENCH_RUNS ?? 30);

interface Row {
  target: number;
  pattern: Pattern;
  residual: ResidualPolicy;
  removed: number;
  params: number;
  baseParams: number;
  paramsRemoved: number;
  flopsRemoved64: number;
  flopsRemoved128: number;
  idealSpeedup64: number;
  idealSpeedup128: number;
  latency: LatencyComparison[];
  maxAbsDiff: number;
  report: ExportReport;
}

const label = (r: Pick<Row, "target" | "pattern" | "residual">) =>
  `${r.target.toFixed(1)}${r.pattern === "structured" ? "" : ` ${r.pattern}`}${r.residual === "auto" ? "" : ` (${r.residual})`}`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const x2 = (x: number) => `${x.toFixed(2)}x`;

/** BENCH_RENDER=1 re-renders docs/export-benchmark.md from bench-results/export.json without measuring. */
async function render() {
  const saved = JSON.parse(readFileSync("bench-results/export.json", "utf8"));
  const rows = saved.rows as Row[];
  const table = markdownTable(rows, saved.threads);
  const verdict = verdicts(rows);
  const load = `1-minute load average ${saved.loadAverage.before.toFixed(1)} before, ${saved.loadAverage.after.toFixed(1)} after`;
  writeFileSync("docs/export-benchmark.md", docs(table, verdict, saved.threads, load, saved.createdAt));
  console.log(`${table}\n\n${verdict}`);
}

async function main() {
  const base = buildEncoder({ ...REFERENCE_ENCODER, initStd: 0.05 });
  const dense = encodeModel(base);
  const threads = allThreads();
  console.log(
    `reference encoder: ${countParameters(base)} parameters; onnxruntime-node ${ort.env.versions.node}; ` +
      `${os.cpus()[0]?.model ?? "cpu"}, ${threads} threads; ${RUNS} interleaved runs per cell\n`,
  );
  const rows: Row[] = [];
  const loadBefore = os.loadavg()[0];
  // BENCH_PATTERN=rows+cols (say) runs only that pattern's rows.
  const only = process.env.BENCH_PATTERN;
  for (const { target, pattern, residual = "auto" } of TARGETS.filter((t) => !only || t.pattern === only)) {
    const ckpt =
      pattern === "rows+cols"
        ? rowColGates(base, target, 42)
        : structuredGates(base, target, 42, pattern === "uneven");
    const { graph, report } = await exportPrunedModel(base, ckpt, { residual });
    const pruned = encodeModel(graph);
    const latency = await compareOnGrid(dense, pruned, { runs: RUNS });
    const f64 = report.flopsPerTokenAt["64"];
    const f128 = report.flopsPerTokenAt["128"];
    const row: Row = {
      target,
      pattern,
      residual,
      removed: report.removedFraction,
      params: report.params.after,
      baseParams: report.params.before,
      paramsRemoved: 1 - report.params.after / report.params.before,
      flopsRemoved64: 1 - f64.after / f64.before,
      flopsRemoved128: 1 - f128.after / f128.before,
      idealSpeedup64: f64.before / f64.after,
      idealSpeedup128: f128.before / f128.after,
      latency,
      maxAbsDiff: report.equivalence.maxAbsDiff,
      report,
    };
    rows.push(row);
    const cell = (b: number, t: number) => latency.find((l) => l.batch === b && l.threads === t)!;
    console.log(
      `target ${label(row)}: removed ${pct(row.removed)} of gated weights, params -${pct(row.paramsRemoved)}, ` +
        `FLOPs -${pct(row.flopsRemoved64)} (S=64); ideal ${x2(row.idealSpeedup64)}; ` +
        `b16x64 1t ${x2(cell(16, 1).speedup)} (cpu ${x2(cell(16, 1).cpuSpeedup)}) ${threads}t ${x2(cell(16, threads).speedup)}; ` +
        `b1x128 1t ${x2(cell(1, 1).speedup)} ${threads}t ${x2(cell(1, threads).speedup)}`,
    );
  }
  const table = markdownTable(rows, threads);
  const verdict = verdicts(rows);
  console.log(`\n${table}\n\nbatch 16 × 64, 1 thread, measured vs ideal:\n${verdict}`);
  mkdirSync("bench-results", { recursive: true });
  writeFileSync(
    "bench-results/export.json",
    JSON.stringify(
      {
        createdAt: new Date().toISOString(),
        model: { ...REFERENCE_ENCODER, initStd: 0.05 },
        runtime: `onnxruntime-node ${ort.env.versions.node}`,
        cpu: os.cpus()[0]?.model,
        threads,
        runs: RUNS,
        loadAverage: { before: loadBefore, after: os.loadavg()[0] },
        rows: rows.map(({ report, ...r }) => ({ ...r, layers: report.layers, attention: report.attention })),
      },
      null,
      2,
    ),
  );
  mkdirSync("docs", { recursive: true });
  const load = `1-minute load average ${loadBefore.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after`;
  writeFileSync("docs/export-benchmark.md", docs(table, verdict, threads, load));
  console.log("\nwrote bench-results/export.json and docs/export-benchmark.md");
  updateBenchmarksPage();
}

function markdownTable(rows: Row[], threads: number): string {
  const lines = [
    `| target | gated weights removed | params removed | FLOPs removed (S=64) | ideal (S=64) | b16×64 1 thread | b16×64 1 thread CPU time | b16×64 ${threads} threads | ideal (S=128) | b1×128 1 thread | b1×128 ${threads} threads | max abs diff |`,
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const l = (b: number, t: number) => r.latency.find((x) => x.batch === b && x.threads === t)!;
    const c = (b: number, t: number) =>
      `${x2(l(b, t).speedup)} (${l(b, t).dense.p50Ms.toFixed(1)}→${l(b, t).pruned.p50Ms.toFixed(1)} ms)`;
    lines.push(
      `| ${label(r)} | ${pct(r.removed)} | ${pct(r.paramsRemoved)} | ${pct(r.flopsRemoved64)} | ${x2(r.idealSpeedup64)} | ${c(16, 1)} | ${x2(l(16, 1).cpuSpeedup)} | ${c(16, threads)} | ${x2(r.idealSpeedup128)} | ${c(1, 1)} | ${c(1, threads)} | ${r.maxAbsDiff.toExponential(1)} |`,
    );
  }
  return lines.join("\n");
}

/**
 * The issue's target: at batch 16, measured speedup within 10% of the FLOP ratio (1 thread). Judged on both
 * wall clock and CPU time; on a shared machine the CPU-time ratio is the one to trust (wall-clock cells swing
 * with other processes, which is how a cell can show more than the ideal).
 */
function verdicts(rows: Row[]): string {
  return rows
    .filter((r) => r.target > 0)
    .map((r) => {
      const l = r.latency.find((x) => x.batch === 16 && x.threads === 1)!;
      const wall = l.speedup / r.idealSpeedup64;
      const cpu = l.cpuSpeedup / r.idealSpeedup64;
      const ok = (x: number) => (x >= 0.9 ? "within 10%" : "MISSES the 10% target");
      return `- ${label(r)}: ideal ${x2(r.idealSpeedup64)}; CPU time ${x2(l.cpuSpeedup)} = ${(100 * cpu).toFixed(0)}% of ideal (${ok(cpu)}); wall clock ${x2(l.speedup)} = ${(100 * wall).toFixed(0)}% (${ok(wall)})`;
    })
    .join("\n");
}

function docs(
  table: string,
  verdict: string,
  threads: number,
  load: string,
  at = new Date().toISOString(),
): string {
  return `# Export benchmark

Generated by \`npm run bench:export\` (${at.slice(0, 16).replace("T", " ")} UTC, ${os.cpus()[0]?.model ?? "cpu"},
${threads} threads, onnxruntime-node ${ort.env.versions.node}, ${RUNS} interleaved runs per cell, medians; ${load}:
the machine is shared, so wall-clock cells are noisy and the CPU-time column is the steadier 1-thread figure).

Reference encoder: BERT layout, 4 layers, hidden 256, 4 heads, FFN 1024, vocabulary 4096. Gate patterns are
seeded and structured the way trained gates close things: at target *t*, in every layer, a fraction *t* of the FFN
neurons (closed through the up-row or the down-column), and in every head a fraction *t* of the Q/K dimensions
(Q row or K row) and of the V dimensions (V row or output column), the same number in every head. The *uneven*
row closes each dimension independently with probability *t*, so heads keep different sizes and export takes
its per-head Split/Concat path, as it will for trained gates. The *rows+cols* row closes every row and column of
every gated layer independently (probability chosen so that 40% of the gated weights go): the unstructured case
where closed residual-stream columns and rows cannot propagate. Export's default (\`auto\`) keeps such features as
zero rows/columns when that is cheaper than moving data; the *(gather)* row forces Gather reads and write-backs for
all of them (fewest parameters): onnxruntime's CPU Gather on the last axis costs ~10 ns per element, so that model
is slower than the dense one despite its lower FLOP count. Every export is verified against the gated
model by \`exportPrunedModel\` (max abs diff column).

- *gated weights removed*: fraction of the gated layers' weights that export physically removed (the sparsity).
- *params removed*: all parameters, embeddings and LayerNorms included.
- *FLOPs*: 2 × MACs of every weight MatMul/Gemm (Gemm heads amortised over the sequence) plus attention scores
  and context at sequence length S; *ideal speedup* = dense FLOPs / pruned FLOPs.
- latency cells: dense p50 / pruned p50 (dense → pruned milliseconds), same inputs, runs interleaved; *CPU time*
  is the ratio of median process CPU time per run (insensitive to other processes competing for the cores).

${table}

Batch 16 × 64, one thread, measured vs ideal (target: within 10% of the FLOP ratio, i.e. at least 90% of it):

${verdict}
`;
}

await (process.env.BENCH_RENDER ? render() : main());
