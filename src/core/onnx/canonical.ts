/**
 * Rewrites of ops that only restate simpler ones, so recognition, folding and autodiff meet one form:
 *
 * - `CastLike(x, like)` (opset 15; the torch dynamo exporter's torch_lib writes it for every scalar it
 *   promotes, e.g. `CastLike(1.0, q)` in the SDPA scale) is `Cast(x, to = dtype(like))` once `like`'s element
 *   type is known;
 * - `Dropout` in an inference graph (no `training_mode`, or a constant false one: what exporters leave when a
 *   model is exported without `.eval()`'s dropout removal, e.g. torch_lib's `aten_dropout` at p = 0 or
 *   Keras/tf2onnx) is the identity on its data output; its uses read the input directly;
 * - `Reshape(x, [-1, S, E]) → Transpose[0, 2, 1] → Reshape(x.shape[:-2] ++ [E, S])` on a rank-4 x (torch_lib's
 *   `aten_scaled_dot_product_attention` swaps Kᵀ's last two axes this way, so that the permutation is static
 *   for any rank) is `Transpose(x, [0, 1, 3, 2])`, where shape inference proves both targets from x's dims;
 * - `Mul(x, 1)` by a one-element constant 1 that does not raise x's rank is x (torch_lib's `aten_add` before
 *   torch 2.5 always scales its second operand by `CastLike(alpha, other)`, alpha = 1 for `a + b`, so every
 *   residual Add of an un-optimized dynamo export reads the residual through such a Mul);
 * - the opset-23 `Attention` op (torch ≥ 2.8's dynamo exporter writes it for `scaled_dot_product_attention` at
 *   opset ≥ 23) is the MatMul(Q, Kᵀ) → Mul(scale) → Add(mask) → Softmax → MatMul(·, V) chain its spec defines
 *   (onnx/reference/ops/op_attention.py), with the 3-D head split and merge as Reshape/Transpose, for the
 *   encoder case only: no KV cache, no causal mask, no softcap, no grouped-query heads, no qk output.
 */
import { attrOf, type Graph, type Node } from "./graph";
import { type Dim, inferShapes } from "./shape-inference";
import { ONNX_DTYPE, tensor, toNumbers } from "./tensor";

export class CanonicalError extends Error {
  override name = "CanonicalError";
}

/** Turns every CastLike into a Cast; returns how many. Throws when the target type cannot be worked out. */
export function castLikeToCast(graph: Graph): number {
  const casts = graph.nodes.filter((n) => n.op === "CastLike" && !n.domain);
  if (casts.length === 0) return 0;
  const info = inferShapes(graph.toposort());
  for (const n of casts) {
    const like = n.inputs[1];
    const dtype = graph.initializers.get(like)?.dtype ?? info.get(like)?.dtype;
    if (!dtype)
      throw new CanonicalError(
        `${n.name}: CastLike target ${like} has an element type that cannot be worked out`,
      );
    n.op = "Cast";
    n.inputs = [n.inputs[0]];
    const saturate = n.attrs.saturate;
    n.attrs = { to: { type: "int", value: ONNX_DTYPE[dtype] }, ...(saturate ? { saturate } : {}) };
  }
  return casts.length;
}

/** The Dropout runs as in inference: training_mode (opset ≥ 12, input 2) absent or a constant false. */
function inferenceDropout(graph: Graph, n: Node): boolean {
  const mode = n.inputs[2];
  if (!mode) return true;
  const t = graph.initializers.get(mode);
  return !!t && toNumbers(t).every((v) => v === 0);
}

/** Removes inference Dropouts whose mask nothing reads (a graph output keeps its name); returns how many. */
export function removeInferenceDropouts(graph: Graph): number {
  const consumers = graph.consumers();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  let removed = 0;
  graph.nodes = graph.nodes.filter((n) => {
    if (n.op !== "Dropout" || n.domain || !inferenceDropout(graph, n)) return true;
    const [data, mask] = n.outputs;
    if (mask && (consumers.has(mask) || outputs.has(mask))) return true;
    if (outputs.has(data)) {
      n.op = "Identity";
      n.inputs = [n.inputs[0]];
      n.outputs = [data];
      n.attrs = {};
      return true;
    }
    graph.replaceUses(data, n.inputs[0]);
    removed++;
    return false;
  });
  return removed;
}

