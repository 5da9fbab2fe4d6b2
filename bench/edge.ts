/**
 * bench:edge — what one request costs at the edge. Three models, each as dense / 0.2 / 0.4 pruned × fp32 / int8:
 *   - demo: the demo's spam model (models/base, 4L d128) exported from the committed gate checkpoints;
 *   - reference: the reference encoder (4L d256 h4 FFN 1024, seeded random init, not pretrained) adapted on the
 *     spam task by `sluice train` (gates + LoRA r=8; see REFERENCE), so its accuracy is a real test-split accuracy;
 *   - bert-base: the BERT-base layout (12L d768 h12 FFN 3072, vocabulary 30522), random weights (accuracy n/a),
 *     pruned by seeded structured gates (bench/lib/gates.ts, as bench:export) through the same export code.
 * int8 variants come from `sluice quantize --gelu tanh --contrib-fusions` (demo, reference; see INT8_FLAGS) or
 * quantizeGraph (bert-base), standard op form.
 *
 * Each variant is timed at b1×128 and b32×128 in three runtimes, each in its own process (bench/lib/ort-time.ts
 * says why): onnxruntime-node (1 thread), onnxruntime-web wasm in Node (1 thread), and onnxruntime-web inside
 * workerd (bench/edge-worker/worker.ts under wrangler's unstable_dev, loaded by src/gateway/ort-wasm.ts exactly
 * as the gateway loads it). p50 is the median wall time of session.run; CPU ms is the median CPU time per request:
 * process CPU time around each run in Node, and workerd's own CPU time (/proc/<pid>/stat, 10 ms ticks) summed over
 * the timed /run requests of a cell in workerd. Cost per million requests = CPU ms × the Workers Standard CPU price.
 * The Worker bundle (`wrangler deploy --dry-run`) is measured raw and gzipped, per file and per package.
 *
 *   npm run bench:edge                                  # everything: writes bench-results/edge.json
 *   npm run bench:edge -- --models demo,reference --runs 9 --runtimes node,workerd
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { unstable_dev } from "wrangler";
import { manifestGraphOptimization, parseManifest } from "../src/core/manifest";
import { buildEncoder, type EncoderConfig } from "../src/core/models/encoder";
import { encodeModel } from "../src/core/onnx/codec";
import { countParameters, exportPrunedModel } from "../src/trainer-node/export/export";
import { quantizeGraph } from "../src/trainer-node/export/quantize";
import { updateBenchmarksPage } from "./lib/docs";
import { mergeEdgeResults } from "./lib/edge-merge";
import { structuredGates } from "./lib/gates";
import {
  cached,
  cli,
  FAMILY_TARGETS,
  FAMILY_WORK,
  type FamilyDirs,
  type FamilyTarget,
  INT8_FLAGS,
  REFERENCE_DESCRIPTION,
  referenceTargetDirs,
  targetDirs,
} from "./lib/variant-family";
import { processCpuMs, workerdPids } from "./lib/workerd-cpu";

const ROOT = path.resolve(import.meta.dirname, "..");
const WORK = FAMILY_WORK;
const JSON_OUT = path.join(ROOT, "bench-results/edge.json");

/**
 * Workers Standard usage model, as published on the pricing page (read 2026-12-07): $0.02 per additional million
 * CPU milliseconds (30 million included per month) and $0.30 per additional million requests (10 million
 * included). Worker size limits (after compression) from the limits page: 3 MB on Free, 10 MB on Paid.
 */
export const PRICING = {
  source: "https://developers.cloudflare.com/workers/platform/pricing/",
  read: "2026-12-07",
  usageModel: "Workers Standard (Paid plan)",
  usdPerMillionCpuMs: 0.02,
  usdPerMillionRequests: 0.3,
  included: "30 million CPU ms and 10 million requests per month",
  limitsSource: "https://developers.cloudflare.com/workers/platform/limits/",
  workerSizeLimitGzipBytes: { free: 3 * 1024 * 1024, paid: 10 * 1024 * 1024 },
};

