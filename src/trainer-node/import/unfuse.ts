/**
 * Rewrites the onnxruntime transformer optimizer's fused ops (com.microsoft domain) into the standard ops they
 * stand for, so gate insertion, autodiff and export see ordinary linears, attention and FFNs. The rewrite is
 * exact: each op is replaced by the computation its contrib-op spec defines (onnxruntime docs/ContribOperators.md).
 *
 * - `Attention` (packed QKV weight [hidden, 3·hidden]): three MatMul+Add linears (the packed weight's three
 *   column groups), head split, scaled QKᵀ, additive mask from `mask_index`, Softmax, ·V, head merge.
 * - `SkipLayerNormalization`: Add(input, bias) (so the preceding MatMul is a linear with a bias), Add skip,
 *   LayerNormalization.
 * - `EmbedLayerNormalization`: word/position/segment Gathers, sum, LayerNormalization, and mask_index as the
 *   number of ones per row of the mask.
 * - `BiasGelu`, `Gelu`, `FastGelu`, `QuickGelu`, `BiasAdd`, `LayerNormalization` (contrib): their formulas.
 *
 * Hand-written because no JS library rewrites ONNX graphs; the decompositions emit opset-17 forms (axes as
 * inputs), which `upgradeOpset` leaves alone.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { tensor } from "../../core/onnx/tensor";
import { ImportError } from "./errors";

const MS = "com.microsoft";

/** Contrib ops this module rewrites. */
export const UNFUSED_OPS = [
  "Attention",
  "SkipLayerNormalization",
  "EmbedLayerNormalization",
  "BiasGelu",
  "Gelu",
  "FastGelu",
  "QuickGelu",
  "BiasAdd",
  "LayerNormalization",
  "SimplifiedLayerNormalization",
] as const;

export interface UnfuseReport {
  /** op -> how many were rewritten. */
  rewritten: Record<string, number>;
}

const SQRT1_2 = Math.SQRT1_2;

/** Emits nodes into `out` with names under the fused node's name, so the rewrite keeps the exporter's scopes. */
class Emitter {
  private k = 0;
  constructor(
    private g: Graph,
    private base: string,
    readonly out: Node[],
  ) {}
  op(
    op: string,
    inputs: string[],
    attrs: Record<string, Node["attrs"][string]> = {},
    output?: string,
  ): string {
    const name = `${this.base}/${op}_${this.k++}`;
    const o = output ?? `${name}_output_0`;
    this.out.push({ name, op, domain: "", inputs, outputs: [o], attrs });
    return o;
  }
  /** A 0-d int64 constant (Range bounds, Gather indices that drop the axis). */
  int(value: number): string {
    return this.g.addInitializer(`${this.base}/int_${this.k++}`, tensor("int64", [], [value]));
  }
  /** [1, S] positions 0..S-1 for a [B, S, ...] value. */
  positions(of: string): string {
    const seq = this.op("Gather", [this.op("Shape", [of]), this.int(1)], { axis: int(0) });
    return this.op("Unsqueeze", [this.op("Range", [this.int(0), seq, this.int(1)]), this.ints([0])]);
  }
  ints(values: number[]): string {
    return this.g.addInitializer(`${this.base}/ints_${this.k++}`, tensor("int64", [values.length], values));
  }
  scalar(v: number): string {
    return this.g.addInitializer(`${this.base}/scalar_${this.k++}`, tensor("float32", [], [v]));
  }
  /** A slice of a float initializer along its last axis: columns [from, to). */
  columns(weight: string, from: number, to: number, label: string): string {
    const w = this.g.initializers.get(weight);
    if (w?.dtype !== "float32")
      throw new ImportError(`${this.base}: packed weight ${weight} must be a float32 constant`);
    const cols = w.dims.at(-1)!;
    const rows = w.data.length / cols;
    const data = new Float32Array(rows * (to - from));
    const src = w.data as Float32Array;
    for (let r = 0; r < rows; r++) data.set(src.subarray(r * cols + from, r * cols + to), r * (to - from));
    return this.g.addInitializer(
      `${this.base}/${label}`,
      tensor("float32", w.dims.length === 1 ? [to - from] : [rows, to - from], data),
    );
  }
}

