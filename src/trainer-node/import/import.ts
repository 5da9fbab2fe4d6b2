/**
 * `importEncoder`: a user's ONNX encoder, as torch.onnx/optimum, tf2onnx or onnxruntime's transformer optimizer
 * wrote it, turned into the one canonical form the trainer and export work on:
 *
 * - fused com.microsoft ops rewritten into standard ops (unfuse.ts);
 * - Constant nodes and weight Transposes folded into initializers, opset raised to 17 (18-20 kept), shape arithmetic folded;
 *   attention scales computed from shapes (torch ≥ 2.1 SDPA) frozen at the trained head size (scale.ts);
 * - inputs found by role (the ids the word-embedding Gather reads, the token-type Gather's ids, the mask) and
 *   renamed `input_ids`, `attention_mask`, `token_type_ids`, always int64 (a Cast inside feeds an int32
 *   model); a `position_ids` input becomes the arange the model expects;
 * - outputs: `last_hidden_state` (the encoder output, found structurally) and `logits` when the model has a
 *   sequence-classification head. QA, token-classification and pooler heads are reported and cut off: a new
 *   classification head is trained on the encoder output instead.
 *
 * The import is deterministic: train and export both re-import the user's file and get the same graph (node
 * names are the exporter's), so a checkpoint names layers of the canonical graph of that file.
 */
import {
  CanonicalError,
  castLikeToCast,
  decomposeAttention,
  removeInferenceDropouts,
  removeMulByOne,
  swapLastAxesToTranspose,
} from "../../core/onnx/canonical";
import { decodeModelProto, graphFromModelProto, inlineFunctions } from "../../core/onnx/codec";
import { constantNodesToInitializers, foldConstants, foldWeightTransforms } from "../../core/onnx/fold";
import { attrOf, type Graph, type ValueInfo } from "../../core/onnx/graph";
import {
  meaningChangedBetween,
  NEWEST_CHECKED_OPSET,
  READ_AS_OPSET,
  upgradeOpset,
} from "../../core/onnx/opset";
import { inferShapes } from "../../core/onnx/shape-inference";
import { makeBatchDynamic } from "./batch-axis";
import { rewriteEinsums } from "./einsum";
import { ImportError } from "./errors";
import { dropFloatCasts, type Float16Report, upcastFloat16 } from "./fp16";
import { findEmbeddings, type Recognition, recognizeEncoder, sourceInput } from "./recognize";
import { freezeAttentionScales } from "./scale";
import { checkSharedWeights, type SharedWeight, unifySharedWeights } from "./shared-weights";
import { collapseTensordotMatMuls } from "./tensordot";
import { unfuseContribOps } from "./unfuse";

export interface ImportOptions {
  /** Graph output (or value) holding the classification logits, when the model has several candidates. */
  logitsOutput?: string;
  /** Value holding the encoder's hidden states [batch, seq, hidden], overriding structural detection. */
  hiddenOutput?: string;
}

export type HeadKind =
  | "sequence-classification"
  | "question-answering"
  | "token-classification"
  | "pooler"
  | "none";

export interface InputRole {
  /** Canonical name. */
  name: "input_ids" | "attention_mask" | "token_type_ids";
  /** Name and element type in the user's file. */
  original: string;
  originalDtype: string;
}

export interface ImportReport {
  opset: { original: number; canonical: number };
  producer?: string;
  unfused: Record<string, number>;
  folded: { constants: number; weightTransforms: number };
  /** Set when the file was fp16 (fp16.ts): what the upcast to fp32 changed. Absent for fp32 files. */
  precision?: Float16Report & { droppedCasts: number };
  inputs: InputRole[];
  /** Inputs that were replaced by what the model computes from the others (position_ids as an arange). */
  derivedInputs: string[];
  /** Fixed sequence length of the inputs, when the export fixed it (e.g. tf2onnx at a given length). */
  fixedSequenceLength?: number;
  /** Batch size the file's inputs fixed; import made the axis dynamic (batch-axis.ts). */
  fixedBatchSize?: number;
  outputs: { original: string[]; logits?: string; hidden: string };
  head: { kind: HeadKind; outputs: string[]; linears: string[]; numLabels?: number };
  vocabSize: number;
  hidden: number;
  layers: number;
  attention: { node: string; heads: number; headDim: number }[];
  ffn: { up: string; down: string; width: number; activation: string[] }[];
  otherEncoderLinears: string[];
  /** Local functions the file declared and the calls inlined (inline.ts); absent when it had none. */
  inlined?: { functions: number; calls: number };
  /**
   * CastLike nodes read as Casts, inference Dropouts removed, and flatten → swap → unflatten chains read as one
   * Transpose of the last two axes (canonical.ts).
   */
  canonical: {
    castLike: number;
    dropout: number;
    swapTransposes: number;
    mulByOne: number;
    /** Opset-23 Attention ops decomposed into standard ops (canonical.ts). */
    attention: number;
  };
  /** Weights read by several linears (ALBERT), each gated with one tied gate. */
  shared: SharedWeight[];
  notes: string[];
}

