/**
 * Structural analysis for export: which linear layers form attention blocks (Q, K, V, output) and which form
 * FFNs (linear → elementwise activation chain → linear). Detection reads the graph's dataflow only, never
 * node names, so it holds for real PyTorch/Hugging Face exports as well as for the builder's graphs.
 *
 * Attention pattern (all four buildEncoder layouts and HF exports):
 *   Q/K/V linear → Reshape [B,S,H,dh] → Transpose(s) (+ scalar Mul/Div, e.g. DistilBERT scaling q, or
 *   torch ≥ 2.1's SDPA export scaling both q and kᵀ by √(1/√dh), before or after the transpose)
 *   MatMul(Q, Kᵀ) → score ops (Div by √dh, Add mask, Where mask) → Softmax(last axis)
 *   MatMul(P, V) → Transpose(s) → Reshape [B,S,H·dh] → output linear
 * Anything that does not match exactly is left to the generic (still exact) per-layer treatment.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { toNumbers } from "../../core/onnx/tensor";
import { findLinearLayers, type LinearLayer } from "../import/linears";

/** A node on a path that must be replayed on the pruned tensor, with the index of the path input. */
export interface PathOp {
  node: Node;
  pathInput: number;
}

export interface AttentionBlock {
  q: LinearLayer;
  k: LinearLayer;
  v: LinearLayer;
  o: LinearLayer;
  heads: number;
  headDim: number;
  /** Scalar Mul/Div ops between each projection and QKᵀ (elementwise, so they commute with slicing). */
  qOps: PathOp[];
  kOps: PathOp[];
  vOps: PathOp[];
  /** Ops between MatMul(Q, Kᵀ) and Softmax, in order (scale, mask). */
  scoreOps: PathOp[];
  softmax: Node;
  /**
   * Axes of every value on the Q/K/V paths, from the projection output ("B", "S", "HD") through the head split
   * ("B", "S", "H", "D") and its transposes: what `Shape` of such a value returns, for freezing a scale that an
   * exporter computes from it (import/scale.ts).
   */
  layouts: Map<string, PathAxis[]>;
}

/** An axis of a value on an attention path: batch, sequence, heads, head size, or heads × head size. */
export type PathAxis = "B" | "S" | "H" | "D" | "HD";

export interface FfnBlock {
  up: LinearLayer;
  down: LinearLayer;
  /** Elementwise chain from `up.output` to `down.input`, in graph order. */
  chain: PathOp[];
}

export interface EncoderAnalysis {
  linears: LinearLayer[];
  attention: AttentionBlock[];
  ffn: FfnBlock[];
}

const UNARY_ELEMENTWISE = new Set([
  "Erf",
  "Tanh",
  "Relu",
  "Sigmoid",
  "Sqrt",
  "Exp",
  "Neg",
  "Abs",
  "Identity",
  "Softplus",
  "Gelu",
  "Elu",
  "LeakyRelu",
  "HardSigmoid",
  "Selu",
  "Celu",
]);
const BINARY_ELEMENTWISE = new Set(["Add", "Sub", "Mul", "Div", "Pow"]);
const SCORE_OPS = new Set(["Add", "Sub", "Mul", "Div", "Where"]);

/** True when `name` is a float initializer holding one element (a broadcast scalar). */
function isScalarConst(g: Graph, name: string): boolean {
  const t = g.initializers.get(name);
  return !!t && t.data.length === 1;
}

/** Ops that shape arithmetic is made of (sizes taken with Shape, sliced, cast, combined with constants). */
const SHAPE_ARITH = new Set([
  "Shape",
  "Slice",
  "Gather",
  "Cast",
  "Sqrt",
  "Reciprocal",
  "Div",
  "Mul",
  "Add",
  "Sub",
  "Pow",
  "Unsqueeze",
  "Squeeze",
  "Concat",
  "Reshape",
  "Identity",
]);

/**
 * True when `name` is computed from tensor shapes and constants only, reading no activation's or input's
 * data. torch ≥ 2.1 exports SDPA's default scale this way (`Cast(Div(1, Sqrt(Cast(Slice(Shape(q), -1)))))`),
 * and it stays a computed value wherever the importer's shape inference did not fold it.
 */
export function isShapeDerived(g: Graph, name: string, producers: Map<string, Node>, depth = 16): boolean {
  if (g.initializers.has(name)) return true;
  const p = producers.get(name);
  if (!p || depth === 0 || !SHAPE_ARITH.has(p.op)) return false;
  if (p.op === "Shape") return true;
  return p.inputs.every((i) => !i || isShapeDerived(g, i, producers, depth - 1));
}

/** A scale operand of a path op: a one-element constant, or a value computed from shapes (frozen by import). */
function isScaleOperand(g: Graph, name: string, producers: Map<string, Node>): boolean {
  return isScalarConst(g, name) || (!g.initializers.has(name) && isShapeDerived(g, name, producers));
}