const sameDim = (a: Dim | undefined, b: Dim | undefined) =>
  a !== undefined && b !== undefined && a === b && !(typeof a === "string" && a.startsWith("?"));

/**
 * Rewrites each flatten → swap → unflatten of a rank-4 value's last two axes (see the header) into one
 * Transpose, keeping the last Reshape's node and output names; returns how many. Left alone unless shape
 * inference proves the first target is `[-1, d2, d3]` and the second `[d0, d1, d3, d2]` of x's own dims (numbers
 * or the same symbols), so the rewrite computes the same tensor at every shape.
 */
export function swapLastAxesToTranspose(graph: Graph): number {
  const info = inferShapes(graph.toposort());
  const producers = graph.producers();
  const consumers = graph.consumers();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  let rewritten = 0;
  for (const last of graph.nodes) {
    if (last.op !== "Reshape" || last.domain) continue;
    const tr = producers.get(last.inputs[0]);
    if (tr?.op !== "Transpose" || tr.domain) continue;
    const perm = tr.attrs.perm?.value as number[] | undefined;
    if (perm?.join() !== "0,2,1") continue;
    const first = producers.get(tr.inputs[0]);
    if (first?.op !== "Reshape" || first.domain) continue;
    const x = info.get(first.inputs[0])?.shape;
    const t1 = info.get(first.inputs[1])?.value;
    const t2 = info.get(last.inputs[1])?.value;
    if (x?.length !== 4 || !t1 || !t2 || t1.length !== 3 || t2.length !== 4) continue;
    if (t1[0] !== -1 || !sameDim(t1[1], x[2]) || !sameDim(t1[2], x[3])) continue;
    if (![x[0], x[1], x[3], x[2]].every((d, i) => sameDim(t2[i], d))) continue;
    // The intermediate values must feed only this chain (or they would lose their producer).
    const only = (v: string, user: Node) =>
      !outputs.has(v) && (consumers.get(v) ?? []).every((c) => c === user);
    if (!only(first.outputs[0], tr) || !only(tr.outputs[0], last)) continue;
    last.op = "Transpose";
    last.inputs = [first.inputs[0]];
    last.attrs = { perm: { type: "ints", value: [0, 1, 3, 2] } };
    rewritten++;
  }
  if (rewritten > 0) graph.cleanup();
  return rewritten;
}

/** Removes `Mul(x, 1)` / `Mul(1, x)` (see the header) whose output is not a graph output; returns how many. */
export function removeMulByOne(graph: Graph): number {
  const info = inferShapes(graph.toposort());
  const outputs = new Set(graph.outputs.map((o) => o.name));
  let removed = 0;
  graph.nodes = graph.nodes.filter((n) => {
    if (n.op !== "Mul" || n.domain || outputs.has(n.outputs[0])) return true;
    const k = n.inputs.findIndex((i) => {
      const t = graph.initializers.get(i);
      return !!t && t.data.length === 1 && toNumbers(t)[0] === 1;
    });
    if (k < 0) return true;
    const x = n.inputs[1 - k];
    const one = graph.initializers.get(n.inputs[k])!;
    const rank = info.get(x)?.shape?.length;
    const xDtype = graph.initializers.get(x)?.dtype ?? info.get(x)?.dtype;
    // A rank-0 one never broadcasts x up; a rank-r one only when x has rank ≥ r. Same element type only.
    if (one.dims.length > 0 && (rank === undefined || rank < one.dims.length)) return true;
    if (!xDtype || xDtype !== one.dtype) return true;
    graph.replaceUses(n.outputs[0], x);
    removed++;
    return false;
  });
  return removed;
}

const isDefaultDomain = (d: string | undefined) => !d || d === "ai.onnx";