export interface ImportedModel {
  graph: Graph;
  recognition: Recognition;
  report: ImportReport;
}

const ALIASES: Record<InputRole["name"], string[]> = {
  input_ids: ["input_ids", "input_word_ids", "ids", "input", "input_ids:0"],
  attention_mask: ["attention_mask", "input_mask", "mask", "attention_mask:0", "input_mask:0"],
  token_type_ids: ["token_type_ids", "segment_ids", "input_type_ids", "token_type_ids:0", "segment_ids:0"],
};
const POSITION_ALIASES = ["position_ids", "position_ids:0"];
const INT_DTYPES = new Set(["int64", "int32"]);

const stripSuffix = (name: string) => name.replace(/:0$/, "");
const isSymbolic = (d: number | string | undefined) => typeof d !== "number" || d <= 0;

/** Decodes and imports; `ImportError` for models Sluice cannot gate. */
export function importEncoderBytes(bytes: Uint8Array, opts: ImportOptions = {}): ImportedModel {
  let graph: Graph;
  let fp16: Float16Report | undefined;
  let inlined: ImportReport["inlined"];
  try {
    const proto = decodeModelProto(bytes);
    // Local functions (torch's dynamo exporter writes every module call and torch_lib op as one) are
    // expanded first: everything after reads plain nodes.
    inlined = inlineFunctions(proto, bytes);
    // fp16 tensors are widened on the message: the Graph and everything after it hold fp32 only.
    fp16 = upcastFloat16(proto);
    graph = graphFromModelProto(proto);
  } catch (err) {
    if (err instanceof ImportError) throw err;
    throw new ImportError(`not a readable ONNX model: ${err instanceof Error ? err.message : String(err)}`);
  }
  const imported = importEncoder(graph, opts, fp16);
  if (inlined.functions > 0) {
    imported.report.inlined = inlined;
    imported.report.notes.unshift(
      `${inlined.functions} local functions inlined (${inlined.calls} calls, nested ones included)`,
    );
  }
  return imported;
}

/**
 * A model past opset 20 is read with the forms of opset 20 (READ_AS_OPSET): refused past the newest opset whose
 * changelog was checked, or where one of its ops changed meaning after 20 (the operator changelog table).
 */
function refuseLaterMeanings(g: Graph): void {
  if (g.opset <= READ_AS_OPSET) return;
  if (g.opset > NEWEST_CHECKED_OPSET)
    throw new ImportError(
      `model opset ${g.opset} is past the opsets whose operator changes Sluice checks (≤ ${NEWEST_CHECKED_OPSET}): re-export with opset_version=${NEWEST_CHECKED_OPSET} or lower`,
    );
  for (const n of g.nodes) {
    if (n.domain && n.domain !== "ai.onnx") continue;
    const at = meaningChangedBetween(n.op, READ_AS_OPSET, g.opset);
    if (at !== undefined)
      throw new ImportError(
        `${n.name}: ${n.op} changed meaning at opset ${at} (the model is at ${g.opset}), and Sluice reads it as of opset ${READ_AS_OPSET}; re-export with opset_version=${at - 1}`,
      );
  }
}