function single<T>(list: T[] | undefined): T | undefined {
  return list && list.length === 1 ? list[0] : undefined;
}

/** Constant entries of a Reshape target (null where dynamic): an int64 initializer or a Concat of pieces. */
export function reshapeTarget(
  g: Graph,
  target: string,
  producers: Map<string, Node>,
): (number | null)[] | null {
  const init = g.initializers.get(target);
  if (init) return toNumbers(init);
  // tf2onnx computes targets in int32 (TF's shape type) and casts them to int64 for ONNX's Reshape.
  const cast = producers.get(target);
  if (cast?.op === "Cast") return reshapeTarget(g, cast.inputs[0], producers);
  const concat = producers.get(target);
  if (concat?.op !== "Concat") return null;
  // A Slice's optional operand: its first value, `absent` when omitted, NaN when not a constant.
  const firstConst = (name: string | undefined, absent: number) => {
    if (!name) return absent;
    const t = g.initializers.get(name);
    return t ? toNumbers(t)[0] : Number.NaN;
  };
  const out: (number | null)[] = [];
  for (const piece of concat.inputs) {
    const t = g.initializers.get(piece);
    if (t) {
      out.push(...toNumbers(t));
      continue;
    }
    const p = producers.get(piece);
    // `x.size()[:-1]` / `x.size()[:-2]`: a Slice of Shape from 0 to -1 or -2, i.e. the leading batch and
    // sequence dims of the [B, S, d] / [B, S, H, dh] activations on the attention path.
    const start = p?.op === "Slice" ? g.initializers.get(p.inputs[1]) : undefined;
    const end = p?.op === "Slice" ? g.initializers.get(p.inputs[2]) : undefined;
    const leading =
      producers.get(p?.inputs[0] ?? "")?.op === "Shape" &&
      start &&
      end &&
      toNumbers(start)[0] === 0 &&
      [-1, -2].includes(toNumbers(end)[0]) &&
      p?.inputs.length === 3;
    // `x.flatten(2)` (ALBERT's head merge): Slice(Shape(x), [0], [2], axes [0]) then -1, i.e. dims 0 and 1.
    const firstTwo =
      producers.get(p?.inputs[0] ?? "")?.op === "Shape" &&
      start &&
      end &&
      toNumbers(start)[0] === 0 &&
      toNumbers(end)[0] === 2 &&
      firstConst(p?.inputs[3], 0) === 0 &&
      firstConst(p?.inputs[4], 1) === 1;
    // The torch dynamo exporter turns each SymInt of a size list into `Reshape(sym_size, [-1])`, the
    // scalar being `Squeeze(Shape(x, start=d, end=d+1))` (or torch_lib's `Gather(Shape(x), d)`).
    const scalarToVector =
      p?.op === "Reshape" &&
      g.initializers.get(p.inputs[1])?.data.length === 1 &&
      ["Squeeze", "Gather"].includes(producers.get(p.inputs[0])?.op ?? "");
    if (leading || firstTwo) out.push(null, null);
    // A dynamic piece (Unsqueeze of a Gather of Shape) is one element wide in these exports.
    else if (scalarToVector || (p && ["Unsqueeze", "Gather", "Cast"].includes(p.op))) out.push(null);
    else return null;
  }
  return out;
}

/** Follows a head-split path backwards from a QK/PV MatMul operand to the linear whose output it reshapes. */
function traceSplitPath(
  g: Graph,
  value: string,
  producers: Map<string, Node>,
  consumers: Map<string, Node[]>,
  outputsByName: Map<string, LinearLayer>,
): {
  layer: LinearLayer;
  axes: string[];
  ops: PathOp[];
  target: (number | null)[];
  layouts: [string, PathAxis[]][];
} | null {
  // The path's values from the split onwards, with the permutation each one's producer applied.
  const steps: { value: string; perm?: number[] }[] = [];
  const ops: PathOp[] = [];
  let v = value;
  for (let n = 0; n < 8; n++) {
    const p = producers.get(v);
    if (!p || (consumers.get(v)?.length ?? 0) !== 1) return null;
    if (p.op === "Transpose") {
      const perm = p.attrs.perm?.value as number[] | undefined;
      if (perm?.length !== 4) return null;
      steps.unshift({ value: v, perm });
      v = p.inputs[0];
    } else if ((p.op === "Mul" || p.op === "Div") && isScaleOperand(g, p.inputs[1], producers)) {
      ops.unshift({ node: p, pathInput: 0 });
      steps.unshift({ value: v });
      v = p.inputs[0];
    } else if (p.op === "Mul" && isScaleOperand(g, p.inputs[0], producers)) {
      ops.unshift({ node: p, pathInput: 1 });
      steps.unshift({ value: v });
      v = p.inputs[1];
    } else if (p.op === "Reshape") {
      const layer = outputsByName.get(p.inputs[0]);
      const target = reshapeTarget(g, p.inputs[1], producers);
      if (!layer || !target || target.length !== 4) return null;
      if ((consumers.get(p.inputs[0])?.length ?? 0) !== 1) return null;
      let axes: PathAxis[] = ["B", "S", "H", "D"];
      const layouts: [string, PathAxis[]][] = [
        [p.inputs[0], ["B", "S", "HD"]],
        [v, axes],
      ];
      for (const step of steps) {
        const perm = step.perm;
        if (perm) axes = perm.map((i) => axes[i]);
        layouts.push([step.value, axes]);
      }
      return { layer, axes, ops, target, layouts };
    } else return null;
  }
  return null;
}

