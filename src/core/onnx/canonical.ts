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
 *   residual Add of an un-optimized dynamo export reads the residual through such a Mul).
 */
import type { Graph, Node } from "./graph";
import { type Dim, inferShapes } from "./shape-inference";
import { ONNX_DTYPE, toNumbers } from "./tensor";

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