/** Detects what is not an encoder before anything is rewritten, naming what it is instead. */
function refuseNonEncoders(g: Graph): void {
  const causal = g.nodes.find(
    (n) =>
      n.op === "Attention" && (!n.domain || n.domain === "ai.onnx") && attrOf<number>(n, "is_causal") === 1,
  );
  if (causal)
    throw new ImportError(
      `${causal.name}: Attention with is_causal=1 is causal self-attention: this is a decoder (GPT-style), and Sluice prunes encoders (BERT, DistilBERT, RoBERTa, ELECTRA families)`,
    );
  const conv = g.nodes.find((n) => n.op === "Conv" || n.op === "ConvTranspose");
  const trilu = g.nodes.find((n) => n.op === "Trilu");
  if (trilu)
    throw new ImportError(
      `${trilu.name}: Trilu builds a causal (lower-triangular) attention mask: this is a decoder (GPT-style), and Sluice prunes encoders (BERT, DistilBERT, RoBERTa, ELECTRA families)`,
    );
  for (const [name, t] of g.initializers) {
    const [r, c] = t.dims.slice(-2);
    if (t.dims.length < 2 || r !== c || r < 2 || t.dims.slice(0, -2).some((d) => d !== 1)) continue;
    if (!["bool", "uint8", "float32", "int64", "int32"].includes(t.dtype)) continue;
    const v = t.data as ArrayLike<number | bigint>;
    let causal = true;
    for (let i = 0; i < r && causal; i++)
      for (let j = 0; j < r; j++) {
        const x = Number(v[i * r + j]);
        if (j <= i ? x !== 1 : x !== 0) {
          causal = false;
          break;
        }
      }
    if (causal)
      throw new ImportError(
        `initializer ${name} [${t.dims}] is a causal (lower-triangular) attention mask: this is a decoder (GPT-style), and Sluice prunes encoders (BERT, DistilBERT, RoBERTa, ELECTRA families)`,
      );
  }
  const intInputs = g.inputs.filter((i) => INT_DTYPES.has(i.dtype));
  if (conv && intInputs.length === 0)
    throw new ImportError(
      `${conv.name}: a convolutional network (${conv.op} on float input ${g.inputs[0]?.name ?? "?"}), not a transformer text encoder; Sluice prunes encoders that take token ids`,
    );
  if (intInputs.length === 0)
    throw new ImportError(
      `not a text encoder: no integer input for token ids (inputs: ${g.inputs.map((i) => `${i.name} ${i.dtype}`).join(", ") || "none"})`,
    );
}

/** Gives graph input `from` the canonical name `to` and type int64 (with a Cast for models that want int32). */
function canonicalizeInput(g: Graph, input: ValueInfo, to: string): void {
  const from = input.name;
  if (from !== to) {
    if (g.initializers.has(to) || g.nodes.some((n) => n.outputs.includes(to)))
      throw new ImportError(`cannot rename input ${from} to ${to}: the graph already has a value ${to}`);
    g.replaceUses(from, to);
    input.name = to;
  }
  if (input.dtype !== "int64") {
    const cast = `/sluice_import/${to}_${input.dtype}`;
    const to_ = { int32: 6, float32: 1, bool: 9 }[input.dtype as string];
    if (to_ === undefined)
      throw new ImportError(`input ${from}: type ${input.dtype} is not supported for ${to}`);
    g.replaceUses(to, cast);
    g.nodes.unshift({
      name: `/sluice_import/Cast_${to}`,
      op: "Cast",
      domain: "",
      inputs: [to],
      outputs: [cast],
      attrs: { to: { type: "int", value: to_ } },
    });
    input.dtype = "int64";
  }
}

/** Replaces a `position_ids` input by arange(seq) [1, seq] computed from input_ids' shape. */
function derivePositionIds(g: Graph, input: ValueInfo): void {
  const name = input.name;
  const shape = g.op("Shape", ["input_ids"], {}, { name: "/sluice_import/positions/Shape" });
  const seq = g.op(
    "Gather",
    [
      shape,
      g.constant({ dtype: "int64", dims: [], data: new BigInt64Array([1n]) }, "/sluice_import/positions/one"),
    ],
    { axis: 0 },
    { name: "/sluice_import/positions/Gather" },
  );
  const zero = g.constant(
    { dtype: "int64", dims: [], data: new BigInt64Array([0n]) },
    "/sluice_import/positions/zero",
  );
  const step = g.constant(
    { dtype: "int64", dims: [], data: new BigInt64Array([1n]) },
    "/sluice_import/positions/step",
  );
  const range = g.op("Range", [zero, seq, step], {}, { name: "/sluice_import/positions/Range" });
  const cast =
    input.dtype === "int64"
      ? range
      : g.op(
          "Cast",
          [range],
          { to: input.dtype === "int32" ? 6 : 7 },
          { name: "/sluice_import/positions/Cast" },
        );
  const positions = g.op(
    "Unsqueeze",
    [cast, g.constInts([0], "/sluice_import/positions/axes")],
    {},
    { name: "/sluice_import/positions/Unsqueeze" },
  );
  g.replaceUses(name, positions);
  g.inputs = g.inputs.filter((i) => i !== input);
  g.toposort();
}

