/**
 * The variant manifest: the one contract between trainer, CLI, registry and gateway.
 * A trainer output directory holds `model.onnx`, optional `tokenizer.json`, and `manifest.json`
 * validated by `parseManifest`.
 */
import { z } from "zod";

export const MANIFEST_SCHEMA_VERSION = 1;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex sha256");
const fraction = z.number().min(0).max(1);

/** ONNX tensor element types as named by the Open Inference Protocol v2. */
export const TensorDatatype = z.enum([
  "BOOL",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "FP16",
  "FP32",
  "FP64",
  "BYTES",
]);
export type TensorDatatype = z.infer<typeof TensorDatatype>;

export const TensorSpec = z.object({
  name: z.string().min(1),
  datatype: TensorDatatype,
  /** -1 marks a dynamic axis (batch, sequence). */
  shape: z.array(z.number().int().min(-1)),
});
export type TensorSpec = z.infer<typeof TensorSpec>;

export const IoSignature = z.object({
  inputs: z.array(TensorSpec).min(1),
  outputs: z.array(TensorSpec).min(1),
});
export type IoSignature = z.infer<typeof IoSignature>;

/** Model (and task) names: the manifest's rule, which the registry's paths and bodies apply too. */
export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const MODEL_NAME_RULE =
  "lowercase letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)";

/** One runtime's latency figures: median and p95 of timed runs after warm-up, in ms, at batch × seqLen. */
export const LatencyFigures = z.object({
  p50Ms: z.number().nonnegative(),
  p95Ms: z.number().nonnegative(),
  batch: z.number().int().positive(),
  seqLen: z.number().int().positive(),
  /** e.g. "onnxruntime-node 1.30.0 cpu 1 thread", "onnxruntime-web 1.30.0 wasm, 1 thread". */
  runtime: z.string().min(1),
});
export type LatencyFigures = z.infer<typeof LatencyFigures>;

