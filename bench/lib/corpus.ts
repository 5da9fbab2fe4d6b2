/**
 * The Hugging Face export corpus (test/fixtures/hf/<id>/: model.onnx, tokenizer.json, fixture.json, written by
 * scripts/fixtures/make_hf_fixtures.py from HF-faithful PyTorch modules) and the checks each fixture goes
 * through as a user's model would: import and recognition against what the generator says the model is, the
 * imported graph against PyTorch's own outputs, refusals, and `sluice train` + export through the real CLI.
 * Shared by test/node/hf-corpus.test.ts and `npm run bench:import-corpus`.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { startWranglerDev } from "../../scripts/lib/wrangler";
import { encodeModel } from "../../src/core/onnx";
import { decodeModelProto, encodeModelProto } from "../../src/core/onnx/codec";
import { encodeBatch, loadTokenizer } from "../../src/core/tokenizer";
import { DEFAULT_CONFIG } from "../../src/gateway/config";
import { push } from "../../src/trainer-node/commands/push";
import { ImportError } from "../../src/trainer-node/import/errors";
import { float16BitsToNumber } from "../../src/trainer-node/import/fp16";
import { loadUserModel, type UserModel } from "../../src/trainer-node/import/load";
import { requestJson } from "../../src/trainer-node/registry-client";

export const CORPUS_ROOT = path.resolve(import.meta.dirname, "../../test/fixtures/hf");
const CLI = path.resolve(import.meta.dirname, "../../bin/sluice.js");

interface TensorJson {
  dtype?: string;
  dims: number[];
  data: number[];
}

/** fixture.json, as the generator writes it. */
export interface Fixture {
  id: string;
  family: string;
  exporter: string;
  opset: number;
  task: string;
  options: { dynamicAxes: string; idsDtype: string; constantFolding: boolean; fused?: string[] };
  config: Record<string, number>;
  expect: {
    refused: null | "decoder" | "cnn" | "shared-weights" | "fixed-batch";
    encoderLinears?: number;
    headLinears?: number;
    sequenceLength?: number | null;
  };
  reference: {
    inputs: Record<string, TensorJson>;
    outputs: Record<string, TensorJson>;
    /**
     * Bound on the comparisons that run the file itself (`originalVsTorch`, `hiddenVsOriginal`) when it is
     * looser than `TOLERANCE`: 1e-2 for fp16 files, whose activations onnxruntime computes in fp16 while the
     * reference and the import compute in fp32.
     */
    tolerance?: number;
  };
  dir: string;
}

/** Bound on every fp32-vs-fp32 comparison of the corpus (imported vs PyTorch, export vs gated, gateway). */
export const TOLERANCE = 1e-4;

/** Bound on the comparisons that run the fixture's own file in onnxruntime. */
export const originalTolerance = (fx: Fixture) => fx.reference.tolerance ?? TOLERANCE;

/** The corpus (another directory with SLUICE_CORPUS_DIR, for trying exports of your own). */
export function loadCorpus(root = process.env.SLUICE_CORPUS_DIR ?? CORPUS_ROOT): Fixture[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((d) => existsSync(path.join(root, d, "fixture.json")))
    .sort()
    .map((d) => ({
      ...(JSON.parse(readFileSync(path.join(root, d, "fixture.json"), "utf8")) as Omit<Fixture, "dir">),
      dir: path.join(root, d),
    }));
}

export const modelFile = (fx: Fixture) => path.join(fx.dir, "model.onnx");

function tensorOf(t: TensorJson, dtype = t.dtype ?? "float32"): ort.Tensor {
  if (dtype === "int64") return new ort.Tensor("int64", BigInt64Array.from(t.data.map(BigInt)), t.dims);
  if (dtype === "int32") return new ort.Tensor("int32", Int32Array.from(t.data), t.dims);
  return new ort.Tensor("float32", Float32Array.from(t.data), t.dims);
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
};

const FLOAT32 = 1;
const FLOAT16 = 10;

