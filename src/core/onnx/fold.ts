/**
 * Constant folding of shape arithmetic, the onnx-graphsurgeon `fold_constants` idea: Constant nodes become
 * initializers, and every small tensor whose elements static shape inference can work out (Shape of static
 * dims, Gather/Concat/Unsqueeze/Cast/Slice/arithmetic on constant ints, ...) becomes an initializer too, so the
 * node chains that computed it at run time disappear. Exporters (PyTorch/HF) emit many such chains.
 */
import type { Graph } from "./graph";
import { inferShapes, isStaticShape } from "./shape-inference";
import { tensor } from "./tensor";

export interface FoldReport {
  /** Constant nodes turned into initializers. */
  constants: number;
  /** Other nodes replaced by initializers holding their (statically known) outputs. */
  folded: number;
  /** Nodes removed in total, including dead ones. */
  removed: number;
}

/** Folds in place and removes what nothing uses any more; returns what it did. */
export function foldConstants(graph: Graph): FoldReport {
  const before = graph.nodes.length;
  let constants = 0;
  graph.toposort();
  graph.nodes = graph.nodes.filter((n) => {
    if (n.op !== "Constant" || n.domain) return true;
    const a = n.attrs;
    const out = n.outputs[0];
    if (a.value?.type === "tensor") graph.initializers.set(out, a.value.value);
    else if (a.value_int) graph.initializers.set(out, tensor("int64", [], [a.value_int.value as number]));
    else if (a.value_ints) {
      const v = a.value_ints.value as number[];
      graph.initializers.set(out, tensor("int64", [v.length], v));
    } else if (a.value_float)
      graph.initializers.set(out, tensor("float32", [], [a.value_float.value as number]));
    else if (a.value_floats) {
      const v = a.value_floats.value as number[];
      graph.initializers.set(out, tensor("float32", [v.length], v));
    } else return true;
    constants++;
    return false;
  });

  const info = inferShapes(graph);
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  let folded = 0;
  graph.nodes = graph.nodes.filter((n) => {
    if (n.domain || n.outputs.length === 0) return true;
    const outs = n.outputs.map((o) => info.get(o));
    const foldable = outs.every(
      (v, i) =>
        n.outputs[i] &&
        v?.dtype &&
        v.value &&
        isStaticShape(v.shape) &&
        v.shape.length <= 1 &&
        v.value.every((d) => typeof d === "number" && Number.isFinite(d)) &&
        !graphOutputs.has(n.outputs[i]),
    );
    if (!foldable) return true;
    n.outputs.forEach((o, i) => {
      const v = outs[i]!;
      graph.initializers.set(o, tensor(v.dtype!, v.shape as number[], v.value as number[]));
    });
    folded++;
    return false;
  });
  graph.cleanup();
  return { constants, folded, removed: before - graph.nodes.length };
}