/** Why an opset-23 Attention node is not the plain encoder attention `decomposeAttention` rewrites, or null. */
function unsupportedAttention(n: Node, used: (v: string) => boolean): string | null {
  if ((attrOf<number>(n, "is_causal") ?? 0) !== 0)
    return "is_causal=1 is causal self-attention: this is a decoder (GPT-style), and Sluice prunes encoders";
  if (n.inputs.slice(4, 6).some(Boolean)) return "past_key/past_value (a KV cache) are not supported";
  if (n.inputs.slice(6).some(Boolean)) return "nonpad_kv_seqlen is not supported";
  const [, presentKey, presentValue, qk] = n.outputs;
  if ((presentKey && used(presentKey)) || (presentValue && used(presentValue)))
    return "its present_key/present_value outputs (a KV cache) are read; not supported";
  if (qk && used(qk))
    return `its qk_matmul_output (qk_matmul_output_mode=${attrOf<number>(n, "qk_matmul_output_mode") ?? 0}) is read; not supported`;
  const softcap = attrOf<number>(n, "softcap") ?? 0;
  if (softcap !== 0) return `softcap=${softcap} is not supported`;
  // 0 (undefined) or absent: the inputs' own precision; FLOAT is that precision for the fp32 graphs read here.
  const precision = attrOf<number>(n, "softmax_precision") ?? 0;
  if (precision !== 0 && precision !== ONNX_DTYPE.float32)
    return `softmax_precision=${precision} is not supported (only float32, the precision the graph is read in)`;
  if (attrOf<number>(n, "scale") === 0)
    return "scale=0 is ambiguous (the reference scales by 0, onnxruntime by the default 1/√head_size)";
  return null;
}

const sameKnownDim = (a: Dim | undefined, b: Dim | undefined) =>
  a !== undefined && b !== undefined && a === b && !(typeof a === "string" && a.startsWith("?"));

/**
 * Rewrites one Attention node (see the header) into `out`; its Y output keeps its name. Shapes come from `info`
 * (shape inference of the graph with every earlier Attention already rewritten).
 */
