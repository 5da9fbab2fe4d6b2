/**
 * Step 1 of the demo: the spam variants as trainer output directories (model.onnx, tokenizer.json,
 * manifest.json). Each comes from a gate checkpoint — the committed one under models/demo/ when it was trained on
 * this base, else one trained now (or always, with --retrain) — exported to the physically pruned model. Exports
 * are cached under <work>/variants/, keyed by the base's sha256, the checkpoint's and the test data's, so a second
 * run reuses them.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import type { Manifest } from "../../src/core/manifest";
import { buildEncoder } from "../../src/core/models/encoder";
import { decodeModel, encodeModel } from "../../src/core/onnx/codec";
import type { Graph } from "../../src/core/onnx/graph";
import { encodeBatch, encodeText, type LoadedTokenizer } from "../../src/core/tokenizer";
import { readTrainerOutput } from "../../src/trainer-node/commands/push";
import { loadTask } from "../../src/trainer-node/data/tasks";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import type { Example } from "../../src/trainer-node/data/types";
import { type ExportReport, exportPrunedModel } from "../../src/trainer-node/export/export";
import { compareLatency } from "../../src/trainer-node/export/latency";
import {
  DEFAULT_QUANT_OP_FORM,
  type QuantizeReport,
  quantizeGraph,
} from "../../src/trainer-node/export/quantize";
import { type EvalSet, sha256Hex, writeVariant } from "../../src/trainer-node/export/variant";
import { GateCheckpoint } from "../../src/trainer-node/gates/checkpoint";
import { DEFAULT_ADAPTER_GATE_METHOD, DEFAULT_GATE_METHOD } from "../../src/trainer-node/gates/methods";
import type { TokenizedSplit } from "../../src/trainer-node/train/data";
import { trainGates } from "../../src/trainer-node/train/loop";
import {
  CHECKPOINT_DIR,
  checkpointFileName,
  DEMO_INT8_TARGETS,
  DEMO_MODEL,
  DEMO_TARGETS,
  DEMO_TASK,
  type DemoProfile,
  MAX_TOKENS,
  REQUEST_BATCH,
  ROOT,
  TINY_ENCODER,
  variantLabel,
} from "./config";

/** Bump when what an export writes changes, so cached variants are rebuilt. */
const CACHE_VERSION = 2; // 2: manifests carry per-example evidence

export const BASE_PATH = path.join(ROOT, "models/base/model.onnx");

export interface DemoBase {
  graph: Graph;
  info: { name: string; sha256: string };
  /** Where it came from (a path, or a description of the tiny random encoder). */
  source: string;
  tokenizerFile: string;
}

/**
 * The pretrained base (full; `file` overrides models/base/model.onnx) or a small seeded random encoder (tiny),
 * with the tokenizer that goes with it (tokenizer.json beside the model, else models/tokenizer.json).
 */
export function loadDemoBase(profile: DemoProfile, file = BASE_PATH): DemoBase {
  if (profile.name === "tiny") {
    const tokenizerFile = DEFAULT_TOKENIZER_PATH;
    const graph = buildEncoder({
      ...TINY_ENCODER,
      vocabSize: loadTokenizerFile(tokenizerFile).vocabSize,
      maxPositions: MAX_TOKENS,
      head: "none",
    });
    const sha256 = sha256Hex(encodeModel(graph));
    const e = TINY_ENCODER;
    return {
      graph,
      info: { name: "tiny-random-encoder", sha256 },
      source: `random encoder (${e.layers} layers, d=${e.hidden}, ${e.heads} heads, FFN ${e.ffn}, seed ${e.seed})`,
      tokenizerFile,
    };
  }
  if (!existsSync(file)) {
    throw new Error(
      file === BASE_PATH
        ? `${path.relative(ROOT, BASE_PATH)} does not exist: it is the committed pretrained base (\`npm run pretrain\` rebuilds it); try \`npm run demo -- --tiny\` meanwhile`
        : `--base: no such file ${file}`,
    );
  }
  const bytes = readFileSync(file);
  const beside = path.join(path.dirname(file), "tokenizer.json");
  return {
    graph: decodeModel(bytes),
    info: { name: path.basename(path.dirname(file)), sha256: sha256Hex(bytes) },
    source: path.relative(ROOT, file),
    tokenizerFile: existsSync(beside) ? beside : DEFAULT_TOKENIZER_PATH,
  };
}

export interface DemoData {
  labels: string[];
  train: TokenizedSplit;
  validation: TokenizedSplit;
  /** The texts sent through the gateway, in order, with their label indices. */
  test: { name: string; texts: string[]; labels: number[]; sha256: string };
}

