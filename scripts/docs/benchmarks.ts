/**
 * Writes docs/benchmarks.md from the committed bench results (`bench-results/*.json`): one section per file,
 * with its headline figures, when and on what machine they were measured, the command that produced them and a
 * link to the detailed page. Only the part between the `<!-- benchmarks:start -->` / `<!-- benchmarks:end -->`
 * markers is generated; the text around it is kept.
 *
 *   npm run docs:benchmarks
 *
 * Every bench script calls `updateBenchmarksPage()` (bench/lib/docs.ts) when it has written its JSON, and
 * test/node/docs-benchmarks.test.ts fails when the committed page differs from what this renders, so the page
 * cannot go stale. A JSON file without a formatter below gets a generic section (its top-level figures); a new
 * bench needs only a formatter in FORMATTERS.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

export const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
export const BENCH_DIR = "bench-results";
export const PAGE = "docs/benchmarks.md";
const MARKER = "benchmarks";

/** One bench result file: its name without `.json` and its parsed content. */
export interface BenchFile {
  name: string;
  data: unknown;
}

/** What a formatter makes of one bench result. */
export interface Section {
  title: string;
  /** The command that produced the file. */
  command: string;
  /** ISO date of the measurement, when the file records one. */
  date?: string;
  /** The machine, in words, when the file records it. */
  machine?: string;
  /** A page in docs/ with the full report. */
  detail?: string;
  /** Markdown: the headline figures (a table) and any short note. */
  body: string;
}

// biome-ignore lint/suspicious/noExplicitAny: bench JSON has no schema; formatters read what they know.
type Json = any;
type Formatter = (data: Json, name: string) => Section;

/** Replaces what lies between `<!-- name:start -->` and `<!-- name:end -->` (appends the block when missing). */
export function replaceBlock(doc: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) return doc.slice(0, i) + block + doc.slice(j + end.length);
  return `${doc.trimEnd()}\n\n${block}\n`;
}

// --- formatting helpers ---------------------------------------------------------------------------------------

const pct = (x: number, digits = 1) => `${(100 * x).toFixed(digits)}%`;
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const s1 = (x: number) => `${x.toFixed(1)} s`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;
const lr = (x: number) => x.toExponential(0).replace("e+", "e");

function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) =>
    `| ${cells.map((c) => String(c).replace(/\|/g, "\\|")).join(" | ")} |`;
  return [line(head), `|${head.map(() => " --- ").join("|")}|`, ...rows.map(line)].join("\n");
}