/** Assigns roles to the graph inputs by what they feed, with common names as tie-breakers. */
function assignInputs(g: Graph, report: ImportReport): void {
  const embeddings = findEmbeddings(g);
  const word = embeddings.find((e) => e.input);
  if (!word)
    throw new ImportError(
      `no token-embedding lookup found: expected a Gather from a [vocab, hidden] table indexed by an integer input (inputs: ${g.inputs.map((i) => i.name).join(", ")})`,
    );
  const roles = new Map<string, InputRole["name"] | "position_ids">();
  roles.set(word.input!, "input_ids");
  for (const e of embeddings) {
    if (!e.input || roles.has(e.input)) continue;
    const name = stripSuffix(e.input);
    if (POSITION_ALIASES.includes(e.input) || /position/i.test(name)) roles.set(e.input, "position_ids");
    else if (e.rows <= 16 || ALIASES.token_type_ids.includes(e.input)) roles.set(e.input, "token_type_ids");
    else roles.set(e.input, "position_ids");
  }
  for (const input of g.inputs) {
    if (roles.has(input.name)) continue;
    if (ALIASES.attention_mask.includes(input.name) || /mask/i.test(input.name))
      roles.set(input.name, "attention_mask");
    else if (ALIASES.token_type_ids.includes(input.name)) roles.set(input.name, "token_type_ids");
    else if (POSITION_ALIASES.includes(input.name)) roles.set(input.name, "position_ids");
  }
  const leftover = g.inputs.filter((i) => !roles.has(i.name));
  if (
    leftover.length === 1 &&
    ![...roles.values()].includes("attention_mask") &&
    INT_DTYPES.has(leftover[0].dtype)
  )
    roles.set(leftover[0].name, "attention_mask");
  const unknown = g.inputs.filter((i) => !roles.has(i.name));
  if (unknown.length > 0)
    throw new ImportError(
      `input ${unknown.map((i) => `${i.name} (${i.dtype})`).join(", ")}: not input ids, attention mask, token type ids or position ids; Sluice feeds only those`,
    );
  for (const input of [...g.inputs]) {
    const role = roles.get(input.name)!;
    const dims = input.shape ?? [];
    if (dims.length !== 2)
      throw new ImportError(`input ${input.name}: expected [batch, sequence], got [${dims.join(", ")}]`);
    if (!isSymbolic(dims[0])) {
      // Made dynamic after the inputs are renamed (batch-axis.ts); the inputs must agree on it.
      if (report.fixedBatchSize !== undefined && report.fixedBatchSize !== dims[0])
        throw new ImportError(
          `inputs fix different batch sizes (${report.fixedBatchSize} and ${dims[0]} on ${input.name})`,
        );
      report.fixedBatchSize = dims[0] as number;
    }
    if (!isSymbolic(dims[1])) {
      if (report.fixedSequenceLength !== undefined && report.fixedSequenceLength !== dims[1])
        throw new ImportError(
          `inputs fix different sequence lengths (${report.fixedSequenceLength} and ${dims[1]} on ${input.name})`,
        );
      report.fixedSequenceLength = dims[1] as number;
    }
    if (role === "position_ids") {
      report.derivedInputs.push(input.name);
      derivePositionIds(g, input);
      continue;
    }
    report.inputs.push({ name: role, original: input.name, originalDtype: input.dtype });
    if (!INT_DTYPES.has(input.dtype) && role !== "attention_mask")
      throw new ImportError(`input ${input.name}: ${role} must be integer, got ${input.dtype}`);
    canonicalizeInput(g, input, role);
    input.shape = ["batch", report.fixedSequenceLength ?? "sequence"];
  }
  // Declared [batch, seq] shapes again, now that every input is named and sized.
  for (const input of g.inputs) input.shape = ["batch", report.fixedSequenceLength ?? "sequence"];
  g.toposort();
}