/** Heads and head size from a split target [.., .., H, dh] (either may be -1 or dynamic). */
function headsOf(target: (number | null)[], width: number): { heads: number; headDim: number } | null {
  const [h, d] = [target[2], target[3]];
  if (h !== null && h > 0 && width % h === 0 && (d === null || d === -1 || d * h === width))
    return { heads: h, headDim: width / h };
  if (d !== null && d > 0 && width % d === 0 && (h === null || h === -1))
    return { heads: width / d, headDim: d };
  return null;
}

/**
 * Consumers that read a value's data. Shape nodes are left out: PyTorch exports size Reshape targets and mask
 * Expands from `Shape(x)` of the very tensors on the attention path, and those only need batch/sequence dims,
 * which pruning does not change.
 */
function dataConsumers(g: Graph): Map<string, Node[]> {
  const m = g.consumers();
  for (const [k, list] of m)
    m.set(
      k,
      list.filter((n) => n.op !== "Shape"),
    );
  return m;
}

function findAttention(g: Graph, linears: LinearLayer[]): AttentionBlock[] {
  const producers = g.producers();
  const consumers = dataConsumers(g);
  const byOutput = new Map(linears.map((l) => [l.output, l]));
  const blocks: AttentionBlock[] = [];
  for (const qk of g.nodes) {
    if (qk.op !== "MatMul" || g.initializers.has(qk.inputs[0]) || g.initializers.has(qk.inputs[1])) continue;
    // Walk forward through the score ops (scale, mask) to the Softmax.
    const scoreOps: PathOp[] = [];
    let v = qk.outputs[0];
    let softmax: Node | undefined;
    for (let steps = 0; steps < 6; steps++) {
      const n = single(consumers.get(v));
      if (!n) break;
      if (n.op === "Softmax") {
        softmax = n;
        break;
      }
      const pathInput = n.inputs.indexOf(v);
      if (!SCORE_OPS.has(n.op) || (n.op === "Where" && pathInput === 0)) break;
      if (n.inputs.lastIndexOf(v) !== pathInput) break;
      scoreOps.push({ node: n, pathInput });
      v = n.outputs[0];
    }
    if (!softmax) continue;
    const axis = (softmax.attrs.axis?.value as number | undefined) ?? (g.opset >= 13 ? -1 : 1);
    if (axis !== -1 && axis !== 3) continue;
    const pv = single(consumers.get(softmax.outputs[0]));
    if (pv?.op !== "MatMul" || pv.inputs[0] !== softmax.outputs[0]) continue;
    const qPath = traceSplitPath(g, qk.inputs[0], producers, consumers, byOutput);
    const kPath = traceSplitPath(g, qk.inputs[1], producers, consumers, byOutput);
    const vPath = traceSplitPath(g, pv.inputs[1], producers, consumers, byOutput);
    if (!qPath || !kPath || !vPath) continue;
    if (qPath.axes.join() !== "B,H,S,D" || kPath.axes.join() !== "B,H,D,S" || vPath.axes.join() !== "B,H,S,D")
      continue;
    const hq = headsOf(qPath.target, qPath.layer.outFeatures);
    const hk = headsOf(kPath.target, kPath.layer.outFeatures);
    const hv = headsOf(vPath.target, vPath.layer.outFeatures);
    if (!hq || !hk || !hv || hq.heads !== hk.heads || hq.headDim !== hk.headDim || hv.heads !== hq.heads)
      continue;
    if (hv.headDim !== hq.headDim) continue;
    // Forward from the context: Transpose(s) back to [B,S,H,D] and the merge Reshape into the output linear.
    let axes = ["B", "H", "S", "D"];
    let c = pv.outputs[0];
    let o: LinearLayer | undefined;
    for (let steps = 0; steps < 4; steps++) {
      const next = single(consumers.get(c));
      if (!next) break;
      if (next.op === "Transpose") {
        const perm = next.attrs.perm?.value as number[];
        axes = perm.map((i) => axes[i]);
        c = next.outputs[0];
      } else if (next.op === "Reshape") {
        const target = reshapeTarget(g, next.inputs[1], producers);
        const merged = vPath.layer.outFeatures;
        if (target?.length !== 3 || (target[2] !== merged && target[2] !== -1)) break;
        if (axes.join() !== "B,S,H,D") break;
        if ((consumers.get(next.outputs[0])?.length ?? 0) !== 1) break;
        o = linears.find((l) => l.input === next.outputs[0]);
        break;
      } else break;
    }
    if (!o || o.inFeatures !== vPath.layer.outFeatures) continue;
    const distinct = new Set([qPath.layer.node, kPath.layer.node, vPath.layer.node, o.node]);
    if (distinct.size !== 4) continue;
    blocks.push({
      q: qPath.layer,
      k: kPath.layer,
      v: vPath.layer,
      o,
      heads: hq.heads,
      headDim: hq.headDim,
      qOps: qPath.ops,
      kOps: kPath.ops,
      vOps: vPath.ops,
      scoreOps,
      softmax,
      layouts: new Map([...qPath.layouts, ...kPath.layouts, ...vPath.layouts]),
    });
  }
  return blocks;
}