/** An output's values as numbers (onnxruntime-node returns float16 as its bit patterns). */
const floats = (t: ort.Tensor): ArrayLike<number> =>
  t.type === "float16" ? Array.from(t.data as Uint16Array, float16BitsToNumber) : (t.data as Float32Array);

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>) {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/** What import made of a fixture, and how its outputs compare with PyTorch's. */
export interface ImportCheck {
  refused?: string;
  layers?: number;
  heads?: number;
  /** Every linear before the encoder output (what gets gated). */
  encoderLinears?: number;
  /** Of those, the ones inside attention (Q, K, V, O) and FFN (up, down) blocks. */
  blockLinears?: number;
  headLinears?: number;
  headKind?: string;
  fixedSequenceLength?: number;
  unfused?: string[];
  /** The original file in onnxruntime against PyTorch's outputs (validates the fixture itself). */
  originalVsTorch?: number;
  /** Imported `logits` against PyTorch's logits, when the head is kept. */
  logitsVsTorch?: number;
  /** Imported `last_hidden_state` against the original graph's value at the recognised encoder output. */
  hiddenVsOriginal?: number;
}

export async function checkImport(fx: Fixture, numLabels?: number): Promise<ImportCheck> {
  let model: UserModel;
  try {
    model = loadUserModel(modelFile(fx));
  } catch (e) {
    if (e instanceof ImportError) return { refused: e.message };
    throw e;
  }
  const { report, recognition } = model;
  const check: ImportCheck = {
    layers: report.layers,
    heads: report.attention[0]?.heads,
    encoderLinears: recognition.encoderLinears.length,
    blockLinears: 4 * recognition.attention.length + 2 * recognition.ffn.length,
    headLinears: report.head.linears.length,
    headKind: report.head.kind,
    fixedSequenceLength: report.fixedSequenceLength,
    unfused: Object.keys(report.unfused),
  };
  const refFeeds = Object.fromEntries(
    Object.entries(fx.reference.inputs).map(([name, t]) => [name, tensorOf(t)]),
  );

  // The original, with the recognised encoder output exposed when it is a value of the original graph. Edited
  // as a protobuf message, not a Graph: an fp16 file stays fp16 (the Graph holds fp32 only).
  const original = decodeModelProto(model.bytes);
  const hiddenInOriginal = (original.graph?.node ?? []).some((n) =>
    n.output?.includes(report.outputs.hidden),
  );
  if (hiddenInOriginal) {
    const declared = original.graph?.valueInfo?.find((v) => v.name === report.outputs.hidden);
    original.graph?.output?.push({
      name: report.outputs.hidden,
      type: {
        tensorType: {
          elemType: declared?.type?.tensorType?.elemType ?? (report.precision ? FLOAT16 : FLOAT32),
        },
      },
    });
  }
  const origOut = await run(encodeModelProto(original), refFeeds);
  check.originalVsTorch = Math.max(
    ...Object.entries(fx.reference.outputs).map(([name, t]) => maxAbsDiff(floats(origOut[name]), t.data)),
  );

  // The imported graph takes canonical int64 inputs; position_ids (if any) it computes itself.
  const feeds: Record<string, ort.Tensor> = {};
  for (const role of report.inputs) {
    const t = fx.reference.inputs[role.original];
    feeds[role.name] = tensorOf(t, "int64");
  }
  const imported = await run(encodeModel(model.graph), feeds);
  if (hiddenInOriginal)
    check.hiddenVsOriginal = maxAbsDiff(
      imported.last_hidden_state.data as Float32Array,
      floats(origOut[report.outputs.hidden]),
    );
  const torchLogits = fx.reference.outputs.logits;
  if (imported.logits && torchLogits && (numLabels === undefined || report.head.numLabels === numLabels))
    check.logitsVsTorch = maxAbsDiff(imported.logits.data as Float32Array, torchLogits.data);
  return check;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The real CLI in a child process (async, so two fixtures can train at once on two cores). */
export function sluice(args: string[], timeoutMs = 300_000): Promise<CliRun> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Runs `f` over `items`, `limit` at a time, results in input order. */
export async function mapLimit<T, R>(items: T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The acceptance command of issue 14, with the fixture's own tokenizer beside the model. */
export const TRAIN_ARGS = ["--task", "spam", "--steps", "20", "--target-sparsity", "0.3", "--threads", "1"];

/** `sluice train` (which exports) on a fixture, read back from what it wrote. */
export interface TrainCheck {
  code: number;
  ms: number;
  /** Last lines of stderr when the command failed. */
  error?: string;
  removed?: number;
  maxAbsDiff?: number;
  accuracy?: number;
  gatedLayers?: number;
  /** Head linears that got gates (must be none). */
  gatedHead?: string[];
  headKept?: boolean;
}

/** The head linears import recognises (none when it refuses the model). */
function headLinearsOf(fx: Fixture): string[] {
  try {
    return loadUserModel(modelFile(fx)).recognition.headLinears.map((l) => l.node);
  } catch (e) {
    if (e instanceof ImportError) return [];
    throw e;
  }
}

export async function trainFixture(fx: Fixture, outDir: string): Promise<TrainCheck> {
  const headLinears = headLinearsOf(fx);
  const r = await sluice(["train", "--base", modelFile(fx), "--out", outDir, "--name", fx.id, ...TRAIN_ARGS]);
  if (r.code !== 0)
    return { code: r.code, ms: r.ms, error: r.stderr.trim().split("\n").slice(-4).join("\n") };
  const read = (f: string) => JSON.parse(readFileSync(path.join(outDir, f), "utf8"));
  const manifest = read("manifest.json");
  const report = read("export-report.json");
  const gates = read("gates.json") as { layers: { node: string; uses?: string[] }[]; head: { kind: string } };
  // A shared weight's tied gate gates every linear that reads it (ALBERT): count the linears.
  const gated = new Set(gates.layers.flatMap((l) => l.uses ?? [l.node]));
  return {
    code: 0,
    ms: r.ms,
    removed: manifest.sparsity.removed,
    maxAbsDiff: report.equivalence.maxAbsDiff,
    accuracy: manifest.metrics.accuracy,
    gatedLayers: gated.size,
    gatedHead: headLinears.filter((n) => gated.has(n)),
    headKept: gates.head.kind === "model",
  };
}

/** Texts sent through each exported variant: plain, punctuation, mixed case, long (truncated), non-ASCII. */
export const SERVE_TEXTS = [
  "Congratulations! You have won a free cruise, call now to claim your prize.",
  "Hi Anna, can we move tomorrow's meeting to 3pm? Thanks, Tom",
  "URGENT: your account will be suspended unless you verify your details at the link below",
  "The quarterly report is attached; let me know if the numbers look right to you before Friday's review.",
  "Café déjà vu — naïve résumé, 100% free!!!",
  // Longer than any model here takes: truncated at the gateway's limit or the variant's position table.
  Array.from({ length: 40 }, (_, i) => `Line ${i}: please review the attached invoice and reply.`).join(" "),
];

/** Softmax scores of an exported variant on `texts`, in onnxruntime-node, tokenized by the variant's tokenizer. */
export async function localScores(dir: string, texts: string[]): Promise<number[][]> {
  const manifest = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8"));
  const maxTokens = Math.min(
    DEFAULT_CONFIG.classifyMaxTokens,
    manifest.maxSequenceLength ?? DEFAULT_CONFIG.classifyMaxTokens,
  );
  const tok = loadTokenizer(readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const seq = manifest.io.inputs.find((i: { name: string }) => i.name === "input_ids").shape[1];
  const b = encodeBatch(tok, texts, maxTokens, seq > 0 ? seq : undefined);
  const dims = [b.batch, b.seqLen];
  const feeds: Record<string, ort.Tensor> = {};
  for (const { name } of manifest.io.inputs as { name: string }[])
    feeds[name] = new ort.Tensor(
      "int64",
      name === "input_ids"
        ? b.inputIds
        : name === "attention_mask"
          ? b.attentionMask
          : new BigInt64Array(b.inputIds.length),
      dims,
    );
  const logits = (await run(readFileSync(path.join(dir, "model.onnx")), feeds)).logits.data as Float32Array;
  const k = logits.length / b.batch;
  return Array.from({ length: b.batch }, (_, r) => {
    const row = Array.from(logits.subarray(r * k, (r + 1) * k));
    const max = Math.max(...row);
    const e = row.map((x) => Math.exp(x - max));
    const z = e.reduce((a, x) => a + x, 0);
    return e.map((x) => x / z);
  });
}

export interface ServeCheck {
  version: number;
  /** Largest difference between the gateway's scores and onnxruntime-node's on SERVE_TEXTS. */
  maxScoreDiff: number;
  /** A /v2 infer one token longer than the model's position table: the status and error (must be a 400). */
  tooLong?: { status: number; error: string };
}

/** Registers and activates an exported variant (the `sluice push` path), then classifies SERVE_TEXTS pinned to it. */
export async function serveFixture(
  gateway: { url: string; adminToken: string; apiKey?: string },
  dir: string,
): Promise<ServeCheck> {
  const manifest = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8"));
  const { name } = manifest.model as { name: string };
  const pushed = await push({ dir, url: gateway.url, token: gateway.adminToken, json: false }, () => {});
  const version = pushed.variant.version;
  await requestJson(gateway.url, `/v1/models/${name}/variants/${version}`, {
    method: "PATCH",
    token: gateway.adminToken,
    body: { status: "active" },
  });
  const { body } = await requestJson<{ version: number; results: { scores: Record<string, number> }[] }>(
    gateway.url,
    `/v1/models/${name}/versions/${version}/classify`,
    { method: "POST", token: gateway.apiKey, body: { texts: SERVE_TEXTS } },
  );
  const local = await localScores(dir, SERVE_TEXTS);
  const labels = manifest.labels as string[];
  let tooLong: ServeCheck["tooLong"];
  const limit = manifest.maxSequenceLength as number | undefined;
  const fixed = manifest.io.inputs[0].shape[1] > 0;
  if (limit !== undefined && !fixed) {
    const n = limit + 1;
    const inputs = (manifest.io.inputs as { name: string }[]).map((i) => ({
      name: i.name,
      datatype: "INT64",
      shape: [1, n],
      data: Array.from({ length: n }, () =>
        i.name === "attention_mask" ? 1 : i.name === "input_ids" ? 5 : 0,
      ),
    }));
    const res = await fetch(`${gateway.url}/v2/models/${name}/versions/${version}/infer`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(gateway.apiKey ? { authorization: `Bearer ${gateway.apiKey}` } : {}),
      },
      body: JSON.stringify({ inputs }),
    });
    tooLong = { status: res.status, error: ((await res.json()) as { error: string }).error };
  }
  if (body.results.length !== SERVE_TEXTS.length)
    return { version, maxScoreDiff: Number.POSITIVE_INFINITY, tooLong };
  let maxScoreDiff = 0;
  for (const [i, r] of body.results.entries())
    for (const [j, l] of labels.entries())
      maxScoreDiff = Math.max(maxScoreDiff, Math.abs(r.scores[l] - local[i][j]));
  return { version, maxScoreDiff, tooLong };
}

export interface TrainedAndServed {
  train: TrainCheck;
  serve?: ServeCheck | Error;
}

/**
 * Every accepted fixture through the acceptance command (two at a time, one per core), then each one that
 * trained registered and classified under one `wrangler dev`.
 */
export async function trainAndServe(
  accepted: Fixture[],
  work: string,
): Promise<Map<string, TrainedAndServed>> {
  const trained = await mapLimit(accepted, 2, (fx) => trainFixture(fx, path.join(work, fx.id)));
  const out = new Map<string, TrainedAndServed>(accepted.map((fx, i) => [fx.id, { train: trained[i] }]));
  const gateway = await startWranglerDev();
  try {
    for (const fx of accepted) {
      const r = out.get(fx.id)!;
      if (r.train.code !== 0) continue;
      try {
        r.serve = await serveFixture(gateway, path.join(work, fx.id));
      } catch (e) {
        r.serve = e as Error;
      }
    }
  } finally {
    gateway.stop();
  }
  return out;
}