/** `2026-12-07T05:12:49.895Z` -> `2026-12-07 05:12 UTC`. */
function when(iso: unknown): string | undefined {
  if (typeof iso !== "string") return undefined;
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

function studyMachine(env: Json): string | undefined {
  if (!env) return undefined;
  const load = Array.isArray(env.loadAverage)
    ? `, load average ${env.loadAverage.join(" / ")} at the start`
    : "";
  return `${env.cpuModel ?? "CPU"}, ${env.cpus} cores${load}, node ${env.node}`;
}

// --- one formatter per bench -----------------------------------------------------------------------------------

const abValidity: Formatter = (d) => ({
  title: "A/B analysis validity",
  command: "npm run bench:ab-validity",
  date: d.when,
  detail: "ab-validity.md",
  body: `${table(
    [
      "simulated experiments",
      "runs",
      "accuracy significant",
      "mean latency significant",
      "p95 significant",
      "promoted",
    ],
    d.rows.map((r: Json) => [
      r.row,
      `${r.runs ?? d.runs}`,
      pct(r.accuracySignificant),
      pct(r.latencySignificant),
      pct(r.p95Significant),
      pct(r.promote),
    ]),
  )}\n\n*runs*: simulated experiments in the row; ${d.unitsPerArm} units per arm, α = ${d.alpha}; each rate's 95% interval is in the details page. In the A/A rows every
"significant" is a false positive, so it should stay near α (the sequential row counts an experiment once if any of
its looks is significant); the A/B rows are the power to detect a 10% latency gain and a 2-point accuracy drop.`,
});

const importCorpus: Formatter = (d) => {
  const rows: Json[] = d.rows;
  const count = (pred: (r: Json) => boolean) => rows.filter(pred).length;
  const served = rows.filter((r) => r.serve);
  const worst = (get: (r: Json) => number | undefined) =>
    Math.max(...rows.map(get).filter((x): x is number => typeof x === "number"));
  return {
    title: "Import corpus",
    command: "npm run bench:import-corpus",
    date: d.date,
    machine: d.cpus ? `${d.cpus} cores` : undefined,
    detail: "import.md",
    body: table(
      [
        "fixtures",
        "as expected",
        "imported, trained, exported and served",
        "refused as expected",
        "worst import vs PyTorch",
        "worst export vs gated",
        "worst /classify vs ORT-node",
      ],
      [
        [
          rows.length,
          count((r) => r.verdict !== "FAIL"),
          served.length,
          count((r) => String(r.verdict).startsWith("refused")),
          worst((r) => r.import?.logitsVsTorch ?? r.import?.hiddenVsOriginal).toExponential(1),
          worst((r) => r.train?.maxAbsDiff).toExponential(1),
          worst((r) => r.serve?.maxScoreDiff).toExponential(1),
        ],
      ],
    ),
  };
};

const importBench: Formatter = (d) => {
  const l = d.layout;
  const st = d.settings;
  return {
    title: `Import of a ${l.layers}-layer d=${l.hidden} encoder`,
    command: "npm run bench:import",
    date: d.date,
    machine: d.machine ? `${d.machine.cpu}, ${d.machine.cpus} cores, ${d.machine.memGB} GB` : undefined,
    detail: "import.md",
    body: `${table(
      [
        "tree",
        "commit",
        "inspect",
        "first step",
        "step median",
        "export",
        "train peak",
        "export peak",
        "peak RSS",
      ],
      d.results.map((r: Json) => [
        r.tree,
        String(r.commit).slice(0, 7),
        s1(r.inspectS),
        s1(r.firstStepS),
        s1(r.stepMedianS),
        s1(r.exportS),
        r.trainPeakGB === undefined ? "" : `${r.trainPeakGB.toFixed(2)} GB`,
        r.exportPeakGB === undefined ? "" : `${r.exportPeakGB.toFixed(2)} GB`,
        `${r.peakGB.toFixed(2)} GB`,
      ]),
    )}\n\n${l.layers} layers, hidden ${l.hidden}, ${l.heads} heads, FFN ${l.ffn}, vocabulary ${l.vocab}; batch ${st.batch} × ${st.seq}, ${st.threads} threads, ${st.steps} steps. ${d.notes ?? ""}`.trim(),
  };
};

const seedWords = (n: number) => (n === 1 ? "one seed" : `mean of ${n} seeds`);

const quality: Formatter = (d, name) => {
  const suffix = name.slice("quality".length);
  const tasks = Object.keys(d.budget ?? {});
  const b0 = d.budget?.[tasks[0]] ?? {};
  const command = suffix
    ? `npm run bench:quality -- --tasks ${tasks.join(",")} --steps ${b0.steps} --lrs ${(d.learningRates ?? []).map(lr).join(",")} --seeds ${(d.seeds ?? []).join(",")}`
    : "npm run bench:quality";
  const rows = (d.results as Json[]).map((r) => [
    r.task,
    r.label.replace(`${r.task} `, ""),
    r.removedFraction ? pct(r.removedFraction) : "0%",
    pct(r.testAccuracyMean ?? r.testAccuracy),
    r.lr !== undefined ? lr(r.lr) : "",
  ]);
  const verdicts = (d.verdicts as Json[]).map(
    (v) =>
      `- ${v.task}${v.family ? `, ${v.family}` : ""}: at 0.4 ${pct(v.at04)} against the best dense ${pct(v.bestDense.testAccuracy)} (${v.bestDense.method}), a gap of ${v.gapPoints.toFixed(1)} points: target (within 1 point) ${v.met ? "met" : "not met"}.`,
  );
  return {
    title: suffix ? `Quality (${tasks.join(", ")}, ${b0.steps} steps)` : "Quality of adaptation",
    command,
    date: d.environment?.date,
    machine: studyMachine(d.environment),
    detail: `quality${suffix}.md`,
    body: `${table(
      ["task", "method", "removed", `test accuracy, ${seedWords((d.seeds ?? [1]).length)}`, "lr"],
      rows,
    )}\n\n${verdicts.join("\n")}`,
  };
};

const quantize: Formatter = (d) => ({
  title: "int8 variants",
  command: d.command ?? "npm run bench:quantize",
  date: d.generatedAt,
  machine: d.machine,
  detail: "quantize.md",
  body: `${table(
    [
      "model",
      "precision",
      "op form",
      "size",
      "accuracy",
      "predictions changed",
      "ORT-web p50 b1 / b32",
      "ORT-node p50 b1 / b32",
    ],
    d.rows.map((r: Json) => [
      r.model,
      r.precision,
      r.opForm ?? "",
      mb(r.bytes),
      `${pct(r.accuracy, 2)} of ${r.evalExamples}`,
      r.predictionsChangedVsFp32,
      `${ms(r.webP50Ms.b1x128)} / ${ms(r.webP50Ms.b32x128)} ms`,
      `${ms(r.nodeP50Ms.b1x128)} / ${ms(r.nodeP50Ms.b32x128)} ms`,
    ]),
  )}\n\n${d.statistic ?? ""}`.trim(),
});

const fusion: Formatter = (d) => {
  const at = (r: Json, graph: string, level: string) =>
    r.configs.find((c: Json) => c.graph === graph && c.level === level);
  return {
    title: "Export-time graph optimisation (cold start)",
    command: d.command ?? "npm run bench:fusion",
    date: d.generatedAt,
    machine: d.machine,
    detail: "fusion.md",
    body: `${table(
      [
        "model",
        "precision",
        "nodes",
        "max |Δlogit| (changed)",
        "session create: unfused (all) / fused (disabled) / fused (all)",
        "p50 b1×128: unfused / fused",
      ],
      d.rows.map((r: Json) => {
        const [u, fd, fa] = [at(r, "unfused", "all"), at(r, "fused", "disabled"), at(r, "fused", "all")];
        return [
          r.model,
          r.precision,
          `${r.nodes.before} → ${r.nodes.after}`,
          `${r.maxAbsDiff.toExponential(1)} (${r.predictionsChanged} / ${r.evalExamples})`,
          `${ms(u.createMs)} / ${ms(fd.createMs)} / ${ms(fa.createMs)} ms`,
          `${ms(u.p50Ms)} / ${ms(fd.p50Ms)} ms`,
        ];
      }),
    )}\n\n${d.statistic ?? ""}; ${d.runtime ?? ""}${d.loadAverage1m ? `; 1-minute load average ${d.loadAverage1m.before.toFixed(1)} before / ${d.loadAverage1m.after.toFixed(1)} after` : ""}.`.trim(),
  };
};

const sparsity: Formatter = (d, name) => {
  const suffix = name.slice("sparsity".length);
  const cells = d.results as Json[];
  const targets: number[] = d.grid.targets;
  const tasks: string[] = d.grid.tasks;
  const rows: string[][] = [];
  for (const task of tasks) {
    for (const method of d.grid.methods as string[]) {
      rows.push([
        task,
        method,
        ...targets.map((t) => {
          const c = cells.find((r) => r.task === task && r.gates === method && r.target === t);
          if (!c) return "";
          const off = Math.abs(c.removedFraction - t) > 0.005 ? ` (${pct(c.removedFraction)} removed)` : "";
          return `${pct(c.testAccuracy)}${off}`;
        }),
      ]);
    }
  }
  const summary = (d.choice?.summary ?? []) as Json[];
  return {
    title: "Gate-method study",
    command: suffix === "-quick" ? "npm run bench:sparsity -- --quick" : "npm run bench:sparsity",
    date: d.environment?.date,
    machine: studyMachine(d.environment),
    detail: `sparsity-study${suffix}.md`,
    body: `${table(["task", "method", ...targets.map((t) => `@${t}`)], rows)}\n\nTest accuracy of the exported model. Mean over the ${cells.length} cells: ${summary
      .map((s) => `${s.method} ${pct(s.meanTestAccuracy, 2)} (${s.targetsMet} of ${s.cells} targets met)`)
      .join(", ")}; chosen default: \`${d.choice?.winner}\`.`,
  };
};

/** bench/edge-ab.ts output (committed by hand with a `command` and `models` naming what was compared). */
const edgeAbTitled =
  (title: string): Formatter =>
  (d) => ({
    title,
    command: d.command,
    date: d.generatedAt,
    detail: "edge-heads.md",
    body: `${table(
      ["model", "p50 (wall, in the isolate)", "first / model", "CPU ms per run", "first / model"],
      d.rows.map((r: Json) => [
        r.label,
        `${r.p50Ms.toFixed(2)} ms`,
        `${r.vsFirst.toFixed(2)}×`,
        `${r.cpuMs.toFixed(2)} ms`,
        `${r.cpuVsFirst.toFixed(2)}×`,
      ]),
    )}\n\n${d.runs} alternating rounds × ${d.inner} runs per model in one workerd isolate${d.bracketed ? ` (the ${d.inner} runs of a round timed together between two I/O ticks, divided by ${d.inner})` : ""}; 1-minute load average ${d.load.before.split(" ")[0]} before / ${d.load.after.split(" ")[0]} after.`,
  });

const edgeProfile: Formatter = (d) => {
  const cats = [...new Set((d.models as Json[]).flatMap((m) => Object.keys(m.byCategory)))];
  return {
    title: "Where a request's time goes (onnxruntime-web wasm, per-op kernel time)",
    command: d.command ?? "tsx bench/edge-profile.ts",
    date: d.generatedAt,
    detail: "edge-heads.md",
    body: `${table(
      ["model", "nodes", "kernel sum", ...cats],
      (d.models as Json[]).map((m) => [
        m.file.replace(/\/model\.onnx$/, "").replace(/^.*\/(reference|scratch)\//, ""),
        m.nodes.length,
        `${m.kernelMs.toFixed(2)} ms`,
        ...cats.map((c) => (m.byCategory[c] === undefined ? "–" : `${m.byCategory[c].toFixed(2)} ms`)),
      ]),
    )}\n\nb${d.batch}×${d.seq}; each node's time is its minimum over ${d.runs} profiled runs (after ${d.warmup} warm-up), summed per category.${d.note ? ` ${d.note}` : ""}`,
  };
};

/**
 * The reference target's verdict. "met" needs the p50 and the CPU-ms ratio both at 2.5× or more: on a loaded
 * machine workerd's wall time swings far more than its CPU time (p50 read 2.6–2.7× where CPU time read 1.9–2.2×
 * in the same runs), and CPU ms per request also holds the bench Worker's own per-request work.
 */
function targetVerdict(p50: number, cpu: number, accuracyGap: number, load: Json): string {
  if (accuracyGap > 0.005) return "not met (accuracy)";
  if (p50 >= 2.5 && cpu >= 2.5) return "met";
  if (p50 < 2.5 && cpu < 2.5) return "not met";
  const l = load ? ` at 1-minute load ${load.before[0].toFixed(1)}` : "";
  return `inconclusive (p50 and CPU ms disagree${l}; re-measure on a quiet machine)`;
}

const edge: Formatter = (d) => {
  const usd = (x: number) => `$${x < 0.1 ? x.toFixed(3) : x.toFixed(2)}`;
  const kb = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
  const rtName: Record<string, string> = {
    workerd: "ORT-web in workerd",
    web: "ORT-web wasm in Node",
    node: "ORT-node",
  };
  const sections = (d.models as Json[]).map((m) => {
    const rts = Object.keys(m.variants[0].timings).sort(
      (a, b) => ["workerd", "web", "node"].indexOf(a) - ["workerd", "web", "node"].indexOf(b),
    );
    const cells = [...new Set(rts.flatMap((rt) => Object.keys(m.variants[0].timings[rt])))];
    const rows: string[][] = [];
    for (const rt of rts)
      for (const v of m.variants) {
        rows.push([
          rtName[rt] ?? rt,
          `${v.target} ${v.precision}`,
          mb(v.bytes),
          v.accuracy === null
            ? "n/a (random weights)"
            : `${pct(v.accuracy, 2)}${v.precision === "int8" ? ` (${v.predictionsChangedVsFp32} changed)` : ""}`,
          ...cells.flatMap((c) => {
            const t = v.timings[rt][c];
            return t
              ? [`${ms(t.p50Ms)} ms`, `${ms(t.cpuMs)} ms`, usd(t.usdPerMillionRequests)]
              : ["not run", "", ""];
          }),
        ]);
      }
    const head = [
      "runtime",
      "variant",
      "bytes",
      "test accuracy",
      ...cells.flatMap((c) => [`p50 ${c}`, `CPU/req ${c}`, `$/M req ${c}`]),
    ];
    const reps = rts
      .map(
        (rt) =>
          `${rtName[rt] ?? rt}: ${Object.entries(m.cells[rt])
            .map(([c, p]: [string, Json]) =>
              // workerd cells since the clock-resolution change: each sample is `inner` runs timed together.
              p.inner === undefined || p.inner === 1
                ? `${c} ${p.runs} runs${p.inner === 1 ? " (one session.run per sample: a run spans over 50 ms)" : ""} after ${p.warmup} warm-up`
                : `${c} ${p.runs} samples of ${p.inner} consecutive session.run${p.inner === 1 ? "" : "s"} (timed together, divided by ${p.inner}) after ${p.warmup} warm-up`,
            )
            .join(", ")}`,
      )
      .join("; ");
    const ratio = (rt: string, c: string) => {
      const dense = m.variants.find((v: Json) => v.target === "dense" && v.precision === "fp32");
      const best = m.variants.find((v: Json) => v.target === "0.4" && v.precision === "int8");
      const [a, b] = [dense?.timings[rt]?.[c], best?.timings[rt]?.[c]];
      return a && b ? { p50: a.p50Ms / b.p50Ms, cpu: a.cpuMs / b.cpuMs } : null;
    };
    const speed = rts
      .map((rt) => {
        const r = cells.map((c) => ratio(rt, c));
        return `${rtName[rt] ?? rt} ${r.map((x) => (x === null ? "–" : `${x.p50.toFixed(2)}× (CPU ${x.cpu.toFixed(2)}×)`)).join(" / ")}`;
      })
      .join(", ");
    // A file merged from several bench:edge runs (bench/lib/edge-merge.ts) names the run behind each model.
    const measuredBy = m.run
      ? ` Measured by \`${m.run.command}\` at ${m.run.generatedAt}, 1-minute load average ${m.run.loadAverage.before[0].toFixed(1)} before / ${m.run.loadAverage.after[0].toFixed(1)} after.`
      : "";
    return `### ${m.model}\n\n${m.description}. Repetitions: ${reps}.${measuredBy}\n\n${table(head, rows)}\n\n0.4 int8 vs dense fp32, speed-up in p50 (and in CPU ms) at ${cells.join(" / ")}: ${speed}.`;
  });
  const b = d.bundle;
  const bundle = b
    ? `### Worker bundle\n\n\`${b.command}\` on the gateway's wrangler.toml${b.wranglerTotal ? ` (wrangler: ${b.wranglerTotal})` : ""}.\n\n${table(
        ["file", "kind", "raw", "gzip"],
        [
          ...b.files.map((f: Json) => [f.file, f.kind, kb(f.rawBytes), kb(f.gzipBytes)]),
          ["total", "", kb(b.total.rawBytes), kb(b.total.gzipBytes)],
        ],
      )}\n\nPlan limits (compressed, ${b.limits.source}): Free ${kb(b.limits.freeGzipBytes)} — ${b.fitsFree ? "fits" : "does not fit"}; Paid ${kb(b.limits.paidGzipBytes)} — ${b.fitsPaid ? "fits" : "does not fit"}. Largest packages in the JavaScript (bytes in the bundle, before gzip): ${b.jsPackages
        .slice(0, 8)
        .map((p: Json) => `${p.name} ${kb(p.rawBytes)}`)
        .join(", ")}.`
    : "";
  const p = d.pricing;
  const ref = (d.models as Json[]).find((m) => m.model === "reference");
  const pick = (t: string, pr: string) =>
    ref?.variants.find((v: Json) => v.target === t && v.precision === pr);
  const [dense, fp04, int04] = [pick("dense", "fp32"), pick("0.4", "fp32"), pick("0.4", "int8")];
  const [wa, wb] = [dense?.timings.workerd?.b1x128, int04?.timings.workerd?.b1x128];
  const target =
    wa && wb && fp04
      ? `\n\nTarget (reference encoder, ORT-web inside workerd, b1×128: 0.4 int8 at least 2.5× faster than dense fp32, test accuracy within 0.5 points of 0.4 fp32): p50 ${(wa.p50Ms / wb.p50Ms).toFixed(2)}×, CPU ms ${(wa.cpuMs / wb.cpuMs).toFixed(2)}×, accuracy ${pct(int04.accuracy, 2)} vs ${pct(fp04.accuracy, 2)} (${(100 * Math.abs(int04.accuracy - fp04.accuracy)).toFixed(2)} points): ${targetVerdict(wa.p50Ms / wb.p50Ms, wa.cpuMs / wb.cpuMs, Math.abs(int04.accuracy - fp04.accuracy), ref?.run?.loadAverage ?? d.loadAverage)}.`
      : "";
  return {
    title: "Cost per request at the edge",
    command: d.command ?? "npm run bench:edge",
    date: d.generatedAt,
    machine: d.machine,
    body: `Price: ${p.usageModel}, $${p.usdPerMillionCpuMs} per million CPU ms and $${p.usdPerMillionRequests} per million requests beyond ${p.included} (${p.source}, read ${p.read}). ${d.costFormula}. ${d.statistic} 1-minute load average ${d.loadAverage.before[0].toFixed(1)} before / ${d.loadAverage.after[0].toFixed(1)} after: the machine was shared with other jobs, so absolute times are inflated; ratios within one run compare.${target}\n\n${sections.join("\n\n")}${bundle ? `\n\n${bundle}` : ""}`,
  };
};

const ms2 = (x: number) => x.toFixed(2);
const ms3 = (x: number) => x.toFixed(3);
const loadOf = (m: Json) =>
  m?.loadAverageAtStart
    ? ` 1-minute load average ${m.loadAverageAtStart[0].toFixed(1)} at the start, ${m.loadAverageAtEnd[0].toFixed(1)} at the end (a shared 2-core machine: absolute times are inflated, compare within one run).`
    : "";
const machineOf = (m: Json) =>
  m && typeof m === "object" ? `${m.cpu}, ${m.cpus} cores (shared), node ${m.node}` : m;

const gateway: Formatter = (d, name) => {
  // gateway-asm-compare and gateway-soak start with this name but are other benches: their own figures
  if (!Array.isArray(d?.levels)) return generic(d, name);
  const rows = d.levels.map((l: Json) => [
    l.concurrency,
    l.n,
    `${ms(l.e2e.p50Ms)} / ${ms(l.e2e.p95Ms)}`,
    l.throughputRps.toFixed(1),
    ms(l.infer.p50Ms),
    ms2(l.overhead.meanMs),
    l.overheadParts.bodyMeanMs === undefined ? "" : ms2(l.overheadParts.bodyMeanMs),
    ms2((l.overheadLegacy ?? l.overhead).meanMs),
  ]);
  const c1 = d.levels[0];
  const p = c1.overheadParts;
  const parts =
    p.preOtherMeanMs === undefined
      ? ""
      : ` At concurrency ${c1.concurrency} the overhead's means: API-key check ${ms2(p.authMeanMs)} ms, other middleware ${ms2(p.preOtherMeanMs)} ms, route ${ms2(p.routeMeanMs)} ms, the rest of the handler ${ms2(p.restMeanMs)} ms.`;
  const prof = d.profile;
  const cpu = prof
    ? ` **Gateway CPU per request: ${ms3(prof.cpuMsPerRequest.gateway)} ms** (a V8 CPU profile of the Worker's isolate over ${prof.requests} requests at concurrency 1: the isolate thread's CPU time, ${ms2(prof.isolateCpuMsPerRequest)} ms per request, split by the samples' modules; onnxruntime-web ${ms2(prof.cpuMsPerRequest.onnxruntime)} ms, tokenizer ${ms3(prof.cpuMsPerRequest.tokenizer)} ms, V8/workerd outside any module ${ms3(prof.cpuMsPerRequest.vm)} ms; the sampler took ${(100 * prof.samplingCoverage).toFixed(0)}% of the samples its interval implies). Its largest modules: ${prof.gatewayModules
        .slice(0, 6)
        .map((m: Json) => `${m.name} ${ms3(m.cpuMsPerRequest)}`)
        .join(", ")}.`
    : "";
  return {
    title: "Gateway inference through wrangler dev",
    command: d.command ?? "npm run bench:gateway",
    date: d.date,
    machine: machineOf(d.machine),
    detail: "inference-api.md",
    body: `${d.model.kind} encoder (${(d.model.params / 1e6).toFixed(2)} M params), batch ${d.input.batch} x seq ${d.input.seq}, auth on; tree ${d.tree?.commit ?? "not recorded"}. Cold first request ${ms(d.cold.e2eMs)} ms; onnxruntime-node (1 thread) p50 ${ms(d.ortNode1Thread.p50Ms)} ms, ORT-web in workerd / node ${d.ortWebOverNodeRatio.toFixed(2)}x.${loadOf(d.machine)}\n\n${table(
      [
        "concurrency",
        "requests",
        "e2e p50 / p95 ms",
        "req/s",
        "infer p50 ms",
        "overhead mean ms",
        "body arrival mean ms",
        "legacy overhead mean ms",
      ],
      rows,
    )}\n\n*overhead*: the gateway's own time per request, from the request's arrival to the response minus load, tokenize, infer and the request body's arrival (\`pre\` + \`total\` − \`load\` − \`tokenize\` − \`infer\` − \`body\`); *body arrival*: \`server-timing\` \`body\`, mostly waiting for the client's bytes through wrangler dev's proxy; *legacy*: \`total\` − \`load\` − \`tokenize\` − \`infer\` + \`auth\` + \`generation\`, the formula every tree reports (body arrival included, other middleware not); all three are \`server-timing\` wall time at workerd's whole-millisecond resolution.${parts}${cpu}`,
  };
};

const gatewayCompare: Formatter = (d) => {
  const side = (name: string, s: Json) => [
    name,
    s.commit,
    s.gatewayCpuMedianMs === undefined ? "not measured" : ms3(s.gatewayCpuMedianMs),
    s.onnxruntimeCpuMedianMs === undefined ? "not measured" : ms2(s.onnxruntimeCpuMedianMs),
    ms2(s.legacyOverheadMedianMs),
    s.overheadMedianMs === undefined ? "not reported" : ms2(s.overheadMedianMs),
    s.bodyArrivalMedianMs === undefined ? "not reported" : ms2(s.bodyArrivalMedianMs),
    ms(s.e2eP50MedianMs),
    ms(s.inferP50MedianMs),
  ];
  const a = d.after;
  const parts =
    a.authMedianMs === undefined
      ? ""
      : ` After: API-key check ${ms2(a.authMedianMs)} ms, other middleware ${ms2(a.otherMiddlewareMedianMs)} ms, route ${ms2(a.routeMedianMs)} ms, rest of the handler ${ms2(a.restMedianMs)} ms.`;
  return {
    title: "Gateway overhead, before and after",
    command: d.command,
    date: d.date,
    machine: machineOf(d.machine),
    detail: "inference-api.md",
    body: `bench:gateway at concurrency 1, auth on, the same client serving each tree in turn (${d.runs.length / 2} alternating rounds); ${d.statistic}.${loadOf(d.machine)}\n\n${table(
      [
        "tree",
        "commit",
        "gateway CPU ms",
        "onnxruntime-web CPU ms",
        "legacy overhead ms",
        "overhead ms",
        "body arrival ms",
        "e2e p50 ms",
        "infer p50 ms",
      ],
      [side("before", d.before), side("after", d.after)],
    )}\n\n${d.gatewayCpuRatio === undefined ? "" : `Gateway CPU per request, after / before: **${d.gatewayCpuRatio.toFixed(2)}x** (per ms of onnxruntime-web CPU in the same runs: ${d.gatewayPerOnnxruntimeCpuRatio.toFixed(2)}x). `}After / before on the legacy formula (the one both trees report): ${d.legacyOverheadRatio.toFixed(2)}x, with inference p50 ${d.inferP50Ratio === undefined ? "not recorded" : `${d.inferP50Ratio.toFixed(2)}x`} in the same runs (the machine's load moves both); legacy overhead per ms of inference, after / before: ${d.legacyOverheadPerInferRatio === undefined ? "not recorded" : `${d.legacyOverheadPerInferRatio.toFixed(2)}x`}.${parts}`,
  };
};

const gatewayThroughput: Formatter = (d, name) => {
  const f = d.family;
  // The Worker's workerd CPU over each level, in cores (median over rounds), where the run recorded it.
  const cpuOf = (side: string, c: number) => {
    const xs = (d.runs as Json[])
      .filter((r) => r.side === side)
      .map((r) => (r.levels as Json[]).find((l) => l.concurrency === c)?.cpuCoreShare?.workerdWorker)
      .filter((x: unknown) => typeof x === "number")
      .sort((a: number, b: number) => a - b);
    if (xs.length === 0) return null;
    const m = xs.length >> 1;
    return xs.length % 2 ? xs[m] : (xs[m - 1] + xs[m]) / 2;
  };
  const withCpu = (d.sides as Json[]).some((s) => cpuOf(s.side, s.levels[0].concurrency) !== null);
  const rows = (d.sides as Json[]).flatMap((s) =>
    (s.levels as Json[]).map((l) => [
      s.what,
      l.concurrency,
      `${l.throughputRps.toFixed(1)} req/s`,
      `${ms(l.p50Ms)} ms`,
      `${ms(l.p95Ms)} ms`,
      l.errors,
      l.proxyRetries,
      ...(withCpu ? [(cpuOf(s.side, l.concurrency) ?? Number.NaN).toFixed(2)] : []),
    ]),
  );
  const ratios = (d.ratios.familyOverBaseline as Json[])
    .map((r) => `c=${r.concurrency}: throughput ${r.throughput.toFixed(2)}×, p50 ${r.p50.toFixed(2)}×`)
    .join("; ");
  const dense = (d.ratios.denseOverBaseline as Json[])
    .map((r) => `c=${r.concurrency} ${r.throughput.toFixed(2)}×`)
    .join(", ");
  const c32 = (d.ratios.familyOverBaseline as Json[]).find((r) => r.concurrency === 32);
  const c1 = (d.ratios.familyOverBaseline as Json[]).find((r) => r.concurrency === 1);
  const verdict =
    c32 && c1
      ? `Target (throughput at c=32 at least 2× the baseline's, p50 at c=1 no more than 5% worse): ${c32.throughput.toFixed(2)}× and ${c1.p50.toFixed(2)}× — ${c32.throughput >= 2 && c1.p50 <= 1.05 ? "met" : "not met"}.`
      : "";
  const chosen = f?.members.find((m: Json) => m.version === f.route.chosen);
  const family = f
    ? `\n\nThe family (${f.description}): ${f.members
        .map(
          (m: Json) =>
            `v${m.version} ${m.label} (${mb(m.bytes)}, test accuracy ${pct(m.accuracy, 2)} on ${m.evalExamples}, manifest p50 ${ms(m.manifestP50Ms)} ms)`,
        )
        .join(
          ", ",
        )}. SLA: accuracy, non-inferiority margin ${(100 * f.sla.margin).toFixed(1)} points on the paired evidence. The router serves ${chosen ? `v${chosen.version} (${chosen.label})` : "none"}: ${f.route.reason}.`
    : "";
  const b = d.batching;
  const batching = b
    ? `\n\nWhy no dynamic batcher: ${b.source} measured ORT-web inside workerd at ${b.cells.join(" and ")} — ${(
        b.variants as Json[]
      )
        .map(
          (v) =>
            `${v.label} ${ms(v.b1Ms)} ms for one row vs ${ms(v.perRowB32Ms)} ms per row in a batch of 32`,
        )
        .join(
          ", ",
        )}. One isolate runs one wasm thread, so a batch costs its rows' sum and only the per-run overhead could be saved, while a window would add its wait to every request at c=1.`
    : "";
  // server-timing infer p50 per side at the highest concurrency, median over rounds (from the raw runs).
  const top = Math.max(...(d.sides[0].levels as Json[]).map((l) => l.concurrency));
  const inferAt = (side: string) => {
    const xs = (d.runs as Json[])
      .filter((r) => r.side === side)
      .map((r) => (r.levels as Json[]).find((l) => l.concurrency === top).inferP50Ms)
      .sort((a: number, b: number) => a - b);
    const m = xs.length >> 1;
    return xs.length % 2 ? xs[m] : (xs[m - 1] + xs[m]) / 2;
  };
  const infer = `\n\nInside the isolate (server-timing \`infer\` p50 at c=${top}, lock wait included): ${(
    d.sides as Json[]
  )
    .map((s) => `${s.side} ${ms(inferAt(s.side))} ms`)
    .join(", ")}.`;
  return {
    title: `Gateway throughput: baseline tree vs this tree (${Math.max(...(d.runs as Json[]).map((r) => r.round))} round(s), ${name}.json)`,
    command: d.command,
    date: d.date,
    machine: `${d.machine.cpus} × ${d.machine.cpu}, node ${d.machine.node}`,
    detail: "inference-api.md",
    body: `${d.note}. Input batch ${d.input.batch} × seq ${d.input.seq}, ${d.input.requestsPerLevel.join(" / ")} requests per level; 1-minute load average ${d.machine.loadAverageAtStart[0].toFixed(1)} at start / ${d.machine.loadAverageAtEnd[0].toFixed(1)} at end.\n\n${table(["served", "c", "throughput", "p50", "p95", "errors", "proxy retries", ...(withCpu ? ["Worker's workerd CPU (cores)"] : [])], rows)}\n\nThe family behind the router over the baseline: ${ratios}. The same dense variant on this tree over the baseline (throughput): ${dense}. ${verdict}${infer}${family}${batching}`,
  };
};

const gatewayProxy: Formatter = (d) => ({
  title: "wrangler dev's proxy under concurrency",
  command: d.command,
  date: d.date,
  machine: d.machine,
  detail: "inference-api.md",
  body: `${d.route}, c=${d.concurrency}: 503 "Your worker restarted mid-request" on ${d.viaProxy.dropped} of ${d.viaProxy.requests} requests through wrangler dev's URL (its proxy) and on ${d.straightToWorker.dropped} of ${d.straightToWorker.requests} sent straight to the Worker's own socket. The answer is the proxy's (a lost connection to the Worker, reported as a restart), not the gateway's; bench:gateway retries it and counts the retries.`,
});

/** Formatters by bench name; `quality-steps1200` uses `quality`'s (the longest name it starts with, then `-`). */
export const FORMATTERS: Record<string, Formatter> = {
  "ab-validity": abValidity,
  fusion,
  edge,
  "edge-ab": edgeAbTitled("Side by side in workerd (reference encoder, b1×128)"),
  "edge-ab-pack": edgeAbTitled("Packed Q/K/V side by side in workerd (reference encoder, b1×128)"),
  "edge-profile": edgeProfile,
  gateway,
  "gateway-compare": gatewayCompare,
  "gateway-throughput": gatewayThroughput,
  "gateway-proxy": gatewayProxy,
  "import-corpus": importCorpus,
  import: importBench,
  quality,
  quantize,
  sparsity,
};

/** Benches whose JSON may not be committed yet: listed at the end so a reader knows they exist. */
export const KNOWN_BENCHES: Record<string, { command: string; detail?: string }> = {
  autodiff: { command: "npm run bench:autodiff", detail: "autodiff.md" },
  demo: { command: "npm run demo" },
  export: { command: "npm run bench:export", detail: "export-benchmark.md" },
  gateway: { command: "npm run bench:gateway", detail: "inference-api.md" },
  "gateway-soak": { command: "npm run bench:gateway-soak", detail: "inference-api.md" },
  registry: { command: "npm run bench:registry", detail: "registry-api.md" },
  "sim-ab": { command: "npm run sim:ab", detail: "ab-tests.md" },
  train: { command: "npm run bench:train", detail: "training.md" },
};

function formatterFor(name: string): Formatter | undefined {
  if (FORMATTERS[name]) return FORMATTERS[name];
  const base = Object.keys(FORMATTERS)
    .filter((k) => name.startsWith(`${k}-`))
    .sort((a, b) => b.length - a.length)[0];
  return base ? FORMATTERS[base] : undefined;
}

/** A file without a formatter: its top-level numbers and short strings. */
function generic(d: Json, name: string): Section {
  const known = KNOWN_BENCHES[name];
  const scalars = Object.entries(d ?? {}).filter(
    ([, v]) => typeof v === "number" || typeof v === "boolean" || (typeof v === "string" && v.length <= 80),
  );
  const date = ["date", "when", "at", "generatedAt"].map((k) => d?.[k]).find((v) => typeof v === "string");
  const machine =
    typeof d?.machine === "string"
      ? d.machine
      : d?.machine && typeof d.machine === "object"
        ? Object.values(d.machine).join(", ")
        : d?.environment
          ? studyMachine(d.environment)
          : undefined;
  return {
    title: name,
    command: typeof d?.command === "string" ? d.command : (known?.command ?? `npm run bench:${name}`),
    date,
    machine,
    detail: known?.detail,
    body: scalars.length
      ? table(
          ["field", "value"],
          scalars.map(([k, v]) => [
            k,
            typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(4)) : String(v),
          ]),
        )
      : "(no top-level figures; see the JSON file)",
  };
}

