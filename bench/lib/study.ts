/**
 * Shared plumbing of `bench:sparsity` and `bench:quality`: options, the pretrained base, tokenized tasks (each
 * at its own sequence length: spam 128, sentiment 64), running a grid of cells one after another with a log
 * line per cell, and table formatting.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { buildEncoder } from "../../src/core/models/encoder";
import { decodeModel } from "../../src/core/onnx/codec";
import type { Graph } from "../../src/core/onnx/graph";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import {
  type CellBudget,
  type CellResult,
  type CellSpec,
  loadStudyTask,
  runCell,
  type StudyTask,
} from "../../src/trainer-node/study/run";

export const TASK_SEQ: Record<string, number> = { spam: 128, sentiment: 64 };

/**
 * Budget per cell, the same in both benches (so the quality bench's gated rows are the study's cells), sized so
 * the full study (2 tasks × 3 methods × 4 targets) fits in ~25 minutes on the shared 2-core machine: a fixed
 * number of steps per task (spam's sequences are longer, sentiment's sentences short), the paper's AdamW lr 1e-3
 * and λ 50, a short recovery phase for the binarising methods, 8 evaluations for the gate histogram.
 */
export const STUDY_STEPS: Record<string, number> = { spam: 150, sentiment: 300 };
export function studyBudget(task: string, args: StudyArgs): CellBudget {
  const main = args.steps ?? (args.quick ? 40 : STUDY_STEPS[task]);
  return {
    steps: main,
    recoverySteps: Math.max(10, Math.round(main / 6)),
    evalEvery: Math.max(5, Math.round(main / 8)),
    batchSize: 16,
    lr: args.lr,
    lambda: 50,
    loraRank: 8,
    seed: 1,
    threads: args.threads,
    trainBiases: true,
    pooling: args.pooling,
  };
}
export const BASE_PATH = "models/base/model.onnx";

export interface StudyArgs {
  quick: boolean;
  tasks: string[];
  methods?: string[];
  targets?: number[];
  threads: number;
  steps?: number;
  devEncoder: boolean;
  pooling: "cls" | "mean";
  fresh: boolean;
  lr: number;
}

export function parseStudyArgs(argv: string[]): StudyArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      tasks: { type: "string", default: "spam,sentiment" },
      methods: { type: "string" },
      targets: { type: "string" },
      threads: { type: "string", default: "2" },
      steps: { type: "string" },
      "dev-encoder": { type: "boolean", default: false },
      pooling: { type: "string", default: "mean" },
      fresh: { type: "boolean", default: false },
      lr: { type: "string", default: "1e-3" },
    },
  });
  const list = (s: string | undefined) =>
    s
      ?.split(",")
      .map((x) => x.trim())
      .filter(Boolean);
  const tasks = list(values.tasks)!;
  for (const t of tasks)
    if (!(t in TASK_SEQ)) throw new Error(`--tasks: unknown task '${t}' (have ${Object.keys(TASK_SEQ)})`);
  const targets = list(values.targets)?.map(Number);
  if (targets?.some((t) => !(t >= 0 && t < 1))) throw new Error("--targets: fractions in [0, 1)");
  return {
    quick: values.quick,
    tasks,
    methods: list(values.methods),
    targets,
    threads: Number(values.threads),
    steps: values.steps ? Number(values.steps) : undefined,
    devEncoder: values["dev-encoder"],
    pooling: values.pooling === "cls" ? "cls" : "mean",
    fresh: values.fresh,
    lr: Number(values.lr),
  };
}

export interface BaseModel {
  graph: Graph;
  info: { name: string; sha256: string; path: string; params?: number };
}

/** The pretrained base, or (--dev-encoder, for developing the bench only) a small random encoder. */
export function loadBase(args: StudyArgs): BaseModel {
  if (args.devEncoder) {
    const vocab = loadTokenizerFile(DEFAULT_TOKENIZER_PATH).vocabSize;
    const graph = buildEncoder({
      vocabSize: vocab,
      hidden: 64,
      heads: 2,
      ffn: 128,
      layers: 2,
      maxPositions: 128,
      head: "none",
    });
    return { graph, info: { name: "dev-random-encoder", sha256: "", path: "(random, --dev-encoder)" } };
  }
  if (!existsSync(BASE_PATH))
    throw new Error(
      `${BASE_PATH} does not exist: run \`npm run pretrain\` first (or --dev-encoder to try the bench)`,
    );
  const bytes = readFileSync(BASE_PATH);
  return {
    graph: decodeModel(bytes),
    info: { name: "base", sha256: createHash("sha256").update(bytes).digest("hex"), path: BASE_PATH },
  };
}

