/**
 * Reverse-mode autodiff over an ONNX graph: forward graph + scalar loss -> training graph whose extra outputs
 * are the gradients of the loss with respect to chosen graph inputs or initializers (ORT Training's gradient
 * graph builder, in a few hundred lines). Only nodes on a path from a `wrt` value to the loss are
 * differentiated, so frozen weights cost nothing beyond the activation gradients that must flow past them.
 */

import { foldConstants } from "../../core/onnx/fold";
import type { Graph, Node } from "../../core/onnx/graph";
import { upgradeOpset } from "../../core/onnx/opset";
import { inferShapes, isFloat, type ShapeMap } from "../../core/onnx/shape-inference";
import { type Tensor, tensor } from "../../core/onnx/tensor";
import { Emitter } from "./emit";
import { GRADIENTS, NON_DIFFERENTIABLE } from "./gradients";

/** Name of the training graph output holding d loss / d `name`. */
export const gradName = (name: string) => `grad:${name}`;

export interface TrainingGraphOptions {
  /** Scalar value to differentiate (a non-scalar loss is differentiated as its sum). */
  loss: string;
  /** Graph inputs or initializers to differentiate with respect to. */
  wrt: string[];
  /** Forward values to keep as outputs besides the loss (logits, say). */
  keepOutputs?: string[];
  /** Fold constant shape arithmetic first (default true): fewer nodes, and static axes for more rules. */
  fold?: boolean;
}

export interface TrainingGraph {
  graph: Graph;
  /** wrt name -> output name of its gradient. */
  gradients: Map<string, string>;
  /** Shapes and dtypes inferred on the way (forward and gradient values). */
  shapes: ShapeMap;
}

/**
 * Builds the training graph. The forward graph is not modified. Outputs: loss, keepOutputs, then one
 * `grad:<name>` per wrt entry (zeros when the loss does not depend on it).
 */
export function buildTrainingGraph(forward: Graph, opts: TrainingGraphOptions): Graph {
  return buildTrainingGraphWithInfo(forward, opts).graph;
}

export function buildTrainingGraphWithInfo(forward: Graph, opts: TrainingGraphOptions): TrainingGraph {
  const g = forward.clone();
  if (g.opset < 17) upgradeOpset(g, 17);
  const wrtInitializers = new Map(
    opts.wrt.flatMap((w) => (g.initializers.has(w) ? [[w, g.initializers.get(w)!]] : [])),
  );
  g.outputs = [opts.loss, ...(opts.keepOutputs ?? [])].map((name) => ({ name, dtype: "float32" }));
  if (opts.fold ?? true) foldConstants(g);
  for (const [w, t] of wrtInitializers) if (!g.initializers.has(w)) g.initializers.set(w, t);
  g.toposort();
  const info = inferShapes(g);
  const known = new Set([...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  for (const w of opts.wrt)
    if (!known.has(w)) throw new Error(`autodiff: '${w}' is not a graph input or initializer`);
  const producers = g.producers();
  if (!producers.has(opts.loss) && !known.has(opts.loss))
    throw new Error(`autodiff: loss '${opts.loss}' is not in the graph`);

  // Values that depend differentiably on some wrt value.
  const fromWrt = new Set(opts.wrt);
  for (const n of g.nodes) {
    if (NON_DIFFERENTIABLE.has(n.op) || !n.inputs.some((i) => i && fromWrt.has(i))) continue;
    for (const o of n.outputs) if (o && isFloat(info.get(o)?.dtype ?? "float32")) fromWrt.add(o);
  }
  // Values the loss depends on.
  const toLoss = new Set([opts.loss]);
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    if (n.outputs.some((o) => toLoss.has(o))) for (const inp of n.inputs) if (inp) toLoss.add(inp);
  }
  const active: Node[] = g.nodes.filter((n) => n.outputs.some((o) => fromWrt.has(o) && toLoss.has(o)));

  const e = new Emitter(g, info);
  const contributions = new Map<string, string[]>();
  const contribute = (name: string, grad: string) => {
    const list = contributions.get(name);
    if (list) list.push(grad);
    else contributions.set(name, [grad]);
  };
  /** Total gradient of a value: its contributions summed once (Add for two, Sum for more). */
  const total = (name: string): string | undefined => {
    const list = contributions.get(name);
    if (!list || list.length === 0) return undefined;
    if (list.length === 1) return list[0];
    const sum = e.op(list.length === 2 ? "Add" : "Sum", list);
    contributions.set(name, [sum]);
    return sum;
  };

  const lossInfo = info.get(opts.loss);
  const lossDtype = lossInfo?.dtype ?? "float32";
  if (lossInfo?.shape && lossInfo.shape.length === 0) contribute(opts.loss, e.scalar(1, lossDtype));
  else
    contribute(
      opts.loss,
      e.op("ConstantOfShape", [e.shapeOf(opts.loss)], { value: tensor(lossDtype, [1], [1]) }),
    );

  for (let k = active.length - 1; k >= 0; k--) {
    const node = active[k];
    const dy = node.outputs.map((o) => (o ? total(o) : undefined));
    if (dy.every((d) => d === undefined)) continue;
    const rule = GRADIENTS[node.op];
    if (!rule || node.domain)
      throw new Error(
        `autodiff: no gradient rule for op '${node.domain ? `${node.domain}.` : ""}${node.op}' (node '${node.name}')`,
      );
    const needs = node.inputs.map((i) => !!i && fromWrt.has(i));
    const dx = rule({ e, node, x: node.inputs, y: node.outputs, dy, needs });
    node.inputs.forEach((inp, i) => {
      const grad = dx[i];
      if (needs[i] && grad) contribute(inp, grad);
    });
  }

  const gradients = new Map<string, string>();
  const keep = [opts.loss, ...(opts.keepOutputs ?? [])];
  const outputInfo = (name: string) => {
    const v = info.get(name);
    return { name, dtype: v?.dtype ?? "float32", shape: v?.shape };
  };
  const outputs = keep.map(outputInfo);
  for (const w of opts.wrt) {
    const init = wrtInitializers.get(w);
    const zeros = () => (init ? e.constant(tensor(init.dtype, init.dims), "zeros") : e.zerosLike(w));
    const grad = total(w) ?? zeros();
    const out = gradName(w);
    g.addNode("Identity", [grad], {}, { name: e.fresh("grad_out"), outputs: [out] });
    gradients.set(w, out);
    outputs.push({ ...outputInfo(w), name: out });
  }
  g.outputs = outputs;
  g.cleanup();
  g.toposort();
  return { graph: g, gradients, shapes: info };
}

/**
 * Turns initializers into graph inputs (in place) so a trainer can feed their current values each step;
 * returns the values they held. Gradients work either way; inputs avoid rebuilding the session per step.
 */
export function promoteInitializers(graph: Graph, names: string[]): Map<string, Tensor> {
  const values = new Map<string, Tensor>();
  for (const name of names) {
    const t = graph.initializers.get(name);
    if (!t) throw new Error(`'${name}' is not an initializer`);
    graph.initializers.delete(name);
    graph.inputs.push({ name, dtype: t.dtype, shape: [...t.dims] });
    values.set(name, t);
  }
  return values;
}
