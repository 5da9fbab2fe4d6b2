/**
 * Constant folding of shape arithmetic, the onnx-graphsurgeon `fold_constants` idea: Constant nodes become
 * initializers, and every small tensor whose elements static shape inference can work out (Shape of static
 * dims, Gather/Concat/Unsqueeze/Cast/Slice/arithmetic on constant ints, ...) becomes an initializer too, so the
 * node chains that computed it at run time disappear. Exporters (PyTorch/HF) emit many such chains.
 */
import type { Graph } from "./graph";
import { inferShapes, isStaticShape } from "./shape-inference";
import { allocate, sizeOf, type Tensor, tensor } from "./tensor";

export interface FoldReport {
  /** Constant nodes turned into initializers. */
  constants: number;
  /** Other nodes replaced by initializers holding their (statically known) outputs. */
  folded: number;
  /** Nodes removed in total, including dead ones. */
  removed: number;
}

/** Turns default-domain Constant nodes into initializers; returns how many. */
export function constantNodesToInitializers(graph: Graph): number {
  let constants = 0;
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
  return constants;
}

/** Elements of `t` permuted by `perm` (ONNX Transpose). */
function transposeTensor(t: Tensor, perm: number[]): Tensor {
  const dims = perm.map((p) => t.dims[p]);
  const rank = dims.length;
  const srcStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    srcStrides[i] = s;
    s *= t.dims[i];
  }
  const out = allocate(t.dtype, sizeOf(dims));
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < rank; i++) src += idx[i] * srcStrides[perm[i]];
    (out as Float32Array)[o] = (t.data as Float32Array)[src];
    for (let i = rank - 1; i >= 0; i--) {
      if (++idx[i] < dims[i]) break;
      idx[i] = 0;
    }
  }
  return { dtype: t.dtype, dims, data: out };
}

/**
 * Folds the ops exporters put between a weight and its MatMul when constant folding was off
 * (`torch.onnx.export(do_constant_folding=False)` writes `MatMul(x, Transpose(W))`): Transpose, Identity and
 * float-to-float Cast of initializers become initializers, at any size. Returns how many nodes it folded.
 */
export function foldWeightTransforms(graph: Graph): number {
  let folded = 0;
  // One result per (source, perm): every use of a shared weight keeps pointing at one tensor object, so
  // sharing (ALBERT's layers) stays visible after folding.
  const transposed = new Map<string, Tensor>();
  graph.toposort();
  graph.nodes = graph.nodes.filter((n) => {
    if (n.domain) return true;
    const t = graph.initializers.get(n.inputs[0]);
    if (!t || n.inputs.length !== 1) return true;
    let result: Tensor | undefined;
    if (n.op === "Identity") result = t;
    else if (n.op === "Transpose") {
      const perm =
        (n.attrs.perm?.value as number[] | undefined) ?? t.dims.map((_, i) => t.dims.length - 1 - i);
      const key = `${n.inputs[0]}|${perm.join(",")}`;
      result = transposed.get(key) ?? transposeTensor(t, perm);
      transposed.set(key, result);
    } else if (n.op === "Cast" && t.dtype === "float32" && n.attrs.to?.value === 1) result = t;
    if (!result) return true;
    graph.initializers.set(n.outputs[0], result);
    folded++;
    return false;
  });
  return folded;
}

/** Folds in place and removes what nothing uses any more; returns what it did. */
export function foldConstants(graph: Graph): FoldReport {
  const before = graph.nodes.length;
  graph.toposort();
  const constants = constantNodesToInitializers(graph);
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