/** Classifies the graph outputs after the encoder output and picks the logits. */
function chooseOutputs(g: Graph, rec: Recognition, opts: ImportOptions, report: ImportReport): void {
  const info = inferShapes(g);
  const producers = g.producers();
  const headOutputs = g.outputs.filter((o) => o.name !== rec.encoderOutput);
  const headLinearOutputs = new Set(rec.headLinears.map((l) => l.output));
  const throughIdentity = (v: string) => {
    let x = v;
    while (producers.get(x)?.op === "Identity") x = producers.get(x)!.inputs[0];
    return x;
  };
  const rankOf = (o: ValueInfo) => info.get(o.name)?.shape?.length ?? o.shape?.length;
  const widthOf = (o: ValueInfo) => {
    const d = info.get(o.name)?.shape?.at(-1) ?? o.shape?.at(-1);
    return typeof d === "number" && d > 0 ? d : undefined;
  };
  let logits: ValueInfo | undefined;
  if (opts.logitsOutput) {
    logits = g.outputs.find((o) => o.name === opts.logitsOutput);
    if (!logits)
      throw new ImportError(
        `--logits-output: the model has no output ${opts.logitsOutput} (outputs: ${g.outputs.map((o) => o.name).join(", ")})`,
      );
    if (rankOf(logits) !== 2 || !widthOf(logits))
      throw new ImportError(
        `--logits-output: ${logits.name} must be [batch, labels] with a fixed label count`,
      );
    report.head.kind = "sequence-classification";
  } else {
    const classification = headOutputs.filter(
      (o) => rankOf(o) === 2 && widthOf(o) && headLinearOutputs.has(throughIdentity(o.name)),
    );
    const token = headOutputs.filter(
      (o) => rankOf(o) === 3 && headLinearOutputs.has(throughIdentity(o.name)),
    );
    if (classification.length > 1) {
      const named = classification.find((o) => o.name === "logits");
      if (!named)
        throw new ImportError(
          `several outputs look like classification logits (${classification.map((o) => o.name).join(", ")}): name one with --logits-output`,
        );
      logits = named;
    } else logits = classification[0];
    if (logits) report.head.kind = "sequence-classification";
    else if (token.length > 0) report.head.kind = "token-classification";
    else if (
      headOutputs.some((o) => /start_logits|end_logits/.test(o.name)) ||
      (rec.headLinears.some((l) => l.outFeatures === 2) &&
        headOutputs.length === 2 &&
        headOutputs.every((o) => rankOf(o) === 2))
    )
      report.head.kind = "question-answering";
    else if (rec.headLinears.length > 0) report.head.kind = "pooler";
  }
  report.head.outputs = headOutputs.map((o) => o.name);
  report.head.linears = rec.headLinears.map((l) => l.node);
  if (logits) report.head.numLabels = widthOf(logits);

  const outputs: ValueInfo[] = [];
  if (logits) {
    if (logits.name !== "logits") {
      if (g.initializers.has("logits") || g.nodes.some((n) => n.outputs.includes("logits")))
        throw new ImportError("the model has a value named logits that is not its classification output");
      g.op("Identity", [logits.name], {}, { name: "/sluice_import/logits", output: "logits" });
    }
    outputs.push({ name: "logits", dtype: "float32", shape: ["batch", widthOf(logits)!] });
    report.outputs.logits = logits.name;
  }
  const hidden = rec.encoderOutput;
  if (hidden !== "last_hidden_state") {
    if (
      g.nodes.some((n) => n.outputs.includes("last_hidden_state")) ||
      g.initializers.has("last_hidden_state")
    ) {
      // The name is taken by another value (e.g. a pre-LN model's last block output): rename that one.
      const other = g.uniqueName("last_hidden_state_original");
      for (const n of g.nodes) n.outputs = n.outputs.map((o) => (o === "last_hidden_state" ? other : o));
      g.replaceUses("last_hidden_state", other);
    }
    g.op("Identity", [hidden], {}, { name: "/sluice_import/last_hidden_state", output: "last_hidden_state" });
  }
  outputs.push({
    name: "last_hidden_state",
    dtype: "float32",
    shape: ["batch", report.fixedSequenceLength ?? "sequence", report.hidden],
  });
  report.outputs.hidden = hidden;
  g.outputs = outputs;
  g.toposort().cleanup();
}