/** Every k-th example, so a small sample spans the split (splits are sorted by text, not shuffled). */
function spread(examples: Example[], limit?: number): Example[] {
  if (limit === undefined || examples.length <= limit) return examples;
  const step = examples.length / limit;
  return Array.from({ length: limit }, (_, i) => examples[Math.floor(i * step)]);
}

export function loadDemoData(profile: DemoProfile, tokenizer: LoadedTokenizer): DemoData {
  const task = loadTask(DEMO_TASK);
  const padId = tokenizer.specialIds.pad;
  const tokenize = (examples: Example[], seq: number): TokenizedSplit => ({
    ids: examples.map((e) => encodeText(tokenizer, e.text, seq)),
    labels: examples.map((e) => e.label),
    padId,
  });
  const test = spread(task.splits.test, profile.testLimit);
  const whole = test.length === task.splits.test.length;
  return {
    labels: task.labels,
    train: tokenize(spread(task.splits.train, profile.trainLimit), profile.budget.seq),
    validation: tokenize(spread(task.splits.validation, profile.validationLimit), profile.budget.seq),
    test: {
      name: whole ? `${DEMO_TASK}/test` : `${DEMO_TASK}/test (${test.length} of ${task.splits.test.length})`,
      texts: test.map((e) => e.text),
      labels: test.map((e) => e.label),
      sha256: whole ? task.fingerprints.test : sha256Hex(JSON.stringify(test.map((e) => [e.text, e.label]))),
    },
  };
}

/** The test texts tokenized exactly as the gateway's classify does: batches of REQUEST_BATCH, MAX_TOKENS each. */
export function testEvalSet(data: DemoData, tokenizer: LoadedTokenizer): EvalSet {
  const batches = [];
  for (let i = 0; i < data.test.texts.length; i += REQUEST_BATCH)
    batches.push(encodeBatch(tokenizer, data.test.texts.slice(i, i + REQUEST_BATCH), MAX_TOKENS));
  return { name: data.test.name, batches, labels: data.test.labels, sha256: data.test.sha256 };
}

export type CheckpointSource = "committed" | "work" | "trained";

export interface DemoVariant {
  target: number;
  /** fp32, or int8 (quantized from the fp32 variant of the same target). */
  precision: "fp32" | "int8";
  label: string;
  /** Trainer output directory (model.onnx, tokenizer.json, manifest.json). */
  dir: string;
  manifest: Manifest;
  checkpoint: { source: CheckpointSource; file: string };
  /** Whether the export was reused from the cache. */
  cached: boolean;
  trainSeconds?: number;
}

export interface BuildOptions {
  profile: DemoProfile;
  base: DemoBase;
  data: DemoData;
  tokenizer: LoadedTokenizer;
  /** Cache and scratch directory (runs/demo by default). */
  workDir: string;
  retrain: boolean;
  /** Also write trained checkpoints to models/demo/ (full profile). */
  saveCheckpoints: boolean;
  log: (line: string) => void;
}