const { values: flags } = parseArgs({
  options: {
    models: { type: "string", default: "demo,reference,bert-base" },
    runtimes: { type: "string", default: "node,web,workerd" },
    runs: { type: "string", default: "15" },
    "no-bundle": { type: "boolean", default: false },
    /** Also time BERT-base at b32×128 in the two wasm runtimes (measured: 1-2 minutes per run on 2 busy cores). */
    "bert-wasm-b32": { type: "boolean", default: false },
  },
});
const MODEL_NAMES = ["demo", "reference", "bert-base"] as const;
type ModelName = (typeof MODEL_NAMES)[number];
const RUNTIMES = ["node", "web", "workerd"] as const;
type Runtime = (typeof RUNTIMES)[number];
const pickList = <T extends string>(flag: string, value: string, allowed: readonly T[]): T[] => {
  const out = value.split(",").map((s) => s.trim());
  for (const v of out)
    if (!allowed.includes(v as T)) throw new Error(`--${flag}: '${v}' is not one of ${allowed.join(", ")}`);
  return out as T[];
};
const models = pickList("models", flags.models!, MODEL_NAMES);
const runtimes = pickList("runtimes", flags.runtimes!, RUNTIMES);
const RUNS = Number(flags.runs);
if (!Number.isInteger(RUNS) || RUNS < 3) throw new Error("--runs must be an integer >= 3");

const TARGETS = FAMILY_TARGETS;
type Target = FamilyTarget;
const PRECISIONS = ["fp32", "int8"] as const;
type Precision = (typeof PRECISIONS)[number];
const SEQ = 128;
const BATCHES = [1, 32] as const;

type SessionLevel = "all" | "disabled";
interface Variant {
  model: ModelName;
  target: Target;
  precision: Precision;
  file: string;
  /**
   * The session's graph optimisation level, as the gateway picks it (src/gateway/sessions.ts sessionLevelFor):
   * "disabled" for a graph fused at export (manifest graphOptimization "edge"), "all" otherwise.
   */
  level: SessionLevel;
  bytes: number;
  params: number;
  removed: number;
  /** Test-split accuracy, null where the weights are random. */
  accuracy: number | null;
  evalExamples: number | null;
  predictionsChangedVsFp32: number | null;
}

/**
 * How many timed runs (and warm-up runs) each cell gets. BERT-base is ~30× the reference encoder's work: 3 runs
 * per cell, and at b32×128 only in ORT-node unless --bert-wasm-b32 — in wasm one b32 run of the dense model
 * takes well over a minute on this 2-core machine, so 6 variants × 2 wasm runtimes would take the bench far past
 * 20 minutes. Its b32 cell has no separate warm-up (the session is warm from b1; the median of 3 drops a slower
 * first run).
 */
function cellPlan(model: ModelName, runtime: Runtime) {
  const big = model === "bert-base";
  const plan: Partial<Record<(typeof BATCHES)[number], { runs: number; warmup: number }>> = {
    1: { runs: big ? 3 : RUNS, warmup: big ? 1 : 3 },
  };
  if (!big || runtime === "node" || flags["bert-wasm-b32"])
    plan[32] = { runs: big ? 3 : Math.max(3, Math.round(RUNS / 3)), warmup: big ? 0 : 1 };
  return plan;
}
const cellsOf = (model: ModelName, runtime: Runtime) =>
  BATCHES.filter((b) => cellPlan(model, runtime)[b]).map((b) => ({
    batch: b,
    ...cellPlan(model, runtime)[b]!,
  }));

// --- variants ----------------------------------------------------------------------------------------------------