export function tokenizerFor(): string {
  const beside = path.join(path.dirname(BASE_PATH), "tokenizer.json");
  return existsSync(beside) ? beside : DEFAULT_TOKENIZER_PATH;
}

const taskCache = new Map<string, StudyTask>();
export function studyTask(name: string, quick: boolean): StudyTask {
  const key = `${name}:${quick}`;
  let t = taskCache.get(key);
  if (!t) {
    t = loadStudyTask(name, tokenizerFor(), TASK_SEQ[name]);
    taskCache.set(key, t);
  }
  return t;
}

/**
 * Cell results are cached under runs/study-cache by a hash of (base sha256, cell, budget): the quality bench's
 * gated rows are the sparsity study's cells for the default method, and a rerun after an interruption picks up
 * where it stopped. `--fresh` ignores the cache. Training is seeded, so a cached cell is what a rerun computes.
 */
const CACHE_DIR = "runs/study-cache";
function cacheFile(base: BaseModel, cell: CellSpec, budget: CellBudget): string {
  const { threads: _threads, ...rest } = budget; // thread count changes speed, not the result we keep
  // The cell in a fixed field order (the order the keys were first written in), so that how a caller happens to
  // build its CellSpec, or extra fields on it, never changes the key.
  const { task, method, gates, target, adapterRank } = cell;
  const spec = { task, method, gates, target, ...(adapterRank ? { adapterRank } : {}) };
  const key = JSON.stringify({ base: base.info.sha256 || base.info.path, cell: spec, budget: rest });
  return path.join(CACHE_DIR, `${createHash("sha256").update(key).digest("hex").slice(0, 24)}.json`);
}

/** Runs cells in order (or takes them from the cache), logging one line per cell to stderr. */
export async function runGrid(
  base: BaseModel,
  cells: CellSpec[],
  budgetFor: (cell: CellSpec, task: StudyTask) => CellBudget,
  quick: boolean,
  fresh = false,
): Promise<(CellResult & { cached?: boolean })[]> {
  const results: (CellResult & { cached?: boolean })[] = [];
  const started = performance.now();
  for (const [i, cell] of cells.entries()) {
    const task = studyTask(cell.task, quick);
    const budget = budgetFor(cell, task);
    const file = cacheFile(base, cell, budget);
    let r: CellResult & { cached?: boolean };
    if (!fresh && !base.info.path.startsWith("(") && existsSync(file)) {
      r = { ...(JSON.parse(readFileSync(file, "utf8")) as CellResult), cached: true };
    } else {
      r = await runCell(base.graph, base.info, task, cell, budget);
      mkdirSync(CACHE_DIR, { recursive: true });
      writeFileSync(file, JSON.stringify(r));
    }
    results.push(r);
    process.stderr.write(
      `[${i + 1}/${cells.length} ${((performance.now() - started) / 60000).toFixed(1)} min] ${label(cell)}: ` +
        `test acc ${(100 * r.testAccuracy).toFixed(1)}%, removed ${(100 * r.removedFraction).toFixed(1)}%, ` +
        `${r.steps} steps, ${r.wallSeconds.toFixed(0)} s${r.cached ? " (cached)" : ""}\n`,
    );
  }
  return results;
}

export const label = (c: CellSpec) =>
  `${c.task} ${c.method === "gates" ? c.gates : c.method}${c.adapterRank ? `+lora${c.adapterRank}` : ""}` +
  (c.method === "gates" ? ` @${c.target}` : "");

export const pct = (x: number, digits = 1) => `${(100 * x).toFixed(digits)}%`;

/** Markdown table (also readable in a terminal). */
export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const lines = [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`];
  for (const r of rows) lines.push(`| ${r.join(" | ")} |`);
  return lines.join("\n");
}

export function environment() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    loadAverage: os.loadavg(),
    node: process.version,
    date: new Date().toISOString(),
  };
}

/** Writes a bench's raw results to bench-results/<name>.json (and makes docs/ for its report). */
export function writeBenchJson(name: string, data: unknown): void {
  mkdirSync("bench-results", { recursive: true });
  mkdirSync("docs", { recursive: true });
  writeFileSync(`bench-results/${name}.json`, `${JSON.stringify(data, null, 2)}\n`);
}