function readCheckpoint(file: string): { ckpt: GateCheckpoint; text: string } | undefined {
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, "utf8");
  const parsed = GateCheckpoint.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${file} is not a gate checkpoint: ${parsed.error.issues[0].message}`);
  return { ckpt: parsed.data, text };
}

/** The checkpoint to export for one target: committed, left in the work dir by an earlier run, or trained now. */
async function checkpointFor(
  target: number,
  o: BuildOptions,
): Promise<{ ckpt: GateCheckpoint; text: string; source: CheckpointSource; file: string; seconds?: number }> {
  const name = checkpointFileName(target);
  const workFile = path.join(o.workDir, "checkpoints", name);
  const committedFile = path.join(CHECKPOINT_DIR, name);
  const b = o.profile.budget;
  const gateMethod = b.adapterRank ? DEFAULT_ADAPTER_GATE_METHOD : DEFAULT_GATE_METHOD;
  if (!o.retrain) {
    const candidates: [CheckpointSource, string][] =
      o.profile.name === "full"
        ? [
            ["committed", committedFile],
            ["work", workFile],
          ]
        : [["work", workFile]];
    for (const [source, file] of candidates) {
      const found = readCheckpoint(file);
      if (!found) continue;
      // A checkpoint is reused only when it is what this profile would train now: same base, method, adapters.
      const { base, method, adapters } = found.ckpt;
      const mismatch =
        base.sha256 !== o.base.info.sha256
          ? `was trained on another base (sha256 ${base.sha256.slice(0, 12)}…), not ${o.base.info.sha256.slice(0, 12)}…`
          : method !== gateMethod
            ? `was trained with ${method} gates, the profile uses ${gateMethod}`
            : adapters?.rank !== b.adapterRank
              ? `has adapters of rank ${adapters?.rank ?? "none"}, the profile asks for ${b.adapterRank ?? "none"}`
              : undefined;
      if (!mismatch) return { ...found, source, file };
      o.log(`  ${path.relative(ROOT, file)} ${mismatch}: ignored`);
    }
  }
  o.log(
    `  training ${gateMethod} gates${b.adapterRank ? ` with rank-${b.adapterRank} adapters` : ""} for target ${variantLabel(target)}: ${b.steps} + ${b.recoverySteps} recovery steps, batch ${b.batchSize} x ${b.seq} tokens, ${o.data.train.ids.length} training texts`,
  );
  const started = performance.now();
  const result = await trainGates({
    base: o.base.graph,
    baseInfo: o.base.info,
    task: { name: DEMO_TASK, labels: o.data.labels },
    train: o.data.train,
    validation: o.data.validation,
    method: "gates",
    gates: gateMethod,
    targetSparsity: target,
    lambda: b.lambda,
    lr: b.lr,
    steps: b.steps,
    recoverySteps: b.recoverySteps,
    evalEvery: b.evalEvery,
    batchSize: b.batchSize,
    seed: b.seed,
    trainBiases: true,
    pooling: b.pooling,
    adapterRank: b.adapterRank,
    threads: availableParallelism(),
    progress: o.profile.name === "tiny" ? null : undefined,
  });
  const seconds = (performance.now() - started) / 1000;
  for (const note of result.notes) o.log(`  note: ${note}`);
  const missed = Math.abs(result.removedFraction - target) > 0.02;
  o.log(
    `  trained in ${seconds.toFixed(0)} s: validation accuracy ${(100 * result.accuracy).toFixed(2)}%, ` +
      `${(100 * result.removedFraction).toFixed(1)}% of gated weights removed${missed ? " (TARGET MISSED by more than 2 points)" : ""}`,
  );
  const text = `${JSON.stringify(result.checkpoint)}\n`;
  mkdirSync(path.dirname(workFile), { recursive: true });
  writeFileSync(workFile, text);
  if (o.saveCheckpoints && o.profile.name === "full") {
    mkdirSync(CHECKPOINT_DIR, { recursive: true });
    writeFileSync(committedFile, text);
    o.log(`  saved ${path.relative(ROOT, committedFile)}`);
  }
  return { ckpt: result.checkpoint, text, source: "trained", file: workFile, seconds };
}

function cacheKey(o: BuildOptions, checkpointText: string): string {
  const tokenizerSha = sha256Hex(readFileSync(o.base.tokenizerFile));
  return sha256Hex(
    JSON.stringify({
      v: CACHE_VERSION,
      base: o.base.info.sha256,
      checkpoint: sha256Hex(checkpointText),
      tokenizer: tokenizerSha,
      test: o.data.test.sha256,
      maxTokens: MAX_TOKENS,
      batch: REQUEST_BATCH,
      latencyRuns: o.profile.latencyRuns,
    }),
  );
}

/** A cached variant directory, when it is complete and its files match its manifest. */
async function cachedVariant(dir: string): Promise<Manifest | undefined> {
  if (!existsSync(path.join(dir, "manifest.json"))) return undefined;
  try {
    return (await readTrainerOutput(dir)).manifest;
  } catch {
    return undefined;
  }
}

interface FreshExport {
  variant: Omit<DemoVariant, "manifest">;
  ckpt: GateCheckpoint;
  graph: Graph;
  report: ExportReport;
  /** int8 twins: the quantization report and the fp32 graph they came from. */
  quantization?: QuantizeReport;
  fp32Graph?: Graph;
}

/** The fp32 graph and export report of a variant slot (fresh, or read back from its cached directory). */
function fp32Source(s: DemoVariant | FreshExport): { graph: Graph; report: ExportReport } {
  if ("graph" in s) return { graph: s.graph, report: s.report };
  const {
    accuracy: _a,
    latencyGrid: _l,
    ...report
  } = JSON.parse(readFileSync(path.join(s.dir, "export-report.json"), "utf8"));
  return { graph: decodeModel(readFileSync(path.join(s.dir, s.manifest.artifact.file))), report };
}

/**
 * Builds (or reuses) the four fp32 variants, in DEMO_TARGETS order, then the int8 twins of DEMO_INT8_TARGETS. Fresh exports are timed together, interleaved, so
 * their latencies (the router's figures) are compared under the same machine load.
 */
export async function buildVariants(o: BuildOptions): Promise<DemoVariant[]> {
  const evalSet = testEvalSet(o.data, o.tokenizer);
  const slots: (DemoVariant | FreshExport)[] = [];
  const keys = new Map<number, { key: string; c: Awaited<ReturnType<typeof checkpointFor>> }>();
  for (const target of DEMO_TARGETS) {
    const label = variantLabel(target);
    const c = await checkpointFor(target, o);
    const key = cacheKey(o, c.text).slice(0, 12);
    keys.set(target, { key, c });
    const dir = path.join(o.workDir, "variants", `${label}-${key}`);
    const checkpoint = { source: c.source, file: path.relative(ROOT, c.file) };
    const manifest = await cachedVariant(dir);
    if (manifest) {
      o.log(`  ${label}: reusing ${path.relative(ROOT, dir)} (checkpoint ${checkpoint.file})`);
      slots.push({
        target,
        precision: "fp32",
        label,
        dir,
        manifest,
        checkpoint,
        cached: true,
        trainSeconds: c.seconds,
      });
      continue;
    }
    const { graph, report } = await exportPrunedModel(o.base.graph, c.ckpt, {
      batches: evalSet.batches.slice(0, 2),
      flopsSeqLen: MAX_TOKENS,
    });
    o.log(
      `  ${label}: exported from ${checkpoint.file}: ${(100 * report.removedFraction).toFixed(1)}% of gated weights removed, ` +
        `${report.params.before.toLocaleString("en-US")} -> ${report.params.after.toLocaleString("en-US")} parameters, ` +
        `equal to the gated model (max |diff| ${report.equivalence.maxAbsDiff.toExponential(1)})`,
    );
    const variant = {
      target,
      precision: "fp32" as const,
      label,
      dir,
      checkpoint,
      cached: false,
      trainSeconds: c.seconds,
    };
    slots.push({ variant, ckpt: c.ckpt, graph, report });
  }
  for (const target of DEMO_INT8_TARGETS) {
    const label = variantLabel(target, "int8");
    const { key, c } = keys.get(target)!;
    const dir = path.join(o.workDir, "variants", `${label}-${DEFAULT_QUANT_OP_FORM}-${key}`);
    const checkpoint = { source: c.source, file: path.relative(ROOT, c.file) };
    const manifest = await cachedVariant(dir);
    if (manifest) {
      o.log(`  ${label}: reusing ${path.relative(ROOT, dir)}`);
      slots.push({ target, precision: "int8", label, dir, manifest, checkpoint, cached: true });
      continue;
    }
    const fp32 = fp32Source(slots[DEMO_TARGETS.indexOf(target as (typeof DEMO_TARGETS)[number])]);
    const q = quantizeGraph(fp32.graph, { form: DEFAULT_QUANT_OP_FORM });
    o.log(
      `  ${label}: quantized the ${variantLabel(target)} variant (${q.report.form} form): ${q.report.quantized.length} linear layers int8, ` +
        `${q.report.keptFp32.length} kept fp32, max weight rounding error ${q.report.maxWeightError.toExponential(1)}`,
    );
    const variant = { target, precision: "int8" as const, label, dir, checkpoint, cached: false };
    slots.push({
      variant,
      ckpt: c.ckpt,
      graph: q.graph,
      report: fp32.report,
      quantization: q.report,
      fp32Graph: fp32.graph,
    });
  }
  const fresh = slots.filter((s): s is FreshExport => "graph" in s);
  if (fresh.length === 0) return slots as DemoVariant[];
  o.log(
    `  measuring onnxruntime-node latency of ${fresh.length} variant(s), interleaved (batch 1 x ${MAX_TOKENS}, 1 thread)`,
  );
  const latency = await compareLatency(
    Object.fromEntries(fresh.map((f) => [f.variant.label, encodeModel(f.graph)])),
    { batch: 1, seq: MAX_TOKENS, threads: 1, runs: o.profile.latencyRuns, warmup: 3 },
  );
  const out: DemoVariant[] = [];
  for (const s of slots) {
    if (!("graph" in s)) {
      out.push(s);
      continue;
    }
    const manifest = await writeVariant(s.variant.dir, {
      modelName: DEMO_MODEL,
      graph: s.graph,
      report: s.report,
      ckpt: s.ckpt,
      base: o.base.info,
      target: s.variant.target,
      tokenizerFile: o.base.tokenizerFile,
      evalSet,
      latency: latency[s.variant.label],
      precision: s.variant.precision,
      quantization: s.quantization,
      fp32Graph: s.fp32Graph,
    });
    out.push({ ...s.variant, manifest });
  }
  return out;
}