/** The generated part of the page. */
export function renderBenchmarks(files: BenchFile[]): string {
  const sorted = [...files].sort((a, b) => a.name.localeCompare(b.name));
  const parts = sorted.map(({ name, data }) => {
    const f = formatterFor(name);
    let s: Section;
    try {
      s = f ? f(data, name) : generic(data, name);
    } catch (err) {
      // A file whose shape a formatter does not know (an older or newer bench) still gets a section.
      s = generic(data, name);
      s.body = `(the ${name} formatter could not read this file: ${(err as Error).message})\n\n${s.body}`;
    }
    const facts = [
      `- Measured: ${when(s.date) ?? "date not recorded"}${s.machine ? `, ${s.machine}` : ""}.`,
      `- Command: \`${s.command}\`; raw results: \`${BENCH_DIR}/${name}.json\`.`,
      ...(s.detail ? [`- Details: [${s.detail}](${s.detail}).`] : []),
    ];
    return `## ${s.title}\n\n${s.body}\n\n${facts.join("\n")}`;
  });
  const present = new Set(files.map((f) => f.name));
  const missing = Object.entries(KNOWN_BENCHES).filter(([name]) => !present.has(name));
  if (missing.length) {
    parts.push(
      `## Not committed\n\nThese benches write their JSON to \`${BENCH_DIR}/\` too, but no result of theirs is committed, so this page quotes no figure of theirs:\n\n${table(
        ["results file", "command", "about"],
        missing.map(([name, k]) => [
          `\`${BENCH_DIR}/${name}.json\``,
          `\`${k.command}\``,
          k.detail ? `[${k.detail}](${k.detail})` : "",
        ]),
      )}`,
    );
  }
  return parts.join("\n\n");
}

/** The page with its generated block replaced. */
export function renderBenchmarksPage(doc: string, files: BenchFile[]): string {
  return replaceBlock(doc, MARKER, renderBenchmarks(files));
}

/**
 * The bench result files the page is generated from: the committed `bench-results/*.json` (the directory is
 * git-ignored and results are force-added, so an uncommitted local run never reaches the page). Outside a git
 * checkout, every JSON file there.
 */