const int = (value: number) => ({ type: "int" as const, value });
const float = (value: number) => ({ type: "float" as const, value });
const ints = (value: number[]) => ({ type: "ints" as const, value });
const attr = (n: Node, name: string) => n.attrs[name]?.value;

function gelu(e: Emitter, x: string, output: string): void {
  // 0.5·x·(1 + erf(x/√2)), the erf chain torch exports for nn.GELU.
  const erf = e.op("Erf", [e.op("Mul", [x, e.scalar(SQRT1_2)])]);
  e.op("Mul", [e.op("Mul", [x, e.op("Add", [erf, e.scalar(1)])]), e.scalar(0.5)], {}, output);
}

function fastGelu(e: Emitter, x: string, output: string): void {
  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the tanh approximation FastGelu computes.
  const cube = e.op("Mul", [e.op("Mul", [x, x]), x]);
  const inner = e.op("Mul", [
    e.op("Add", [x, e.op("Mul", [cube, e.scalar(0.044715)])]),
    e.scalar(Math.sqrt(2 / Math.PI)),
  ]);
  const t = e.op("Tanh", [inner]);
  e.op("Mul", [e.op("Mul", [x, e.op("Add", [t, e.scalar(1)])]), e.scalar(0.5)], {}, output);
}

function layerNorm(
  e: Emitter,
  x: string,
  gamma: string,
  beta: string | undefined,
  eps: number,
  output: string,
) {
  e.op(
    "LayerNormalization",
    beta ? [x, gamma, beta] : [x, gamma],
    { axis: int(-1), epsilon: float(eps) },
    output,
  );
}

/** [B, S] additive mask bias [B, 1, 1, S] for an Attention node's mask_index, or undefined without one. */
function attentionMask(g: Graph, e: Emitter, n: Node, input: string, filter: number): string | undefined {
  const mask = n.inputs[3];
  if (!mask) return undefined;
  const rank = maskRank(g, mask);
  if (rank === 1) {
    // mask_index [B]: keys at positions ≥ mask_index[b] are padding (right padding).
    const lengths = e.op("Unsqueeze", [e.op("Cast", [mask], { to: int(7) }), e.ints([1])]);
    const valid = e.op("Less", [e.positions(input), lengths]);
    const bias = e.op("Where", [valid, e.scalar(0), e.scalar(filter)]);
    return e.op("Unsqueeze", [bias, e.ints([1, 2])]);
  }
  if (rank === 2) {
    // Raw mask [B, S] of 1 (attend) / 0 (padding).
    const keep = e.op("Cast", [mask], { to: int(1) });
    const bias = e.op("Mul", [e.op("Sub", [e.scalar(1), keep]), e.scalar(filter)]);
    return e.op("Unsqueeze", [bias, e.ints([1, 2])]);
  }
  throw new ImportError(
    `${n.name}: com.microsoft.Attention with a mask_index of rank ${rank ?? "unknown"} is not supported (expected [batch] lengths or a [batch, seq] mask)`,
  );
}

/** Rank of a mask value: from the EmbedLayerNormalization/ReduceSum that makes it, or the graph input's shape. */
function maskRank(g: Graph, value: string): number | undefined {
  const input = g.inputs.find((i) => i.name === value);
  if (input?.shape) return input.shape.length;
  const p = g.nodes.find((n) => n.outputs.includes(value));
  if (p?.op === "EmbedLayerNormalization" && p.outputs[1] === value) return 1;
  if (p && ["Cast", "Identity"].includes(p.op)) return maskRank(g, p.inputs[0]);
  if (p?.op === "ReduceSum" && (p.attrs.keepdims?.value ?? 1) === 0) return 1;
  return g.valueInfo.get(value)?.shape?.length;
}

