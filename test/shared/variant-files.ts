/**
 * Variant files for tests and benchmarks, runtime-agnostic (workerd and Node): a tiny but real ONNX classifier
 * built with the project's Graph API (or any graph), a tokenizer.json, a manifest describing them with real
 * sha256s, and the multipart form the registry's upload route takes.
 */
import { encodeBitset } from "../../src/core/evidence";
import type { Manifest } from "../../src/core/manifest";
import { encodeModel, f32, Graph, ioSignatureOf } from "../../src/core/onnx";
import { seededUniform } from "./random";

/** Deterministic weights in [-0.5, 0.5), so each seed gives a different but stable model. */
function random(seed: number): () => number {
  const uniform = seededUniform(seed);
  return () => uniform() - 0.5;
}

export interface TinyModelOptions {
  /** Different seeds give different weights, hence different sha256s. */
  seed?: number;
  labels?: number;
  vocab?: number;
  hidden?: number;
}

/**
 * A bag-of-embeddings text classifier with the io signature of a real encoder export:
 * `input_ids`, `attention_mask` (INT64 [batch, seq]) -> `logits` (FP32 [batch, labels]).
 * logits = (sum over unmasked tokens of E[input_ids]) @ W + b. Runs in onnxruntime (opset 17).
 */
export function tinyModelGraph(opts: TinyModelOptions = {}): Graph {
  const { seed = 1, labels = 2, vocab = 16, hidden = 4 } = opts;
  const rnd = random(seed);
  const g = new Graph({ name: `tiny-${seed}`, opset: 17 });
  const ids = g.addInput("input_ids", "int64", ["batch", "seq"]);
  const mask = g.addInput("attention_mask", "int64", ["batch", "seq"]);
  const table = g.addInitializer(
    "embeddings",
    f32([vocab, hidden], Array.from({ length: vocab * hidden }, rnd)),
  );
  const w = g.addInitializer(
    "classifier.weight",
    f32([hidden, labels], Array.from({ length: hidden * labels }, rnd)),
  );
  const b = g.addInitializer("classifier.bias", f32([labels], Array.from({ length: labels }, rnd)));
  const emb = g.op("Gather", [table, ids], { axis: 0 });
  const m = g.op("Unsqueeze", [g.op("Cast", [mask], { to: 1 }), g.constInts([-1])]);
  const pooled = g.op("ReduceSum", [g.op("Mul", [emb, m]), g.constInts([1])], { keepdims: 0 });
  g.op("Add", [g.op("MatMul", [pooled, w]), b], {}, { output: "logits" });
  g.addOutput("logits", "float32", ["batch", labels]);
  return g;
}

export function tinyModelBytes(opts: TinyModelOptions = {}): Uint8Array {
  return encodeModel(tinyModelGraph(opts));
}

/** A minimal word-level tokenizer.json that @huggingface/tokenizers can load. */
export function tinyTokenizerJson(vocab = 16): string {
  const words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ...Array.from({ length: vocab - 4 }, (_, i) => `w${i}`)];
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: { type: "Lowercase" },
    pre_tokenizer: { type: "Whitespace" },
    post_processor: null,
    decoder: null,
    model: { type: "WordLevel", vocab: Object.fromEntries(words.map((w, i) => [w, i])), unk_token: "[UNK]" },
  });
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export interface VariantFiles {
  manifest: Manifest;
  model: Uint8Array;
  tokenizer?: Uint8Array;
}

export interface VariantOptions extends TinyModelOptions {
  task?: string;
  labelNames?: string[];
  accuracy?: number;
  /** Fraction of gated weights removed (`sparsity.removed`). */
  sparsity?: number;
  /** Manifest `precision` (left out when undefined, as in manifests written before int8 variants). */
  precision?: "fp32" | "int8";
  params?: number;
  p50Ms?: number;
  /** Manifest `latency.edge.p50Ms` (onnxruntime-web wasm); left out when undefined, as before it was measured. */
  edgeP50Ms?: number;
  withTokenizer?: boolean;
  /** Per-example evidence on the shared eval split "tiny/test"; sets the accuracy and the split's size. */
  correct?: boolean[];
}