function emitAttention(graph: Graph, n: Node, info: ReturnType<typeof inferShapes>, out: Node[]): void {
  const fail = (why: string): never => {
    throw new CanonicalError(`${n.name}: Attention ${why}`);
  };
  const [q, k, v, mask] = n.inputs;
  const shapeOf = (x: string) => graph.initializers.get(x)?.dims ?? info.get(x)?.shape;
  const [qs, ks, vs] = [q, k, v].map(shapeOf);
  const rank = qs?.length;
  if (!qs || !ks || !vs || (rank !== 3 && rank !== 4) || ks.length !== rank || vs.length !== rank)
    fail(
      `needs Q, K and V of one known rank, 3 or 4 (got ${[qs, ks, vs].map((s) => (s ? `rank ${s.length}` : "unknown rank")).join(", ")})`,
    );
  const qHeads = attrOf<number>(n, "q_num_heads");
  const kvHeads = attrOf<number>(n, "kv_num_heads");
  if (rank === 3 && (!qHeads || !kvHeads)) fail("with 3-D inputs needs q_num_heads and kv_num_heads");
  if (rank === 3 && qHeads !== kvHeads)
    fail(`q_num_heads=${qHeads} ≠ kv_num_heads=${kvHeads} (grouped-query attention) is not supported`);
  // 4-D: the heads are dim 1; unequal ones (grouped-query) would need K/V repeated, so they must be proven equal.
  if (rank === 4 && !(sameKnownDim(qs![1], ks![1]) && sameKnownDim(ks![1], vs![1])))
    fail(
      `needs as many K/V heads as Q heads, proven from the shapes (Q ${qs![1]}, K ${ks![1]}, V ${vs![1]}); grouped-query attention is not supported`,
    );

  let i = 0;
  const emit = (op: string, inputs: string[], attrs: Node["attrs"] = {}, output?: string): string => {
    const name = `${n.name}/${op}_${i++}`;
    const o = output ?? graph.uniqueName(`${name}_output`);
    out.push({ name, op, domain: "", inputs, outputs: [o], attrs });
    return o;
  };
  const ints = (values: number[]) => graph.constInts(values, `${n.name}/shape`);
  const perm = (p: number[]): Node["attrs"] => ({ perm: { type: "ints", value: p } });
  // 3-D [B, S, N·H] → [B, N, S, H] (K straight to [B, N, H, S]), as the reference reshapes and transposes.
  const split = (x: string, heads: number, p: number[]) =>
    emit("Transpose", [emit("Reshape", [x, ints([0, 0, heads, -1])])], perm(p));
  const q4 = rank === 3 ? split(q, qHeads!, [0, 2, 1, 3]) : q;
  const kt = rank === 3 ? split(k, kvHeads!, [0, 2, 3, 1]) : emit("Transpose", [k], perm([0, 1, 3, 2]));
  const v4 = rank === 3 ? split(v, kvHeads!, [0, 2, 1, 3]) : v;

  // scale: the attribute, else 1/√head_size, head_size being Q's last dim (of the [B, N, S, H] form).
  let scale: string;
  const given = attrOf<number>(n, "scale");
  const last = qs![qs!.length - 1];
  const headSize = rank === 4 ? last : typeof last === "number" ? last / qHeads! : undefined;
  if (given !== undefined) scale = graph.constFloat(given, `${n.name}/scale`);
  else if (typeof headSize === "number" && Number.isInteger(headSize))
    scale = graph.constFloat(1 / Math.sqrt(headSize), `${n.name}/scale`);
  else {
    // Read at run time from Q's shape (what torch 2.1's SDPA symbolic writes); import freezes it (scale.ts).
    const size = emit("Cast", [emit("Shape", [q4], { start: { type: "int", value: -1 } })], {
      to: { type: "int", value: ONNX_DTYPE.float32 },
    });
    scale = emit("Reciprocal", [emit("Sqrt", [size])]);
  }
  let scores = emit("Mul", [emit("MatMul", [q4, kt]), scale]);

  if (mask) {
    const ms = shapeOf(mask);
    // The spec pads a mask shorter than the key sequence with -inf, where Add would broadcast: the last dims
    // must be proven equal for the Add to mean the same.
    const keys = rank === 3 ? ks![1] : ks![2];
    if (!ms || !sameKnownDim(ms[ms.length - 1], keys))
      fail(
        `attn_mask ${mask}: its last dim (${ms ? ms[ms.length - 1] : "unknown"}) is not proven to equal the key sequence length (${keys}); the op pads a shorter mask, which its decomposition cannot`,
      );
    const dtype = graph.initializers.get(mask)?.dtype ?? info.get(mask)?.dtype;
    let bias = mask;
    if (dtype === "bool") {
      // True takes part: Where(mask, 0, -inf), as the reference (and torch 2.1's bool-mask SDPA) writes it.
      const zero = graph.constant(tensor("float32", [], [0]), `${n.name}/mask_zero`);
      const ninf = graph.constant(tensor("float32", [], [Number.NEGATIVE_INFINITY]), `${n.name}/mask_ninf`);
      bias = emit("Where", [mask, zero, ninf]);
    } else if (dtype !== "float32")
      fail(`attn_mask ${mask} must be bool or float32 (got ${dtype ?? "unknown"})`);
    scores = emit("Add", [scores, bias]);
  }
  const probs = emit("Softmax", [scores], { axis: { type: "int", value: -1 } });
  const y = n.outputs[0];
  if (rank === 4) emit("MatMul", [probs, v4], {}, y);
  else
    emit(
      "Reshape",
      [emit("Transpose", [emit("MatMul", [probs, v4])], perm([0, 2, 1, 3])), ints([0, 0, -1])],
      {},
      y,
    );
}

/**
 * Rewrites every default-domain `Attention` (opset 23) into standard ops (see the header); returns how many.
 * Throws a CanonicalError naming the node for the forms it does not rewrite (causal, KV cache, softcap,
 * grouped-query heads, a read qk output, a mask whose length cannot be proven to match the keys).
 */
export function decomposeAttention(graph: Graph): number {
  let rewritten = 0;
  for (;;) {
    graph.toposort();
    const at = graph.nodes.findIndex((n) => n.op === "Attention" && isDefaultDomain(n.domain));
    if (at < 0) break;
    const n = graph.nodes[at];
    const consumers = graph.consumers();
    const outputs = new Set(graph.outputs.map((o) => o.name));
    const why = unsupportedAttention(n, (v) => outputs.has(v) || (consumers.get(v)?.length ?? 0) > 0);
    if (why) throw new CanonicalError(`${n.name}: Attention ${why}`);
    if (!n.outputs[0]) throw new CanonicalError(`${n.name}: Attention has no Y output`);
    // Shapes of this node's inputs, with every earlier Attention already standard ops.
    const info = inferShapes(graph);
    const out: Node[] = [];
    emitAttention(graph, n, info, out);
    graph.nodes.splice(at, 1, ...out);
    rewritten++;
  }
  return rewritten;
}