function rewriteAttention(g: Graph, n: Node, out: Node[]): void {
  if (attr(n, "unidirectional") === 1)
    throw new ImportError(
      `${n.name}: com.microsoft.Attention with unidirectional=1 is causal self-attention: this is a decoder, and Sluice prunes encoders`,
    );
  if (n.inputs.slice(4).some(Boolean) || n.outputs.slice(1).some(Boolean))
    throw new ImportError(
      `${n.name}: com.microsoft.Attention with past state or attention bias inputs is not supported; export the model without the onnxruntime optimizer (plain torch.onnx.export)`,
    );
  const heads = attr(n, "num_heads") as number;
  const [input, weight, bias] = n.inputs;
  const w = g.initializers.get(weight);
  if (w?.dims.length !== 2)
    throw new ImportError(`${n.name}: Attention weight ${weight} must be a 2-D constant [hidden, 3·hidden]`);
  const sizes = (attr(n, "qkv_hidden_sizes") as number[] | undefined) ?? [1, 1, 1].map(() => w.dims[1] / 3);
  if (sizes[0] !== sizes[1] || sizes.reduce((a, b) => a + b, 0) !== w.dims[1])
    throw new ImportError(`${n.name}: qkv_hidden_sizes ${sizes} do not fit the packed weight [${w.dims}]`);
  const headDim = sizes[0] / heads;
  const vHeadDim = sizes[2] / heads;
  const e = new Emitter(g, n.name, out);
  const offsets = [0, sizes[0], sizes[0] + sizes[1], w.dims[1]];
  const proj = ["query", "key", "value"].map((label, i) => {
    const mm = e.op("MatMul", [input, e.columns(weight, offsets[i], offsets[i + 1], `${label}.weight`)]);
    return bias ? e.op("Add", [mm, e.columns(bias, offsets[i], offsets[i + 1], `${label}.bias`)]) : mm;
  });
  const split = (x: string, dh: number, perm: number[]) =>
    e.op("Transpose", [e.op("Reshape", [x, e.ints([0, 0, heads, dh])])], { perm: ints(perm) });
  const q = split(proj[0], headDim, [0, 2, 1, 3]);
  const k = split(proj[1], headDim, [0, 2, 3, 1]);
  const v = split(proj[2], vHeadDim, [0, 2, 1, 3]);
  const scale = (attr(n, "scale") as number | undefined) || 1 / Math.sqrt(headDim);
  let scores = e.op("Mul", [e.op("MatMul", [q, k]), e.scalar(scale)]);
  const mask = attentionMask(g, e, n, input, (attr(n, "mask_filter_value") as number | undefined) ?? -10000);
  if (mask) scores = e.op("Add", [scores, mask]);
  const probs = e.op("Softmax", [scores], { axis: int(-1) });
  const context = e.op("Transpose", [e.op("MatMul", [probs, v])], { perm: ints([0, 2, 1, 3]) });
  e.op("Reshape", [context, e.ints([0, 0, sizes[2]])], {}, n.outputs[0]);
}

function rewriteSkipLayerNorm(g: Graph, n: Node, out: Node[]): void {
  const [input, skip, gamma, beta, bias] = n.inputs;
  if (n.outputs[1] || n.outputs[2])
    throw new ImportError(`${n.name}: SkipLayerNormalization's mean/inv_std_var outputs are not supported`);
  const e = new Emitter(g, n.name, out);
  // Bias first, on the input side: MatMul → Add(bias) is then an ordinary linear layer.
  const biased = bias ? e.op("Add", [input, bias]) : input;
  const sum = e.op("Add", [biased, skip], {}, n.outputs[3] || undefined);
  layerNorm(
    e,
    sum,
    gamma,
    beta || undefined,
    (attr(n, "epsilon") as number | undefined) ?? 1e-12,
    n.outputs[0],
  );
}