function activationOf(chain: { node: { op: string } }[]): string[] {
  return [...new Set(chain.map((c) => c.node.op))];
}

/**
 * Imports an already-decoded graph (mutated: pass a clone to keep the original). `fp16`: what `upcastFloat16`
 * did to the file before it was decoded, when it was an fp16 model.
 */
export function importEncoder(graph: Graph, opts: ImportOptions = {}, fp16?: Float16Report): ImportedModel {
  const g = graph;
  const report: ImportReport = {
    opset: { original: g.opset, canonical: Math.max(17, g.opset) },
    unfused: {},
    folded: { constants: 0, weightTransforms: 0 },
    canonical: { castLike: 0, dropout: 0, swapTransposes: 0, mulByOne: 0, attention: 0 },
    inputs: [],
    derivedInputs: [],
    outputs: { original: g.outputs.map((o) => o.name), hidden: "" },
    head: { kind: "none", outputs: [], linears: [] },
    vocabSize: 0,
    hidden: 0,
    layers: 0,
    attention: [],
    ffn: [],
    otherEncoderLinears: [],
    shared: [],
    notes: [],
  };
  g.toposort();
  report.folded.constants = constantNodesToInitializers(g);
  refuseNonEncoders(g);
  refuseLaterMeanings(g);
  try {
    report.canonical = {
      castLike: castLikeToCast(g),
      dropout: removeInferenceDropouts(g),
      swapTransposes: 0,
      mulByOne: 0,
      attention: 0,
    };
  } catch (err) {
    if (err instanceof CanonicalError) throw new ImportError(err.message);
    throw err;
  }
  report.unfused = unfuseContribOps(g).rewritten;
  report.folded.weightTransforms = foldWeightTransforms(g);
  const unknownDomain = g.nodes.find((n) => n.domain && n.domain !== "ai.onnx");
  if (unknownDomain)
    throw new ImportError(
      `${unknownDomain.name}: op ${unknownDomain.domain}.${unknownDomain.op} is not a standard ONNX op Sluice can train through`,
    );
  try {
    upgradeOpset(g, 17);
  } catch (err) {
    throw new ImportError(
      `opset ${report.opset.original} → 17: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  assignInputs(g, report);
  if (report.fixedBatchSize !== undefined) {
    const name = report.inputs[0]?.original ?? "input_ids";
    const { rewritten } = makeBatchDynamic(
      g,
      report.fixedBatchSize,
      `re-export with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={"${name}": {0: "batch"}}))`,
    );
    report.notes.push(
      `fixed batch size ${report.fixedBatchSize} made dynamic (${rewritten.length} shape constants rewritten)`,
    );
  }
  foldConstants(g);
  if (fp16) {
    report.precision = { ...fp16, droppedCasts: dropFloatCasts(g) };
    report.notes.push(
      `fp16 model: weights widened to fp32 exactly, trained and exported in fp32${fp16.fp16Io.length ? `; its fp16 inputs/outputs (${fp16.fp16Io.join(", ")}) are fp32 in the variant, which declares its own io` : ""}`,
    );
  }
  // Declared shapes of intermediate values (the dynamo exporter writes one per value, with its `s0`/`s1`
  // symbols) describe the file as written; import rewrites shapes and inputs, training and export change
  // widths and batch layouts, and onnxruntime's memory planner trusts equal dim_params across values, so a
  // stale declaration fails at run time. Shapes are what inference derives from the graph itself.
  if (g.valueInfo.size > 0) {
    report.notes.push(`${g.valueInfo.size} declared intermediate value shapes (value_info) dropped`);
    g.valueInfo.clear();
  }
  // torch_lib's `a + b` scales b by alpha = 1 (un-optimized dynamo exports), and its SDPA swaps Kᵀ's last axes
  // as Reshape → Transpose → Reshape: the plain Add and one Transpose, as recognition reads them.
  // torch ≥ 2.8 at opset 23 writes SDPA as the Attention op: the MatMul/Softmax chain recognition reads.
  try {
    report.canonical.attention = decomposeAttention(g);
  } catch (err) {
    if (err instanceof CanonicalError) throw new ImportError(err.message);
    throw err;
  }
  if (report.canonical.attention > 0)
    report.notes.push(
      `${report.canonical.attention} Attention ops (opset 23) read as MatMul → scale → mask → Softmax → MatMul`,
    );
  report.canonical.mulByOne = removeMulByOne(g);
  report.canonical.swapTransposes = swapLastAxesToTranspose(g);
  if (report.canonical.swapTransposes > 0)
    report.notes.push(
      `${report.canonical.swapTransposes} Reshape → Transpose → Reshape swaps of the last two axes (torch_lib's Kᵀ) read as Transposes`,
    );
  if (report.canonical.mulByOne > 0)
    report.notes.push(`${report.canonical.mulByOne} Mul by 1 removed (torch_lib's add alpha)`);
  // Keras EinsumDense and MultiHeadAttention's products (tf2onnx): Einsum becomes MatMul/Reshape/Transpose.
  const einsums = rewriteEinsums(g);
  if (einsums.rewritten > 0)
    report.notes.push(`${einsums.rewritten} Einsum nodes (Keras EinsumDense / attention) read as MatMuls`);
  const leftEinsums = einsums.left.map((e) => `${e.node} ("${e.equation}")`).join(", ");
  if (leftEinsums)
    report.notes.push(`Einsum nodes left as they are (equation not rewritten): ${leftEinsums}`);
  // Keras Dense via tf.tensordot (tf2onnx): Reshape → MatMul → Reshape becomes the MatMul it computes.
  const tensordots = collapseTensordotMatMuls(g);
  if (tensordots > 0)
    report.notes.push(
      `${tensordots} Reshape → MatMul → Reshape (Keras Dense via tf.tensordot) read as MatMuls on the 3-D input`,
    );
  // ALBERT-style sharing: every name of one shared tensor becomes one initializer, so its linears are found
  // as the linears reading one weight, and get one tied gate (shared-weights.ts).
  unifySharedWeights(g);
  let rec: Recognition;
  try {
    rec = recognizeEncoder(g);
  } catch (err) {
    // Name the Einsums that stayed: their blocks are what recognition could not read.
    if (err instanceof ImportError && leftEinsums)
      throw new ImportError(`${err.message}; Einsum nodes whose equation is not supported: ${leftEinsums}`);
    throw err;
  }
  // A scale computed from the query's shape (torch ≥ 2.1 SDPA) is frozen at the trained head size, so the
  // gated model and every export scale by the original 1/√d_head whatever export does to the Q/K columns.
  if (freezeAttentionScales(g, rec.attention) > 0) rec = recognizeEncoder(g);
  if (opts.hiddenOutput) {
    if (!g.nodes.some((n) => n.outputs.includes(opts.hiddenOutput!)))
      throw new ImportError(`--hidden-output: the model has no value ${opts.hiddenOutput}`);
    rec.encoderOutput = opts.hiddenOutput;
  }
  const word = rec.embeddings.find(
    (e) => sourceInput(g, g.nodes.find((n) => n.name === e.node)!.inputs[1]) === "input_ids",
  );
  report.vocabSize = word?.rows ?? 0;
  report.hidden = rec.attention[0].o.outFeatures;
  report.layers = rec.attention.length;
  report.attention = rec.attention.map((a) => ({ node: a.o.node, heads: a.heads, headDim: a.headDim }));
  report.ffn = rec.ffn.map((f) => ({
    up: f.up.node,
    down: f.down.node,
    width: f.up.outFeatures,
    activation: activationOf(f.chain),
  }));
  report.otherEncoderLinears = rec.otherEncoderLinears.map((l) => l.node);
  report.shared = checkSharedWeights(g, rec);
  chooseOutputs(g, rec, opts, report);
  if (!report.inputs.some((i) => i.name === "attention_mask"))
    report.notes.push(
      "the model takes no attention mask: padded positions are attended to (train and serve batches pad)",
    );
  // Node and value names are unchanged by the output rewrite, so the recognition still describes the graph.
  return { graph: g, recognition: recognizeEncoder(g), report };
}
