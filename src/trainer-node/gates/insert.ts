/**
 * Puts FineGates gates into a graph: y = (W (x ⊙ c) + b) ⊙ r. Each gated layer gets two new graph inputs,
 * a column-gate vector c [in] and a row-gate vector r [out], so the trainer feeds gate values (noisy while
 * training, deterministic at evaluation) and the autodiff pass returns their gradients.
 *
 * A layer with `uses` (a weight shared by several linears, ALBERT) gets one gate pair, read by the Muls at
 * every use: the tied gate W -> Diag(r) W Diag(c) is the same at each, and its gradient is the sum over them.
 */
import type { Graph } from "../../core/onnx/graph";
import type { LinearLayer } from "../import/linears";
import { usesOf } from "../import/shared-weights";

export const rowGateInput = (layer: string) => `${layer}::row_gate`;
export const colGateInput = (layer: string) => `${layer}::col_gate`;

/** Inserts Mul(x, c) before and Mul(·, r) after each layer (after its bias). Returns the graph (mutated). */
export function insertGates(graph: Graph, layers: LinearLayer[]): Graph {
  const producers = graph.producers();
  for (const layer of layers) {
    const c = graph.addInput(colGateInput(layer.node), "float32", [layer.inFeatures]);
    const r = graph.addInput(rowGateInput(layer.node), "float32", [layer.outFeatures]);
    for (const use of usesOf(layer)) {
      const node = graph.nodes.find((n) => n.name === use.node);
      if (!node) throw new Error(`gated layer ${use.node} is not in the graph`);
      const gatedIn = graph.op("Mul", [use.input, c], {}, { name: `${use.node}/col_gate` });
      node.inputs[0] = gatedIn;
      // Rename the layer's output so every consumer reads the row-gated value instead.
      const ungated = graph.uniqueName(`${use.output}_ungated`);
      const producer = producers.get(use.output);
      if (!producer) throw new Error(`no producer for ${use.output}`);
      producer.outputs = producer.outputs.map((o) => (o === use.output ? ungated : o));
      graph.op("Mul", [ungated, r], {}, { name: `${use.node}/row_gate`, output: use.output });
    }
  }
  return graph.toposort();
}