function rewriteEmbedLayerNorm(g: Graph, n: Node, out: Node[]): void {
  const [ids, segments, word, position, segment, gamma, beta, mask, positionIds] = n.inputs;
  const e = new Emitter(g, n.name, out);
  let sum = e.op("Gather", [word, ids], { axis: int(0) });
  const pos = positionIds || e.positions(ids);
  sum = e.op("Add", [sum, e.op("Gather", [position, pos], { axis: int(0) })]);
  if (segments && segment) sum = e.op("Add", [sum, e.op("Gather", [segment, segments], { axis: int(0) })]);
  if (n.outputs[2]) e.op("Identity", [sum], {}, n.outputs[2]);
  layerNorm(e, sum, gamma, beta, (attr(n, "epsilon") as number | undefined) ?? 1e-12, n.outputs[0]);
  if (n.outputs[1] && mask) {
    const ones = e.op("Cast", [mask], { to: int(6) });
    e.op("ReduceSum", [ones, e.ints([1])], { keepdims: int(0) }, n.outputs[1]);
  } else if (n.outputs[1]) {
    // No mask: ORT's kernel writes zeros (newer optimizers emit this "dummy" mask_index and feed Attention the
    // 2-D mask instead); an Attention reading zeros masks every key alike, which softmax ignores.
    const batch = e.op("Slice", [e.op("Shape", [ids]), e.ints([0]), e.ints([1])]);
    e.op(
      "ConstantOfShape",
      [batch],
      { value: { type: "tensor", value: tensor("int32", [1], [0]) } },
      n.outputs[1],
    );
  }
}

function rewriteElementwise(g: Graph, n: Node, out: Node[]): void {
  const e = new Emitter(g, n.name, out);
  const [x, b] = n.inputs;
  const biased = (output?: string) => (b ? e.op("Add", [x, b], {}, output) : x);
  switch (n.op) {
    case "BiasGelu":
    case "Gelu":
      gelu(e, biased(), n.outputs[0]);
      return;
    case "FastGelu":
      fastGelu(e, biased(), n.outputs[0]);
      return;
    case "QuickGelu": {
      const alpha = (attr(n, "alpha") as number | undefined) ?? 1.702;
      e.op("Mul", [x, e.op("Sigmoid", [e.op("Mul", [x, e.scalar(alpha)])])], {}, n.outputs[0]);
      return;
    }
    case "BiasAdd":
      e.op("Add", [e.op("Add", [x, b]), n.inputs[2]], {}, n.outputs[0]);
      return;
    case "LayerNormalization":
      layerNorm(e, x, b, n.inputs[2], (attr(n, "epsilon") as number | undefined) ?? 1e-5, n.outputs[0]);
      return;
  }
  throw new ImportError(`${n.name}: unsupported fused op ${n.domain}.${n.op}`);
}

/**
 * Rewrites every fused op in place; throws an ImportError naming the node for contrib ops it does not know
 * (with how to get an unfused export).
 */
export function unfuseContribOps(g: Graph): UnfuseReport {
  const rewritten: Record<string, number> = {};
  if (!g.nodes.some((n) => n.domain === MS)) return { rewritten };
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (n.domain !== MS) {
      nodes.push(n);
      continue;
    }
    if (n.op === "Attention") rewriteAttention(g, n, nodes);
    else if (n.op === "SkipLayerNormalization" || n.op === "SkipSimplifiedLayerNormalization") {
      if (n.op !== "SkipLayerNormalization")
        throw new ImportError(`${n.name}: ${n.op} (RMS norm) is not an encoder op Sluice supports`);
      rewriteSkipLayerNorm(g, n, nodes);
    } else if (n.op === "EmbedLayerNormalization") rewriteEmbedLayerNorm(g, n, nodes);
    else if (["BiasGelu", "Gelu", "FastGelu", "QuickGelu", "BiasAdd", "LayerNormalization"].includes(n.op))
      rewriteElementwise(g, n, nodes);
    else
      throw new ImportError(
        `${n.name}: fused op ${MS}.${n.op} is not supported (supported: ${UNFUSED_OPS.join(", ")}); ` +
          "export the model without onnxruntime's transformer optimizer (plain torch.onnx.export or optimum) and try again",
      );
    rewritten[n.op] = (rewritten[n.op] ?? 0) + 1;
  }
  g.nodes = nodes;
  g.extraOpsets = g.extraOpsets.filter((o) => o.domain !== MS || g.nodes.some((n) => n.domain === MS));
  g.toposort();
  return { rewritten };
}