/** model.onnx (+ tokenizer.json) and a manifest describing them with real sha256s and sizes. */
export async function makeVariantFiles(modelName: string, opts: VariantOptions = {}): Promise<VariantFiles> {
  const labelNames = opts.labelNames ?? ["neg", "pos"];
  const graph = tinyModelGraph({ ...opts, labels: labelNames.length });
  const model = encodeModel(graph);
  const tokenizer = opts.withTokenizer ? new TextEncoder().encode(tinyTokenizerJson(opts.vocab)) : undefined;
  const sparsity = opts.sparsity ?? 0.4;
  const zeros = "0".repeat(64);
  const manifest: Manifest = {
    schemaVersion: 1,
    model: { name: modelName, task: opts.task ?? modelName },
    base: { name: "tiny-base", sha256: zeros },
    artifact: { file: "model.onnx", sha256: await sha256Hex(model), bytes: model.byteLength },
    ...(tokenizer ? { tokenizer: { file: "tokenizer.json", sha256: await sha256Hex(tokenizer) } } : {}),
    io: ioSignatureOf(graph),
    labels: labelNames,
    ...(opts.precision ? { precision: opts.precision } : {}),
    sparsity: {
      target: sparsity,
      removed: sparsity,
      params: opts.params ?? graph.parameterCount(),
      baseParams: 1000,
      flopsPerToken: 100,
      baseFlopsPerToken: 200,
    },
    metrics: opts.correct
      ? {
          accuracy: opts.correct.filter(Boolean).length / opts.correct.length,
          others: {},
          evalSet: { name: "tiny/test", sha256: zeros, size: opts.correct.length },
          evidence: { correct: encodeBitset(opts.correct) },
        }
      : {
          accuracy: opts.accuracy ?? 0.9,
          others: {},
          evalSet: { name: "tiny/test", sha256: zeros, size: 10 },
        },
    latency: {
      p50Ms: opts.p50Ms ?? 1,
      p95Ms: 2,
      batch: 1,
      seqLen: 8,
      runtime: "test",
      ...(opts.edgeP50Ms !== undefined
        ? {
            edge: {
              p50Ms: opts.edgeP50Ms,
              p95Ms: 2 * opts.edgeP50Ms,
              batch: 1,
              seqLen: 8,
              runtime: "test wasm",
            },
          }
        : {}),
    },
    training: {
      method: "finegates",
      hyperparameters: {},
      seed: opts.seed ?? 1,
      steps: 1,
      trainableParams: 10,
      createdAt: "2026-11-29T00:00:00.000Z",
    },
  };
  return { manifest, model, tokenizer };
}

/** What a test or simulation declares about a variant of an arbitrary graph (the rest of its manifest is filler). */
export interface GraphVariant {
  accuracy: number;
  p50Ms: number;
  /** default 2 × p50Ms */
  p95Ms?: number;
  /** default the graph's parameter count */
  params?: number;
  sparsity?: number;
  /** tokenizer.json text, uploaded with the variant. */
  tokenizer?: string;
  status?: "staged" | "active";
  /** Per-example evidence on the eval split "test" (its size is the array's); `accuracy` should agree. */
  correct?: boolean[];
  /** Manifest `input` (a sentence-pair variant sets textPairs); left out when undefined. */
  input?: Manifest["input"];
}

/** `graph` as model.onnx (+ tokenizer.json) and a manifest declaring `v`, with real sha256s and sizes. */
export async function graphVariantFiles(
  name: string,
  task: string,
  labels: string[],
  graph: Graph,
  v: GraphVariant,
): Promise<VariantFiles> {
  const model = encodeModel(graph);
  const tokenizer = v.tokenizer !== undefined ? new TextEncoder().encode(v.tokenizer) : undefined;
  const zeros = "0".repeat(64);
  const manifest: Manifest = {
    schemaVersion: 1,
    model: { name, task },
    base: { name: "test-base", sha256: zeros },
    artifact: { file: "model.onnx", sha256: await sha256Hex(model), bytes: model.byteLength },
    ...(tokenizer ? { tokenizer: { file: "tokenizer.json", sha256: await sha256Hex(tokenizer) } } : {}),
    io: ioSignatureOf(graph),
    labels,
    ...(v.input ? { input: v.input } : {}),
    sparsity: {
      target: v.sparsity ?? 0,
      removed: v.sparsity ?? 0,
      params: v.params ?? graph.parameterCount(),
      baseParams: graph.parameterCount(),
      flopsPerToken: 1,
      baseFlopsPerToken: 1,
    },
    metrics: {
      accuracy: v.accuracy,
      others: {},
      evalSet: { name: "test", sha256: zeros, size: v.correct?.length ?? 100 },
      ...(v.correct ? { evidence: { correct: encodeBitset(v.correct) } } : {}),
    },
    latency: { p50Ms: v.p50Ms, p95Ms: v.p95Ms ?? v.p50Ms * 2, batch: 1, seqLen: 8, runtime: "test" },
    training: {
      method: "finegates",
      hyperparameters: {},
      seed: 1,
      steps: 1,
      trainableParams: 1,
      createdAt: "2026-11-29T00:00:00.000Z",
    },
  };
  return { manifest, model, tokenizer };
}

/** The multipart body `POST /v1/models/:model/variants` expects. */
export function variantForm(files: {
  manifest: unknown;
  model: Uint8Array;
  tokenizer?: Uint8Array;
}): FormData {
  const form = new FormData();
  form.append(
    "manifest",
    new File([JSON.stringify(files.manifest)], "manifest.json", { type: "application/json" }),
  );
  form.append("model", new File([files.model], "model.onnx", { type: "application/octet-stream" }));
  if (files.tokenizer) {
    form.append("tokenizer", new File([files.tokenizer], "tokenizer.json", { type: "application/json" }));
  }
  return form;
}