export function listBenchResults(root = REPO_ROOT): string[] {
  const dir = path.join(root, BENCH_DIR);
  let names: string[];
  try {
    names = execFileSync("git", ["ls-files", "--", `${BENCH_DIR}/*.json`], { cwd: root, encoding: "utf8" })
      .split("\n")
      .filter((f) => f && !f.slice(BENCH_DIR.length + 1).includes("/"))
      .map((f) => path.basename(f));
  } catch {
    names = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".json")) : [];
  }
  return names.filter((f) => existsSync(path.join(dir, f))).sort();
}

export function readBenchResults(root = REPO_ROOT): BenchFile[] {
  return listBenchResults(root).map((f) => ({
    name: f.replace(/\.json$/, ""),
    data: JSON.parse(readFileSync(path.join(root, BENCH_DIR, f), "utf8")),
  }));
}

/** Rewrites docs/benchmarks.md from the committed bench results; returns the page's path. */
export function updateBenchmarksPage(root = REPO_ROOT): string {
  const file = path.join(root, PAGE);
  const doc = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmarks\n";
  const next = renderBenchmarksPage(doc, readBenchResults(root));
  if (next !== doc) writeFileSync(file, next);
  const listed = new Set(listBenchResults(root));
  const dir = path.join(root, BENCH_DIR);
  const untracked = existsSync(dir)
    ? readdirSync(dir).filter((f) => f.endsWith(".json") && !listed.has(f))
    : [];
  console.log(
    `${next === doc ? "unchanged" : "wrote"} ${PAGE}` +
      (untracked.length
        ? ` (not on it until committed: ${untracked.map((f) => `${BENCH_DIR}/${f}`).join(", ")}; ` +
          "git add -f them, then npm run docs:benchmarks)"
        : ""),
  );
  return file;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) updateBenchmarksPage();