function fromManifest(model: ModelName, target: Target, precision: Precision, dir: string): Variant {
  const m = parseManifest(JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")));
  return {
    model,
    target,
    precision,
    file: path.join(dir, "model.onnx"),
    // sessionLevelFor's rule (src/gateway/sessions.ts, not imported: it pulls in the gateway's wasm loader).
    level: manifestGraphOptimization(m) === "edge" ? "disabled" : "all",
    bytes: m.artifact.bytes,
    params: m.sparsity.params,
    removed: m.sparsity.removed,
    accuracy: m.metrics.accuracy,
    evalExamples: m.metrics.evalSet.size,
    predictionsChangedVsFp32:
      precision === "int8" ? Number(m.metrics.others.predictionsChangedVsFp32 ?? Number.NaN) : null,
  };
}

/** Each target's fp32 variant and its int8 twin, as bench/lib/variant-family.ts builds them. */
async function familyVariants(model: ModelName, dirsOf: (target: Target) => Promise<FamilyDirs>) {
  const out: Variant[] = [];
  for (const target of TARGETS) {
    const { fp32, int8 } = await dirsOf(target);
    out.push(fromManifest(model, target, "fp32", fp32), fromManifest(model, target, "int8", int8));
  }
  return out;
}

const demoVariants = () =>
  familyVariants("demo", (target) =>
    targetDirs(
      "demo",
      target,
      (t, out) =>
        cli([
          ...["export", "--base", "models/base/model.onnx", "--gates", `models/demo/spam-${t}.gates.json`],
          ...["--out", out, "--runs", "3"],
        ]),
      { base: "models/base/model.onnx", gates: `models/demo/spam-${target}.gates.json` },
    ),
  );

const referenceVariants = () => familyVariants("reference", referenceTargetDirs);

export const BERT_BASE: EncoderConfig = {
  layout: "bert",
  vocabSize: 30522,
  hidden: 768,
  layers: 12,
  heads: 12,
  ffn: 3072,
  maxPositions: 512,
  numLabels: 2,
  head: "classifier",
  layerNorm: "fused",
  padTokenId: 0,
  seed: 1,
  initStd: 0.02,
};

async function bertVariants(): Promise<Variant[]> {
  const out: Variant[] = [];
  let base: ReturnType<typeof buildEncoder> | undefined;
  for (const target of TARGETS) {
    const t = target === "dense" ? 0 : Number(target);
    for (const precision of PRECISIONS) {
      const dir = path.join(WORK, "bert-base", `${target}-${precision}`);
      await cached(dir, { BERT_BASE, target, precision, gates: "structuredGates seed 42" }, async () => {
        base ??= buildEncoder(BERT_BASE);
        console.error(`building bert-base ${target} ${precision} ...`);
        const { graph, report } = await exportPrunedModel(base, structuredGates(base, t, 42));
        const g = precision === "int8" ? quantizeGraph(graph, { form: "standard" }).graph : graph;
        mkdirSync(dir, { recursive: true });
        writeFileSync(path.join(dir, "model.onnx"), encodeModel(g));
        writeFileSync(
          path.join(dir, "meta.json"),
          JSON.stringify({ removed: report.removedFraction, params: countParameters(g) }),
        );
      });
      const meta = JSON.parse(readFileSync(path.join(dir, "meta.json"), "utf8"));
      const file = path.join(dir, "model.onnx");
      out.push({
        model: "bert-base",
        target,
        precision,
        file,
        level: "all",
        bytes: statSync(file).size,
        params: meta.params,
        removed: meta.removed,
        accuracy: null,
        evalExamples: null,
        predictionsChangedVsFp32: null,
      });
    }
  }
  return out;
}

// --- timing ------------------------------------------------------------------------------------------------------

interface Cell {
  p50Ms: number;
  cpuMs: number;
  runs: number;
  warmup: number;
  /** workerd only: session.runs per timed sample (bracketed by one pair of I/O ticks, divided by this). */
  inner?: number;
}
type Timings = Map<string, Cell>; // key: `${file}|${batch}`

function timeInNode(runtime: "node" | "web", model: ModelName, variants: Variant[]): Timings {
  const grid = cellsOf(model, runtime)
    .map((c) => `${c.batch}x${SEQ}:${c.runs}:${c.warmup}`)
    .join(",");
  const out = execFileSync(
    process.execPath,
    [
      ...["--import", "tsx", path.join(ROOT, "bench/lib/ort-time.ts"), runtime, String(RUNS), grid],
      ...variants.map((v) => `${v.file}@${v.level}`),
    ],
    {
      cwd: ROOT,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 1 << 24,
      // BERT-base variants are held one at a time (each fp32 one is ~0.3-0.45 GB inside the wasm heap).
      env: { ...process.env, ORT_TIME_SEQUENTIAL: model === "bert-base" ? "1" : "0" },
    },
  );
  const rows: { model: string; batch: number; p50Ms: number; cpuMs: number; runs: number }[] = JSON.parse(
    out.trim().split("\n").at(-1)!,
  );
  return new Map(
    rows.map((r) => [
      `${r.model}|${r.batch}`,
      {
        p50Ms: r.p50Ms,
        cpuMs: r.cpuMs,
        runs: r.runs,
        warmup: cellPlan(model, runtime)[r.batch as 1 | 32]!.warmup,
      },
    ]),
  );
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

type Dev = Awaited<ReturnType<typeof unstable_dev>>;

async function call(dev: Dev, url: string, init: RequestInit = {}): Promise<unknown> {
  // biome-ignore lint/suspicious/noExplicitAny: undici's RequestInit and the DOM's differ only in typing.
  const res = await dev.fetch(url, init as any);
  const text = await res.text();
  if (!res.ok) throw new Error(`bench worker ${url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/**
 * workerd's clock reads whole ms between I/O events, so one timed sample is `inner` back-to-back session.runs
 * long enough to span at least SAMPLE_MS: a 15 ms run then resolves to ~0.25 ms instead of 1 ms.
 */
const SAMPLE_MS = 50;
const innerFor = (runMs: number) => Math.max(1, Math.ceil(SAMPLE_MS / Math.max(runMs, 1)));

async function timeInWorkerd(dev: Dev, model: ModelName, variants: Variant[]): Promise<Timings> {
  const out: Timings = new Map();
  const load = async ({ file, level }: Variant, id: string) => {
    const bytes = readFileSync(file);
    const chunk = 32 << 20;
    for (let o = 0; o < bytes.length; o += chunk)
      await call(dev, `/model/${id}?offset=${o}&total=${bytes.length}`, {
        method: "PUT",
        body: bytes.subarray(o, o + chunk),
      });
    await call(dev, `/session/${id}?level=${level}`, { method: "POST" });
  };
  // Interleaved like ort-time.ts, except BERT-base, whose variants are held one at a time (see timeInNode).
  const groups = model === "bert-base" ? variants.map((v) => [v]) : [variants];
  for (const group of groups) {
    const ids = group.map((_, i) => `m${i}`);
    for (let i = 0; i < group.length; i++) await load(group[i], ids[i]);
    const pid = workerdPids();
    for (const { batch, runs, warmup } of cellsOf(model, "workerd")) {
      const warm: number[] = [];
      for (const id of ids) {
        const res = (await call(dev, `/run/${id}?batch=${batch}&seq=${SEQ}&runs=${warmup}`, {
          method: "POST",
        })) as { ms: number[] };
        // The fastest warm-up run: the first runs of a fresh session, and runs hit by load, are slower.
        if (res.ms.length) warm.push(Math.min(...res.ms));
      }
      // One inner count per cell, from the fastest model's warm-up, so every model's samples span >= SAMPLE_MS
      // (a cell without warm-up is BERT-base at b32, seconds per run: 1).
      const inner = warm.length ? innerFor(Math.min(...warm)) : 1;
      const ms: number[][] = ids.map(() => []);
      const cpu: number[] = ids.map(() => 0);
      for (let r = 0; r < runs; r++)
        for (let i = 0; i < ids.length; i++) {
          const c0 = processCpuMs(pid);
          const res = (await call(dev, `/run/${ids[i]}?batch=${batch}&seq=${SEQ}&runs=1&inner=${inner}`, {
            method: "POST",
          })) as {
            ms: number[];
          };
          cpu[i] += processCpuMs(pid) - c0;
          ms[i].push(res.ms[0]);
        }
      // CPU ms per session.run: the cell's CPU ticks over its timed requests, divided by the runs they did.
      for (let i = 0; i < group.length; i++)
        out.set(`${group[i].file}|${batch}`, {
          p50Ms: median(ms[i]),
          cpuMs: cpu[i] / (runs * inner),
          runs,
          warmup,
          inner,
        });
    }
    for (const id of ids) await call(dev, `/session/${id}`, { method: "DELETE" });
  }
  return out;
}

// --- bundle ------------------------------------------------------------------------------------------------------

/** What `wrangler deploy` would upload for the gateway (wrangler.toml), raw and gzipped, per file and package. */
function measureBundle() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-edge-bundle-"));
  try {
    const meta = path.join(dir, "meta.json");
    const outdir = path.join(dir, "out");
    const log = execFileSync(
      process.execPath,
      [
        path.join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
        ...["deploy", "--dry-run", "--outdir", outdir, "--metafile", meta],
      ],
      {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
      },
    );
    const wranglerTotal = /Total Upload: .*/.exec(log)?.[0] ?? null;
    // The source map is written beside the bundle but not uploaded (no upload_source_maps in wrangler.toml).
    const files = readdirSync(outdir)
      .filter((f) => !f.endsWith(".map") && f !== "README.md")
      .map((f) => {
        const bytes = readFileSync(path.join(outdir, f));
        return {
          file: f.replace(/^[0-9a-f]{40}-/, ""),
          kind: f.endsWith(".wasm") ? "wasm" : "js",
          rawBytes: bytes.length,
          gzipBytes: gzipSync(bytes).length,
        };
      })
      .sort((a, b) => b.rawBytes - a.rawBytes);
    const outputs = JSON.parse(readFileSync(meta, "utf8")).outputs as Record<
      string,
      { inputs?: Record<string, { bytesInOutput: number }> }
    >;
    const byPackage = new Map<string, number>();
    for (const o of Object.values(outputs))
      for (const [input, { bytesInOutput }] of Object.entries(o.inputs ?? {})) {
        const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1];
        const key = pkg ?? (input.startsWith("src/") ? input.split("/").slice(0, 2).join("/") : "other");
        byPackage.set(key, (byPackage.get(key) ?? 0) + bytesInOutput);
      }
    const packages = [...byPackage]
      .map(([name, bytes]) => ({ name, rawBytes: bytes }))
      .sort((a, b) => b.rawBytes - a.rawBytes);
    const total = {
      rawBytes: files.reduce((n, f) => n + f.rawBytes, 0),
      gzipBytes: files.reduce((n, f) => n + f.gzipBytes, 0),
    };
    const lim = PRICING.workerSizeLimitGzipBytes;
    return {
      command: "wrangler deploy --dry-run --outdir <tmp> --metafile",
      wranglerTotal,
      files,
      total,
      limits: { freeGzipBytes: lim.free, paidGzipBytes: lim.paid, source: PRICING.limitsSource },
      fitsFree: total.gzipBytes <= lim.free,
      fitsPaid: total.gzipBytes <= lim.paid,
      jsPackages: packages,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- main --------------------------------------------------------------------------------------------------------

async function run() {
  const started = Date.now();
  const loadBefore = os.loadavg();
  const builders: Record<ModelName, () => Promise<Variant[]>> = {
    demo: demoVariants,
    reference: referenceVariants,
    "bert-base": bertVariants,
  };
  const variants: Record<string, Variant[]> = {};
  for (const m of models) {
    const t0 = Date.now();
    variants[m] = await builders[m]();
    console.error(`${m}: ${variants[m].length} variants ready in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const buildS = (Date.now() - started) / 1000;

  const timings: Record<string, Partial<Record<Runtime, Timings>>> = {};
  for (const m of models) timings[m] = {};
  for (const rt of runtimes.filter((r): r is "node" | "web" => r !== "workerd"))
    for (const m of models) {
      const t0 = Date.now();
      timings[m][rt] = timeInNode(rt, m, variants[m]);
      console.error(`${m}: timed in ${rt} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  if (runtimes.includes("workerd")) {
    const dev = await unstable_dev(path.join(ROOT, "bench/edge-worker/worker.ts"), {
      config: path.join(ROOT, "bench/edge-worker/wrangler.toml"),
      experimental: { disableExperimentalWarning: true },
      logLevel: "error",
    });
    try {
      for (const m of models) {
        const t0 = Date.now();
        timings[m].workerd = await timeInWorkerd(dev, m, variants[m]);
        console.error(`${m}: timed in workerd in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      }
    } finally {
      await dev.stop();
    }
  }

  const cost = (cpuMs: number) => cpuMs * PRICING.usdPerMillionCpuMs;
  const result = {
    generatedAt: new Date().toISOString(),
    command: `npm run bench:edge${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    machine: `${os.cpus()[0]?.model ?? "cpu"}, ${os.availableParallelism()} cores shared with other jobs, ${os.platform()} ${os.arch()}, node ${process.version}`,
    loadAverage: { before: loadBefore, after: os.loadavg() },
    runtimes: {
      node: "onnxruntime-node 1.30.0 CPU, intraOpNumThreads 1, own process",
      web: "onnxruntime-web 1.30.0 wasm (SIMD), numThreads 1, in Node, own process",
      workerd:
        "onnxruntime-web 1.30.0 wasm inside workerd (wrangler 4.86.0 unstable_dev), loaded by src/gateway/ort-wasm.ts",
    },
    statistic: `p50: median wall time of session.run; CPU ms: mean CPU time per session.run (Node: process user+system time around each session.run; workerd: the workerd process's CPU time, in 10 ms kernel ticks, summed over a cell's timed /run requests and divided by the session.runs they did, so the bench Worker's own per-request work is spread over inner runs). In workerd the clock only advances at I/O and reads whole ms, so each workerd sample is inner consecutive session.runs (inner per cell, chosen from the warm-up so that a sample spans at least ${SAMPLE_MS} ms) bracketed by zero-length timer waits, divided by inner; p50 is the median of those samples. Inputs: 96 of 128 tokens real, rest padding.`,
    pricing: PRICING,
    costFormula:
      "USD per million requests (CPU part) = CPU ms per request × $0.02; the $0.30 per million request fee comes on top",
    seqLen: SEQ,
    buildSeconds: buildS,
    models: models.map((m) => ({
      model: m,
      description: {
        demo: `the demo's spam model: models/base (BERT layout, 4L d128 h4 FFN 512, pretrained), committed gate checkpoints, spam test split; int8 twins by sluice quantize ${INT8_FLAGS.join(" ")}`,
        reference: `${REFERENCE_DESCRIPTION}; int8 twins by sluice quantize ${INT8_FLAGS.join(" ")}`,
        "bert-base":
          "BERT-base layout (12L d768 h12 FFN 3072, vocabulary 30522), random weights: accuracy n/a; 0.2/0.4 pruned by seeded structured gates through exportPrunedModel",
      }[m],
      cells: Object.fromEntries(
        runtimes.map((rt) => [
          rt,
          Object.fromEntries(
            cellsOf(m, rt).map((c) => {
              const inner = timings[m][rt]?.get(`${variants[m][0].file}|${c.batch}`)?.inner;
              return [`b${c.batch}x${SEQ}`, inner === undefined ? c : { ...c, inner }];
            }),
          ),
        ]),
      ),
      variants: variants[m].map((v) => ({
        target: v.target,
        precision: v.precision,
        sessionLevel: v.level,
        bytes: v.bytes,
        params: v.params,
        removed: v.removed,
        accuracy: v.accuracy,
        evalExamples: v.evalExamples,
        predictionsChangedVsFp32: v.predictionsChangedVsFp32,
        timings: Object.fromEntries(
          runtimes.map((rt) => [
            rt,
            Object.fromEntries(
              BATCHES.map((b) => {
                const c = timings[m][rt]!.get(`${v.file}|${b}`);
                return [`b${b}x${SEQ}`, c ? { ...c, usdPerMillionRequests: cost(c.cpuMs) } : null];
              }),
            ),
          ]),
        ),
      })),
    })),
    bundle: flags["no-bundle"] ? null : measureBundle(),
    totalSeconds: 0,
  };
  result.totalSeconds = (Date.now() - started) / 1000;
  mkdirSync(path.dirname(JSON_OUT), { recursive: true });
  // Models (and the bundle) this run did not measure are kept from the previous file, not dropped.
  const previous = existsSync(JSON_OUT) ? JSON.parse(readFileSync(JSON_OUT, "utf8")) : undefined;
  writeFileSync(JSON_OUT, `${JSON.stringify(mergeEdgeResults(previous, result), null, 2)}\n`);
  console.log(`wrote ${path.relative(ROOT, JSON_OUT)} in ${result.totalSeconds.toFixed(0)} s`);
  updateBenchmarksPage();
}

await run();