export const ManifestV1 = z.object({
  schemaVersion: z.literal(MANIFEST_SCHEMA_VERSION),
  model: z.object({
    name: z.string().regex(MODEL_NAME_PATTERN, MODEL_NAME_RULE),
    task: z.string().min(1).max(64),
  }),
  base: z.object({
    name: z.string().min(1),
    sha256: sha256Hex,
    /**
     * Float type the base file stored its weights in, when not fp32. "fp16": the import widened it to fp32
     * exactly (trainer-node/import/fp16.ts), so the variant is fp32 (or int8, `precision`) whatever the base
     * declared, and `io` is what the variant takes, not the base's fp16 outputs.
     */
    precision: z.enum(["fp32", "fp16"]).optional(),
  }),
  artifact: z.object({ file: z.string().min(1), sha256: sha256Hex, bytes: z.number().int().positive() }),
  tokenizer: z.object({ file: z.string().min(1), sha256: sha256Hex }).optional(),
  io: IoSignature,
  /** Longest sequence the model takes (its position-embedding table), when it has a limit. */
  maxSequenceLength: z.number().int().min(2).optional(),
  labels: z.array(z.string().min(1)).min(1),
  /**
   * What one example is. `textPairs: true`: a sentence pair (NLI premise/hypothesis, paraphrase candidates),
   * laid out by the tokenizer's pair template with its token type ids, so callers must send both texts
   * (`/classify`'s `text_pair` / `text_pairs`); false: one text. `fields` are the data fields training read
   * them from. Absent in manifests of built-in tasks and of variants from before pair tasks, which all take one
   * text: read it with `manifestTakesPairs`.
   */
  input: z
    .object({
      textPairs: z.boolean(),
      fields: z.object({ text: z.string().min(1), textPair: z.string().min(1).optional() }).optional(),
    })
    .optional(),
  /**
   * Numeric precision of the weights: the variant family's second axis beside sparsity. "int8": linear-layer
   * weights int8 per output channel, activations quantized at run time (trainer-node/export/quantize.ts).
   * Absent in manifests written before int8 variants existed, which were all fp32: read it with
   * `manifestPrecision` (optional rather than defaulted, so manifests stored as JSON, e.g. in D1, type-check
   * as what they are).
   */
  precision: z.enum(["fp32", "int8"]).optional(),
  /**
   * Export-time graph optimisation. "edge": onnxruntime's session-creation fusions (GELU, FusedMatMul, the
   * quantized matmuls, ...) were applied once at export and the result checked in onnxruntime-web's wasm build
   * against the unfused graph (trainer-node/export/optimize.ts), so the gateway need not optimise it again.
   * Absent in manifests written before the option existed, which were all "none": read it with
   * `manifestGraphOptimization`.
   */
  graphOptimization: z.enum(["edge", "none"]).optional(),
  sparsity: z.object({
    /** What the user asked for. */
    target: fraction,
    /** What export physically removed: fraction of gated-layer weights gone. Never an expected value. */
    removed: fraction,
    params: z.number().int().nonnegative(),
    baseParams: z.number().int().positive(),
    flopsPerToken: z.number().nonnegative(),
    baseFlopsPerToken: z.number().positive(),
  }),
  metrics: z.object({
    accuracy: fraction,
    others: z.record(z.string(), z.number()).default({}),
    evalSet: z.object({ name: z.string().min(1), sha256: sha256Hex, size: z.number().int().positive() }),
    /**
     * Per-example evidence on that split (core/evidence.ts bitsets, `evalSet.size` bits): which examples the
     * variant got right, and on which it predicts what the unpruned model with the same head predicts.
     */
    evidence: z
      .object({ correct: z.string().base64(), agreesWithDense: z.string().base64().optional() })
      .optional(),
  }),
  /**
   * Latency at batch × seqLen: the top-level figures in onnxruntime-node (trainer-node/export/latency.ts), `edge`
   * in the runtime that serves the variant, onnxruntime-web's wasm build on one thread, timed in a child process
   * (trainer-node/export/edge-latency.ts). The two rank variants differently (native int8 kernels and contrib ops
   * are another code path), so the router compares edge figures when every variant has one
   * (gateway/routing.ts). `edge` is absent in manifests written before it was measured: `sluice measure` adds it.
   */
  latency: LatencyFigures.extend({ edge: LatencyFigures.optional() }),
  training: z.object({
    method: z.string().min(1),
    gateMethod: z.string().optional(),
    hyperparameters: z.record(z.string(), z.unknown()).default({}),
    seed: z.number().int(),
    steps: z.number().int().nonnegative(),
    trainableParams: z.number().int().nonnegative(),
    createdAt: z.string().datetime(),
  }),
});
export type Manifest = z.infer<typeof ManifestV1>;
export type Precision = NonNullable<Manifest["precision"]>;

/** A manifest's precision; absent means fp32 (every variant before int8 existed). */
export const manifestPrecision = (m: Pick<Manifest, "precision">): Precision => m.precision ?? "fp32";

/** Whether a variant classifies sentence pairs; absent `input` means one text per example. */
export const manifestTakesPairs = (m: Pick<Manifest, "input">): boolean => m.input?.textPairs === true;

export type GraphOptimization = NonNullable<Manifest["graphOptimization"]>;

/** A manifest's export-time graph optimisation; absent means none (every variant before it existed). */
export const manifestGraphOptimization = (m: Pick<Manifest, "graphOptimization">): GraphOptimization =>
  m.graphOptimization ?? "none";

export class ManifestError extends Error {
  constructor(
    message: string,
    /** Dotted path of the offending field, e.g. `sparsity.removed`. */
    readonly field?: string,
  ) {
    super(message);
    this.name = "ManifestError";
  }
}

/** Validates a parsed `manifest.json`; unknown schema versions are rejected by name. */
export function parseManifest(json: unknown): Manifest {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ManifestError("manifest must be a JSON object", "manifest");
  }
  const version = (json as { schemaVersion?: unknown }).schemaVersion;
  if (version !== MANIFEST_SCHEMA_VERSION) {
    throw new ManifestError(
      `unsupported manifest schemaVersion ${JSON.stringify(version)}; this Sluice reads version ${MANIFEST_SCHEMA_VERSION}`,
      "schemaVersion",
    );
  }
  const result = ManifestV1.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue.path.join(".");
    throw new ManifestError(`manifest.${field}: ${issue.message}`, field);
  }
  return result.data;
}
