/**
 * Puts FineGates gates into a graph: y = (W (x ⊙ c) + b) ⊙ r. Each gated layer gets two new graph inputs,
 * a column-gate vector c [in] and a row-gate vector r [out], so the trainer feeds gate values (noisy while
 * training, deterministic at evaluation) and the autodiff pass returns their gradients.
 */
import type { Graph } from "../../core/onnx/graph";
import type { LinearLayer } from "../import/linears";

export const rowGateInput = (layer: string) => `${layer}::row_gate`;
export const colGateInput = (layer: string) => `${layer}::col_gate`;

/** Inserts Mul(x, c) before and Mul(·, r) after each layer (after its bias). Returns the graph (mutated). */
export function insertGates(graph: Graph, layers: LinearLayer[]): Graph {
  const producers = graph.producers();
  for (const layer of layers) {
    const node = graph.nodes.find((n) => n.name === layer.node);
    if (!node) throw new Error(`gated layer ${layer.node} is not in the graph`);
    const c = graph.addInput(colGateInput(layer.node), "float32", [layer.inFeatures]);
    const r = graph.addInput(rowGateInput(layer.node), "float32", [layer.outFeatures]);
    const gatedIn = graph.op("Mul", [layer.input, c], {}, { name: `${layer.node}/col_gate` });
    node.inputs[0] = gatedIn;
    // Rename the layer's output so every consumer reads the row-gated value instead.
    const ungated = graph.uniqueName(`${layer.output}_ungated`);
    const producer = producers.get(layer.output);
    if (!producer) throw new Error(`no producer for ${layer.output}`);
    producer.outputs = producer.outputs.map((o) => (o === layer.output ? ungated : o));
    graph.op("Mul", [ungated, r], {}, { name: `${layer.node}/row_gate`, output: layer.output });
  }
  return graph.toposort();
}
