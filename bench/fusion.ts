/**
 * bench:fusion — export-time graph optimisation (`--optimize edge`) against the unfused graph, on the demo's
 * spam model (models/base + the committed dense and 0.4 checkpoints), fp32 and int8: what onnxruntime fused,
 * the wasm check's max |Δlogit| and changed predictions, and in onnxruntime-web's wasm build (fresh process per
 * cold start, bench/lib/ort-cold.ts) the cold session creation, first run and per-request p50 at batch 1×128 for
 *   - the unfused graph, session level "all" (what the gateway did before),
 *   - the fused graph, level "disabled" and level "all" (does re-optimising an optimised graph cost anything?).
 * Cold starts are interleaved round-robin across the configurations so drift hits them alike; medians of COLD.
 *
 *   npm run bench:fusion            # measure, write bench-results/fusion.json and docs/fusion.md
 *   npm run bench:fusion -- --docs  # regenerate docs/fusion.md from the JSON
 *   npm run bench:fusion -- --reuse # time again the variants a previous run exported (runs/bench-fusion)
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseManifest } from "../src/core/manifest";
import { encodeModel } from "../src/core/onnx/codec";
import { Graph } from "../src/core/onnx/graph";
import { main } from "../src/trainer-node/cli";
import { updateBenchmarksPage } from "./lib/docs";

const ROOT = path.resolve(import.meta.dirname, "..");
const WORK = path.join(ROOT, "runs/bench-fusion");
const JSON_OUT = path.join(ROOT, "bench-results/fusion.json");
const DOC_OUT = path.join(ROOT, "docs/fusion.md");
const COLD = Number(process.env.COLD ?? 7);
const RUNS = Number(process.env.RUNS ?? 20);
const SHAPE = "1x128";
const MODELS = [
  { name: "dense", gates: "models/demo/spam-dense.gates.json" },
  { name: "0.4", gates: "models/demo/spam-0.4.gates.json" },
];
const CONFIGS = [
  { graph: "unfused", level: "all" },
  { graph: "fused", level: "disabled" },
  { graph: "fused", level: "all" },
] as const;

interface Cold {
  backendMs: number;
  createMs: number;
  firstRunMs: number;
  p50Ms: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function cold(initFile: string, file: string, level: string): Cold {
  const out = execFileSync(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "bench/lib/ort-cold.ts"), initFile, file, level, String(RUNS), SHAPE],
    { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
  );
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

async function cli(args: string[]) {
  if ((await main(args)) !== 0) throw new Error(`sluice ${args.join(" ")} failed`);
}

async function measure() {
  const loadBefore = os.loadavg()[0];
  // Exporting the eight variants takes minutes on a loaded machine; --reuse times the ones already there.
  const reuse = process.argv.includes("--reuse");
  if (!reuse) rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  // Per model and precision: the unfused variant and the fused one, both written by the CLI.
  const variants: { model: string; precision: string; unfused: string; fused: string }[] = [];
  for (const m of MODELS) {
    const dir = (p: string, o: string) => path.join(WORK, `${m.name}-${p}-${o}`);
    const base = ["--base", "models/base/model.onnx", "--gates", m.gates, "--runs", "3"];
    for (const o of ["none", "edge"]) {
      if (reuse && existsSync(path.join(dir("int8", o), "manifest.json"))) continue;
      await cli(["export", ...base, "--out", dir("fp32", o), "--optimize", o]);
      // int8 from the unfused fp32 variant, so both int8 graphs quantize the same graph.
      await cli(["quantize", dir("fp32", "none"), "--out", dir("int8", o), "--optimize", o, "--runs", "3"]);
    }
    for (const p of ["fp32", "int8"])
      variants.push({ model: m.name, precision: p, unfused: dir(p, "none"), fused: dir(p, "edge") });
  }
  // The backend's start-up is timed on a one-node model, apart from the model's own session creation.
  const init = new Graph({ name: "init" });
  init.addInput("x", "float32", [1]);
  init.addNode("Identity", ["x"], {}, { name: "identity", outputs: ["y"] });
  init.addOutput("y", "float32", [1]);
  const initFile = path.join(WORK, "init.onnx");
  writeFileSync(initFile, encodeModel(init));

  const jobs = variants.flatMap((v, vi) =>
    CONFIGS.map((c, ci) => ({ vi, ci, file: path.join(v[c.graph], "model.onnx"), level: c.level })),
  );
  const samples = jobs.map(() => [] as Cold[]);
  console.error(`${jobs.length} configurations x ${COLD} cold starts in onnxruntime-web ...`);
  for (let r = 0; r < COLD; r++)
    for (const [j, job] of jobs.entries()) samples[j].push(cold(initFile, job.file, job.level));

  const rows = variants.map((v, vi) => {
    const fm = parseManifest(JSON.parse(readFileSync(path.join(v.fused, "manifest.json"), "utf8")));
    const um = parseManifest(JSON.parse(readFileSync(path.join(v.unfused, "manifest.json"), "utf8")));
    const report = JSON.parse(readFileSync(path.join(v.fused, "export-report.json"), "utf8")).optimization;
    const configs = CONFIGS.map((c, ci) => {
      const s = samples[jobs.findIndex((j) => j.vi === vi && j.ci === ci)];
      return {
        graph: c.graph,
        level: c.level,
        createMs: median(s.map((x) => x.createMs)),
        firstRunMs: median(s.map((x) => x.firstRunMs)),
        p50Ms: median(s.map((x) => x.p50Ms)),
        backendMs: median(s.map((x) => x.backendMs)),
      };
    });
    return {
      model: v.model,
      precision: v.precision,
      graphOptimization: fm.graphOptimization,
      bytes: { unfused: um.artifact.bytes, fused: fm.artifact.bytes },
      accuracy: { unfused: um.metrics.accuracy, fused: fm.metrics.accuracy },
      evalExamples: fm.metrics.evalSet.size,
      nodes: report.nodes,
      fusedOps: report.fusedOps,
      maxAbsDiff: report.maxAbsDiff,
      maxAbsDiffVsLiteral: report.maxAbsDiffVsLiteral,
      predictionsChanged: report.predictionsChanged,
      configs,
    };
  });
  const result = {
    generatedAt: new Date().toISOString(),
    command: "npm run bench:fusion",
    machine: `${os.cpus()[0]?.model ?? "cpu"}, ${os.availableParallelism()} cores (shared), ${os.platform()} ${os.arch()}, node ${process.version}`,
    runtime: "onnxruntime-web 1.30.0 wasm, numThreads 1, a fresh Node process per cold start",
    loadAverage1m: { before: loadBefore, after: os.loadavg()[0] },
    cold: COLD,
    runs: RUNS,
    statistic: `median over ${COLD} cold starts (fresh processes, configurations interleaved); per-request p50 of ${RUNS} runs at batch ${SHAPE.replace("x", "×")} after the first, inputs 96 of 128 tokens real`,
    rows,
  };
  mkdirSync(path.dirname(JSON_OUT), { recursive: true });
  writeFileSync(JSON_OUT, `${JSON.stringify(result, null, 2)}\n`);
  return result;
}

type Result = Awaited<ReturnType<typeof measure>>;

function docs(r: Result): string {
  const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1);
  const cfg = (row: Result["rows"][number], graph: string, level: string) =>
    row.configs.find((c) => c.graph === graph && c.level === level)!;
  const table = [
    "| model | precision | nodes unfused → fused | fused ops | max \\|Δlogit\\| (changed) | session create: unfused, all | fused, disabled | fused, all | first run: unfused / fused (disabled) | p50 b1×128: unfused / fused (disabled) |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ...r.rows.map((x) => {
      const u = cfg(x, "unfused", "all");
      const fd = cfg(x, "fused", "disabled");
      const fa = cfg(x, "fused", "all");
      const ops = Object.entries(x.fusedOps)
        .map(([op, n]) => `${n} ${op.replace(/^.*:/, "")}`)
        .join(", ");
      return `| ${x.model} | ${x.precision} | ${x.nodes.before} → ${x.nodes.after} | ${ops} | ${x.maxAbsDiff.toExponential(1)} (${x.predictionsChanged} / ${x.evalExamples}) | ${ms(u.createMs)} ms | ${ms(fd.createMs)} ms (${(u.createMs / fd.createMs).toFixed(2)}×) | ${ms(fa.createMs)} ms | ${ms(u.firstRunMs)} / ${ms(fd.firstRunMs)} ms | ${ms(u.p50Ms)} / ${ms(fd.p50Ms)} ms |`;
    }),
  ];
  const ratios = (f: (row: Result["rows"][number]) => number) =>
    r.rows.map((x) => `${x.model} ${x.precision} ${f(x).toFixed(2)}×`).join(", ");
  const createRatios = r.rows.map(
    (x) => cfg(x, "unfused", "all").createMs / cfg(x, "fused", "disabled").createMs,
  );
  const backend = median(r.rows.flatMap((x) => x.configs.map((c) => c.backendMs)));
  return `<!-- generated by \`npm run bench:fusion\` from bench-results/fusion.json; do not edit -->
# Export-time graph optimisation: cold start

The demo's spam model (models/base, 4 layers, d 128) with the committed dense and 0.4 checkpoints, exported with
\`--optimize none\` and \`--optimize edge\` (fp32 by \`sluice export\`, int8 by \`sluice quantize\` of the unfused fp32
variant). *max |Δlogit|* is export's own check: the fused graph in onnxruntime-web (optimisations disabled)
against the unfused graph as the gateway ran it before (default level), on the ${r.rows[0]?.evalExamples} spam test
e-mails, with the number of predictions that changed. *session create* is \`InferenceSession.create\` of the model
in a process whose wasm backend has already started (the backend's own start-up, timed on a one-node model, is
${ms(backend)} ms more, the same for every model); the ratio is unfused/all over fused/disabled.

${r.statistic}. ${r.runtime}. Machine: ${r.machine}, 1-minute load average ${r.loadAverage1m.before.toFixed(1)} before / ${r.loadAverage1m.after.toFixed(1)} after (shared: absolute times are inflated, ratios within one run are what compare). Generated ${r.generatedAt}.

${table.join("\n")}

Export's default is \`--optimize edge\` (\`DEFAULT_GRAPH_OPTIMIZATION\` in src/trainer-node/export/optimize.ts) on these
figures: the fused graph's session was created ${Math.min(...createRatios).toFixed(2)}–${Math.max(...createRatios).toFixed(2)}× faster than the unfused graph's, with ${r.rows.reduce((n, x) => n + x.predictionsChanged, 0)} predictions changed in all.

Session creation, unfused at level all over fused at level disabled: ${ratios((x) => cfg(x, "unfused", "all").createMs / cfg(x, "fused", "disabled").createMs)}.
Cold start to the first answer (session creation + first run), same ratio: ${ratios((x) => (cfg(x, "unfused", "all").createMs + cfg(x, "unfused", "all").firstRunMs) / (cfg(x, "fused", "disabled").createMs + cfg(x, "fused", "disabled").firstRunMs))}.
The fused graph created at level all over level disabled: ${ratios((x) => cfg(x, "fused", "all").createMs / cfg(x, "fused", "disabled").createMs)} — why the gateway creates an edge-optimized graph's session with optimisations disabled.
Per-request p50, unfused over fused (disabled): ${ratios((x) => cfg(x, "unfused", "all").p50Ms / cfg(x, "fused", "disabled").p50Ms)}. Both sessions end up with the same fused ops (onnxruntime fuses the unfused graph at creation), so this
run-time ratio is not explained by the graphs; read it with the load average above, and re-measure on a quiet
machine before relying on it.
`;
}

const result: Result =
  process.argv.includes("--docs") && existsSync(JSON_OUT)
    ? JSON.parse(readFileSync(JSON_OUT, "utf8"))
    : await measure();
writeFileSync(DOC_OUT, docs(result));
console.log(`wrote ${path.relative(ROOT, JSON_OUT)} and ${path.relative(ROOT, DOC_OUT)}`);
updateBenchmarksPage();