/**
 * FFN: a linear whose output reaches exactly one other linear through elementwise ops only (activation
 * chains such as Erf-GELU: Div, Erf, Add, Mul, Mul), each op's other operands being scalar constants or
 * chain values, and no chain value used anywhere else. Relies on nodes being in topological order.
 */
function findFfn(g: Graph, linears: LinearLayer[], taken: Set<string>): FfnBlock[] {
  const consumers = g.consumers();
  const linearByNode = new Map(linears.map((l) => [l.node, l]));
  const outputs = new Set(g.outputs.map((o) => o.name));
  const blocks: FfnBlock[] = [];
  for (const up of linears) {
    if (taken.has(up.node)) continue;
    const chainValues = new Set([up.output]);
    const chain: PathOp[] = [];
    let down: LinearLayer | undefined;
    let ok = true;
    for (const n of g.nodes) {
      const pathInput = n.inputs.findIndex((i) => chainValues.has(i));
      if (pathInput < 0) continue;
      const l = linearByNode.get(n.name);
      if (l && chainValues.has(l.input) && n.inputs.indexOf(l.input) === 0) {
        if (down) ok = false;
        down = l;
        continue;
      }
      const elementwise =
        (UNARY_ELEMENTWISE.has(n.op) && n.inputs.length === 1) ||
        (BINARY_ELEMENTWISE.has(n.op) && n.inputs.every((i) => chainValues.has(i) || isScalarConst(g, i)));
      if (!elementwise || n.outputs.length !== 1) {
        ok = false;
        break;
      }
      chain.push({ node: n, pathInput });
      chainValues.add(n.outputs[0]);
    }
    if (!ok || !down || down === up || taken.has(down.node)) continue;
    // The down projection must read the chain's last value, and that value nothing else.
    if ((consumers.get(down.input)?.length ?? 0) !== 1) continue;
    if ([...chainValues].some((val) => outputs.has(val))) continue;
    blocks.push({ up, down, chain });
    taken.add(up.node);
    taken.add(down.node);
  }
  return blocks;
}

/** True when `ancestor` is among the values `value` is computed from, at most `depth` nodes back. */
function isAncestor(producers: Map<string, Node>, ancestor: string, value: string, depth = 16): boolean {
  let frontier = [value];
  for (let d = 0; d <= depth && frontier.length; d++) {
    if (frontier.includes(ancestor)) return true;
    frontier = frontier.flatMap((v) => producers.get(v)?.inputs.filter(Boolean) ?? []);
  }
  return false;
}

/**
 * An encoder FFN adds its output back onto the residual stream it read (Add(down, x) with x the FFN input or
 * what it was normalised from). A task head shaped linear → activation → linear (pooler → classifier,
 * pre_classifier → ReLU → classifier) has no such Add.
 */
function isResidualFfn(f: FfnBlock, producers: Map<string, Node>, consumers: Map<string, Node[]>) {
  return (consumers.get(f.down.output) ?? []).some(
    (n) =>
      n.op === "Add" &&
      n.inputs.some((other) => other !== f.down.output && isAncestor(producers, other, f.up.input)),
  );
}

/** Finds attention blocks and FFNs among the graph's linear layers. */
export function analyzeEncoder(g: Graph): EncoderAnalysis {
  const linears = findLinearLayers(g);
  const attention = findAttention(g, linears);
  const taken = new Set(attention.flatMap((a) => [a.q.node, a.k.node, a.v.node, a.o.node]));
  const producers = g.producers();
  const consumers = g.consumers();
  const ffn = findFfn(g, linears, taken).filter((f) => isResidualFfn(f, producers, consumers));
  return { linears, attention, ffn };
}
