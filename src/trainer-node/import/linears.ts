/**
 * Finds the linear layers that carry gates. A gated layer is a MatMul whose second input is a 2-D float
 * initializer (weight stored [in, out], as PyTorch exports Linear on 3-D inputs) or a Gemm with an initializer
 * B (2-D inputs, usually transB=1 so B is [out, in]), optionally followed by an Add of a 1-D bias initializer.
 * Detection is structural, so it works on real exports whose weights have anonymous names (`onnx::MatMul_123`).
 */
import type { Graph, Node } from "../../core/onnx/graph";

export interface LinearLayer {
  /** Name of the MatMul/Gemm node: the layer's stable identity in checkpoints. */
  node: string;
  op: "MatMul" | "Gemm";
  weight: string;
  /** True when the weight is stored [out, in] (Gemm transB=1). */
  weightTransposed: boolean;
  /** 1-D bias initializer (Gemm's C or a following Add), if any. */
  bias?: string;
  /** The Add node that applies the bias after a MatMul. */
  biasAdd?: string;
  inFeatures: number;
  outFeatures: number;
  /** Value entering the layer (x) and value leaving it after the bias. */
  input: string;
  output: string;
  /**
   * Set on a gated layer whose weight other linears read too (ALBERT's shared layers, shared-weights.ts): every
   * linear reading it, this one first. They carry one tied gate, named by this layer's node.
   */
  uses?: LinearLayer[];
}

export interface LayerSelector {
  /** Keep only layers whose node name matches one of these (substring or /regex/). Default: all encoder linears. */
  include?: string[];
  exclude?: string[];
}

export function matches(name: string, patterns: string[]): boolean {
  return patterns.some((p) =>
    p.startsWith("/") && p.endsWith("/") && p.length > 2
      ? new RegExp(p.slice(1, -1)).test(name)
      : name.includes(p),
  );
}

/** Every linear layer in the graph (including heads); use `selectGatedLayers` for the default gate set. */
export function findLinearLayers(graph: Graph): LinearLayer[] {
  const consumers = graph.consumers();
  const layers: LinearLayer[] = [];
  for (const n of graph.nodes) {
    if (n.op !== "MatMul" && n.op !== "Gemm") continue;
    const w = graph.initializers.get(n.inputs[1]);
    if (w?.dtype !== "float32" || w.dims.length !== 2) continue;
    if (n.op === "Gemm") {
      if ((n.attrs.transA?.value ?? 0) !== 0) continue;
      const transB = (n.attrs.transB?.value ?? 0) === 1;
      const c = n.inputs[2] ? graph.initializers.get(n.inputs[2]) : undefined;
      const [inF, outF] = transB ? [w.dims[1], w.dims[0]] : [w.dims[0], w.dims[1]];
      layers.push({
        node: n.name,
        op: "Gemm",
        weight: n.inputs[1],
        weightTransposed: transB,
        bias: c && c.dims.length === 1 ? n.inputs[2] : undefined,
        inFeatures: inF,
        outFeatures: outF,
        input: n.inputs[0],
        output: n.outputs[0],
      });
      continue;
    }
    const [inF, outF] = w.dims;
    const next = consumers.get(n.outputs[0]) ?? [];
    const add: Node | undefined = next.length === 1 && next[0].op === "Add" ? next[0] : undefined;
    const biasName = add?.inputs.find((i) => i !== n.outputs[0]);
    const bias = biasName ? graph.initializers.get(biasName) : undefined;
    const hasBias = !!add && !!bias && bias.dims.length === 1 && bias.dims[0] === outF;
    layers.push({
      node: n.name,
      op: "MatMul",
      weight: n.inputs[1],
      weightTransposed: false,
      bias: hasBias ? biasName : undefined,
      biasAdd: hasBias ? add!.name : undefined,
      inFeatures: inF,
      outFeatures: outF,
      input: n.inputs[0],
      output: hasBias ? add!.outputs[0] : n.outputs[0],
    });
  }
  return layers;
}
