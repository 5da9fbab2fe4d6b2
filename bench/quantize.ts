/**
 * bench:quantize — precision as the variant family's second axis, on the demo's spam model (models/base + the
 * committed checkpoints): dense and 0.4-pruned, each fp32 and int8 (`sluice export`, then `sluice quantize`), with
 * file bytes, test accuracy, predictions changed vs fp32, and p50 latency at batch 1×128 and 32×128 in
 * onnxruntime-web's wasm build (what the gateway runs) and onnxruntime-node, one thread, median of RUNS
 * interleaved runs. Each runtime runs in its own child process (bench/lib/ort-time.ts says why). Both int8 op
 * forms are timed side by side: standard MatMulInteger (onnxruntime fuses it at session creation) and the
 * contrib DynamicQuantizeMatMul written directly.
 *
 *   npm run bench:quantize            # measure, write bench-results/quantize.json and docs/quantize.md
 *   npm run bench:quantize -- --docs  # regenerate docs/quantize.md from the JSON
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseManifest } from "../src/core/manifest";
import { main } from "../src/trainer-node/cli";
import { updateBenchmarksPage } from "./lib/docs";

const ROOT = path.resolve(import.meta.dirname, "..");
const WORK = path.join(ROOT, "runs/bench-quantize");
const JSON_OUT = path.join(ROOT, "bench-results/quantize.json");
const DOC_OUT = path.join(ROOT, "docs/quantize.md");
const RUNS = Number(process.env.RUNS ?? 10);
const GRID = "1x128,32x128";
const MODELS = [
  { name: "dense", gates: "models/demo/spam-dense.gates.json" },
  { name: "0.4", gates: "models/demo/spam-0.4.gates.json" },
];
const FORMS = ["fp32", "int8", "int8-contrib"] as const;

interface Timing {
  model: string;
  batch: number;
  seqLen: number;
  p50Ms: number;
  runs: number;
}

function time(runtime: "web" | "node", files: string[]): Timing[] {
  const out = execFileSync(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "bench/lib/ort-time.ts"), runtime, String(RUNS), GRID, ...files],
    { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 },
  );
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

async function measure() {
  // Other work on a shared machine slows every model alike (runs are interleaved) but inflates absolute figures.
  const loadBefore = os.loadavg()[0];
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  const dirs: Record<string, string> = {};
  for (const m of MODELS) {
    const fp32 = path.join(WORK, `${m.name}-fp32`);
    const args = ["--base", "models/base/model.onnx", "--gates", m.gates, "--out", fp32, "--runs", "5"];
    if ((await main(["export", ...args])) !== 0) throw new Error(`export ${m.name} failed`);
    dirs[`${m.name}/fp32`] = fp32;
    for (const [form, opForm] of [
      ["int8", "standard"],
      ["int8-contrib", "contrib"],
    ] as const) {
      const out = path.join(WORK, `${m.name}-${form}`);
      if ((await main(["quantize", fp32, "--out", out, "--op-form", opForm, "--runs", "5"])) !== 0)
        throw new Error(`quantize ${m.name} ${form} failed`);
      dirs[`${m.name}/${form}`] = out;
    }
  }
  const keys = MODELS.flatMap((m) => FORMS.map((f) => `${m.name}/${f}`));
  const files = keys.map((k) => path.join(dirs[k], "model.onnx"));
  console.error(`timing ${files.length} models in onnxruntime-web (wasm) ...`);
  const web = time("web", files);
  console.error(`timing ${files.length} models in onnxruntime-node ...`);
  const node = time("node", files);
  const p50 = (t: Timing[], file: string, batch: number) =>
    t.find((x) => x.model === file && x.batch === batch)!.p50Ms;
  const rows = keys.map((key, i) => {
    const m = parseManifest(JSON.parse(readFileSync(path.join(dirs[key], "manifest.json"), "utf8")));
    const [model, form] = key.split("/");
    return {
      model,
      precision: m.precision ?? "fp32",
      opForm: form === "fp32" ? null : form === "int8" ? "standard" : "contrib",
      bytes: m.artifact.bytes,
      sparsity: m.sparsity.removed,
      accuracy: m.metrics.accuracy,
      evalExamples: m.metrics.evalSet.size,
      predictionsChangedVsFp32: m.metrics.others.predictionsChangedVsFp32 ?? 0,
      webP50Ms: { b1x128: p50(web, files[i], 1), b32x128: p50(web, files[i], 32) },
      nodeP50Ms: { b1x128: p50(node, files[i], 1), b32x128: p50(node, files[i], 32) },
    };
  });
  const result = {
    generatedAt: new Date().toISOString(),
    command: "npm run bench:quantize",
    machine: `${os.cpus()[0]?.model ?? "cpu"}, ${os.availableParallelism()} cores (shared), ${os.platform()} ${os.arch()}, node ${process.version}`,
    runtimes: {
      web: "onnxruntime-web 1.30.0 wasm, numThreads 1 (own process)",
      node: "onnxruntime-node 1.30.0 cpu, intraOpNumThreads 1 (own process)",
    },
    loadAverage1m: { before: loadBefore, after: os.loadavg()[0] },
    runs: RUNS,
    statistic: `median of ${RUNS} interleaved runs after 5 warm-up runs per model; inputs: 96 of 128 tokens real, rest padding`,
    rows,
  };
  mkdirSync(path.dirname(JSON_OUT), { recursive: true });
  writeFileSync(JSON_OUT, `${JSON.stringify(result, null, 2)}\n`);
  return result;
}

type Result = Omit<Awaited<ReturnType<typeof measure>>, "loadAverage1m"> & {
  loadAverage1m?: { before: number; after: number };
};

function docs(r: Result): string {
  const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1);
  const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;
  const label = (row: Result["rows"][number]) =>
    `${row.model} ${row.precision}${row.opForm === "contrib" ? " (contrib DynamicQuantizeMatMul)" : ""}`;
  const main = r.rows.filter((x) => x.opForm !== "contrib");
  const table = [
    "| variant | file | accuracy | changed vs fp32 | ORT-web wasm b1×128 | ORT-web wasm b32×128 | ORT-node b1×128 | ORT-node b32×128 |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...main.map(
      (x) =>
        `| ${label(x)} | ${mb(x.bytes)} | ${(100 * x.accuracy).toFixed(2)}% | ${x.precision === "fp32" ? "–" : `${x.predictionsChangedVsFp32} / ${x.evalExamples}`} | ${ms(x.webP50Ms.b1x128)} ms | ${ms(x.webP50Ms.b32x128)} ms | ${ms(x.nodeP50Ms.b1x128)} ms | ${ms(x.nodeP50Ms.b32x128)} ms |`,
    ),
  ];
  const forms = [
    "| model | op form | file | ORT-web wasm b1×128 | ORT-web wasm b32×128 | ORT-node b1×128 | ORT-node b32×128 |",
    "|---|---|---:|---:|---:|---:|---:|",
    ...r.rows
      .filter((x) => x.opForm)
      .map(
        (x) =>
          `| ${x.model} | ${x.opForm} | ${mb(x.bytes)} | ${ms(x.webP50Ms.b1x128)} ms | ${ms(x.webP50Ms.b32x128)} ms | ${ms(x.nodeP50Ms.b1x128)} ms | ${ms(x.nodeP50Ms.b32x128)} ms |`,
      ),
  ];
  const ratio = (model: string, k: "b1x128" | "b32x128") => {
    const std = r.rows.find((x) => x.model === model && x.opForm === "standard")!;
    const con = r.rows.find((x) => x.model === model && x.opForm === "contrib")!;
    return (con.webP50Ms[k] / std.webP50Ms[k]).toFixed(2);
  };
  const speed = (model: string, k: "b1x128" | "b32x128") => {
    const fp = r.rows.find((x) => x.model === model && x.precision === "fp32")!;
    const q = r.rows.find((x) => x.model === model && x.opForm === "standard")!;
    return (fp.webP50Ms[k] / q.webP50Ms[k]).toFixed(2);
  };
  return `<!-- generated by \`npm run bench:quantize\` from bench-results/quantize.json; do not edit -->
# int8 variants: precision as the second axis

The demo's spam model (models/base, 4 layers, d 128) with the committed dense and 0.4 checkpoints, each exported
in fp32 (\`sluice export\`) and quantized (\`sluice quantize\`): linear-layer weights int8, symmetric per output
channel; activations quantized at run time; embeddings, attention products (Q·Kᵀ, ·V), LayerNorm and the
classification head in fp32. Accuracy is the export pipeline's evaluation on the spam test split; "changed" counts
test predictions that differ from the fp32 variant's.

${r.statistic}. ${r.runtimes.web}; ${r.runtimes.node}. Machine: ${r.machine}, 1-minute load average ${r.loadAverage1m ? `${r.loadAverage1m.before.toFixed(1)} before / ${r.loadAverage1m.after.toFixed(1)} after` : "not recorded"} (shared: absolute times are inflated, ratios within one run are what compare). Generated ${r.generatedAt}.

${table.join("\n")}

In onnxruntime-web, int8 is ${speed("dense", "b1x128")}× / ${speed("dense", "b32x128")}× faster than fp32 on the dense
model (b1 / b32) and ${speed("0.4", "b1x128")}× / ${speed("0.4", "b32x128")}× on the 0.4 variant.

## Op form

Both forms hold the same int8 weights and scales. *standard* is DynamicQuantizeLinear → MatMulInteger → Cast →
Mul(scale_x·scale_w) (+ bias Add), one DynamicQuantizeLinear per activation (Q, K and V share theirs);
onnxruntime fuses it at session creation into MatMulIntegerToFloat / DynamicQuantizeMatMul. *contrib* writes
com.microsoft.DynamicQuantizeMatMul directly, each node quantizing its own input.

${forms.join("\n")}

contrib / standard p50 in ORT-web wasm: dense ${ratio("dense", "b1x128")}× (b1), ${ratio("dense", "b32x128")}× (b32);
0.4 ${ratio("0.4", "b1x128")}× (b1), ${ratio("0.4", "b32x128")}× (b32) (above 1: standard is faster).

## Packed Q/K/V (\`--pack-qkv\`)

\`sluice quantize --pack-qkv\` (with \`--optimize edge\`) writes the int8 linears that read one activation — each
attention block's Q, K and V — as one com.microsoft.DynamicQuantizeMatMul over their int8 weights concatenated
column-wise (per-column scales and biases concatenated), then one Split straight into the per-head-group parts
(\`export/pack-int8.ts\`). Every column keeps its int8 values, scale and bias and the activation is quantized once
either way, so the packed graph computes the unpacked one exactly (max |Δlogit| 0 in onnxruntime-web on the
reference encoder's 0.4 variant; checked by the edge optimisation's wasm check). What it changes is three GEMM
calls and three Splits per block into one each; the side-by-side measurement inside workerd is in
[edge-heads.md](edge-heads.md). The manifest's \`training.hyperparameters.quantization.packedQkv\` records it.
`;
}

const result: Result =
  process.argv.includes("--docs") && existsSync(JSON_OUT)
    ? JSON.parse(readFileSync(JSON_OUT, "utf8"))
    : await measure();
writeFileSync(DOC_OUT, docs(result));
console.log(`wrote ${path.relative(ROOT, JSON_OUT)} and ${path.relative(ROOT, DOC_OUT)}`);
updateBenchmarksPage();
