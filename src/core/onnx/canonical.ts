/**
 * Rewrites of ops that only restate simpler ones, so recognition, folding and autodiff meet one form:
 *
 * - `CastLike(x, like)` (opset 15; the torch dynamo exporter's torch_lib writes it for every scalar it
 *   promotes, e.g. `CastLike(1.0, q)` in the SDPA scale) is `Cast(x, to = dtype(like))` once `like`'s element
 *   type is known;
 * - `Dropout` in an inference graph (no `training_mode`, or a constant false one: what exporters leave when a
 *   model is exported without `.eval()`'s dropout removal, e.g. torch_lib's `aten_dropout` at p = 0 or
 *   Keras/tf2onnx) is the identity on its data output; its uses read the input directly.
 */
import type { Graph, Node } from "./graph";
import { inferShapes } from "./shape-inference";
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
