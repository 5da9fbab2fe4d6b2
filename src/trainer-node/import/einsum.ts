/**
 * tf2onnx writes Keras `EinsumDense` (TF Model Garden / Keras-NLP BERT, Keras `MultiHeadAttention`) and the
 * attention products of `MultiHeadAttention` as ONNX `Einsum` nodes:
 *
 *   "abc,cd->abd"     linear on [B, S, C] with a constant kernel [C, D] (FFN, pooler-less Dense)
 *   "abc,cde->abde"   Q/K/V projection straight into heads [B, S, N, H], kernel [C, N, H], bias [N, H]
 *   "abcd,cde->abe"   output projection from heads, kernel [N, H, E]
 *   "aecd,abcd->acbe" scores: key [B, S, N, H], query [B, T, N, H] -> [B, N, T, S]
 *   "acbe,aecd->abcd" context: probs [B, N, T, S], value [B, S, N, H] -> [B, T, N, H]
 *
 * Each is rewritten at import into the MatMul / Reshape / Transpose form torch exports, which the linear and
 * attention finders already read, and which computes exactly the same numbers (the same products and sums,
 * only the operands' memory layout differs):
 *
 * - x · W (W a constant, x's trailing letters contracted in order): Reshape(x, [0.., ΠC]) when several letters
 *   are contracted, MatMul with W laid out [ΠC, ΠO] (a new initializer where W had to be reshaped or
 *   transposed), the EinsumDense bias Add moved before the Reshape(·, [0.., O...]) that splits the output
 *   letters (bias [N, H] flattened to [N·H]); the MatMul keeps the Einsum's name.
 * - two activations with batch letters, one contracted letter and one free letter each: Transposes to
 *   [batch.., M, K] and [batch.., K, N], MatMul, Transpose to the output order (identities left out).
 *
 * Any other equation (ellipsis, implicit output, repeated or summed-out letters, several free letters on a
 * non-constant side) is left as it is and returned, so import can name it when its block is not recognised.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { attrOf } from "../../core/onnx/graph";
import { type Tensor, tensor } from "../../core/onnx/tensor";

export interface EinsumRewrite {
  /** Einsum nodes rewritten into MatMul form. */
  rewritten: number;
  /** Einsum nodes left as they are: name and equation. */
  left: { node: string; equation: string }[];
}

interface Parsed {
  inputs: string[][];
  output: string[];
}

/** "abc,cd->abd" as letter lists; undefined for forms this module does not rewrite. */
export function parseEquation(equation: string): Parsed | undefined {
  const eq = equation.replace(/\s+/g, "");
  if (eq.includes(".") || !eq.includes("->")) return undefined;
  const [lhs, rhs] = eq.split("->");
  const inputs = lhs.split(",").map((t) => [...t]);
  const output = [...rhs];
  const letters = [...inputs.flat(), ...output];
  if (letters.some((c) => !/^[a-zA-Z]$/.test(c))) return undefined;
  // No letter twice in one term (diagonals), no letter summed out of a single operand.
  if ([...inputs, output].some((t) => new Set(t).size !== t.length)) return undefined;
  for (const c of new Set(inputs.flat())) {
    const count = inputs.filter((t) => t.includes(c)).length;
    if (count === 1 && !output.includes(c)) return undefined;
  }
  if (output.some((c) => !inputs.some((t) => t.includes(c)))) return undefined;
  return { inputs, output };
}

const prod = (xs: number[]) => xs.reduce((p, q) => p * q, 1);

/** Row-major transpose of a float tensor. */
function transposeData(t: Tensor, perm: number[]): Tensor {
  const dims = perm.map((p) => t.dims[p]);
  const rank = t.dims.length;
  const inStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) inStrides[i] = inStrides[i + 1] * t.dims[i + 1];
  const src = t.data as Float32Array;
  const out = new Float32Array(src.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let s = 0;
    for (let i = 0; i < rank; i++) s += idx[i] * inStrides[perm[i]];
    out[o] = src[s];
    for (let i = rank - 1; i >= 0; i--) {
      if (++idx[i] < dims[i]) break;
      idx[i] = 0;
    }
  }
  return tensor("float32", dims, out);
}

const isIdentity = (perm: number[]) => perm.every((p, i) => p === i);

function node(
  name: string,
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: Node["attrs"] = {},
): Node {
  return { name, op, domain: "", inputs, outputs, attrs };
}

/** x · W with W constant: the nodes replacing the Einsum (and its bias Add, when one is folded in). */
function denseRewrite(g: Graph, n: Node, p: Parsed, consumers: Map<string, Node[]>) {
  const [xl, wl] = p.inputs;
  const w = g.initializers.get(n.inputs[1]);
  if (w?.dtype !== "float32" || w.dims.length !== wl.length) return undefined;
  const contracted = xl.filter((c) => wl.includes(c));
  const free = xl.filter((c) => !wl.includes(c));
  const outLetters = wl.filter((c) => !xl.includes(c));
  // x = free then contracted (trailing), output = x's free letters then W's, both in order.
  if (xl.join("") !== [...free, ...contracted].join("")) return undefined;
  if (p.output.join("") !== [...free, ...outLetters].join("")) return undefined;
  if (contracted.length === 0 || outLetters.length === 0 || free.length === 0) return undefined;
  const size = (c: string) => w.dims[wl.indexOf(c)];
  const k = prod(contracted.map(size));
  const outDims = outLetters.map(size);
  const m = prod(outDims);
  const perm = [...contracted, ...outLetters].map((c) => wl.indexOf(c));
  const scope = n.name;
  let weight = n.inputs[1];
  if (!isIdentity(perm) || w.dims.length !== 2) {
    const laid = isIdentity(perm) ? w : transposeData(w, perm);
    weight = g.addInitializer(`${n.inputs[1]}/sluice_einsum`, { ...laid, dims: [k, m] });
  }
  const nodes: Node[] = [];
  let x = n.inputs[0];
  if (contracted.length > 1) {
    const target = g.constInts([...free.map(() => 0), k], `${scope}/sluice_flatten_shape`);
    const flat = g.uniqueName(`${scope}/sluice_flatten`);
    nodes.push(node(flat, "Reshape", [x, target], [flat]));
    x = flat;
  }
  // The EinsumDense bias, shaped like the output letters, goes before the split so the linear owns it.
  const next = consumers.get(n.outputs[0]) ?? [];
  const add = next.length === 1 && next[0].op === "Add" ? next[0] : undefined;
  const biasName = add?.inputs.find((i) => i !== n.outputs[0]);
  const bias = biasName ? g.initializers.get(biasName) : undefined;
  const biasFits =
    !!bias &&
    bias.dtype === "float32" &&
    bias.data.length === m &&
    bias.dims.filter((d, i) => !(d === 1 && i < bias.dims.length - outDims.length)).join() === outDims.join();
  const finalOut = biasFits ? add!.outputs[0] : n.outputs[0];
  const split = outLetters.length > 1;
  const mmOut = biasFits || split ? g.uniqueName(`${scope}_out`) : n.outputs[0];
  nodes.push(node(n.name, "MatMul", [x, weight], [mmOut]));
  let y = mmOut;
  const removed: Node[] = [n];
  if (biasFits) {
    const flatBias =
      bias!.dims.length === 1
        ? biasName!
        : g.addInitializer(`${biasName}/sluice_einsum`, { ...bias!, dims: [m] });
    const biased = split ? g.uniqueName(`${add!.name}_out`) : finalOut;
    nodes.push(node(add!.name, "Add", [y, flatBias], [biased]));
    removed.push(add!);
    y = biased;
  }
  if (split) {
    const target = g.constInts([...free.map(() => 0), ...outDims], `${scope}/sluice_split_shape`);
    nodes.push(node(g.uniqueName(`${scope}/sluice_split`), "Reshape", [y, target], [finalOut]));
  }
  return { nodes, removed };
}

/** Batched product of two activations with one contracted and one free letter on each side. */
function batchedRewrite(g: Graph, n: Node, p: Parsed) {
  const [al, bl] = p.inputs;
  const batch = p.output.filter((c) => al.includes(c) && bl.includes(c));
  const contracted = al.filter((c) => bl.includes(c) && !p.output.includes(c));
  const aFree = al.filter((c) => !bl.includes(c));
  const bFree = bl.filter((c) => !al.includes(c));
  if (contracted.length !== 1 || aFree.length !== 1 || bFree.length !== 1) return undefined;
  if (al.length !== batch.length + 2 || bl.length !== batch.length + 2) return undefined;
  // M is the free letter that comes first in the output, N the other: out = batch.., M, N up to a transpose.
  const aFirst = p.output.indexOf(aFree[0]) < p.output.indexOf(bFree[0]);
  const [left, leftLetters, leftFree] = aFirst ? [n.inputs[0], al, aFree[0]] : [n.inputs[1], bl, bFree[0]];
  const [right, rightLetters, rightFree] = aFirst ? [n.inputs[1], bl, bFree[0]] : [n.inputs[0], al, aFree[0]];
  const scope = n.name;
  const nodes: Node[] = [];
  const arrange = (value: string, letters: string[], order: string[], tag: string) => {
    const perm = order.map((c) => letters.indexOf(c));
    if (isIdentity(perm)) return value;
    const out = g.uniqueName(`${scope}/sluice_${tag}`);
    nodes.push(node(out, "Transpose", [value], [out], { perm: { type: "ints", value: perm } }));
    return out;
  };
  const l = arrange(left, leftLetters, [...batch, leftFree, contracted[0]], "transpose_left");
  const r = arrange(right, rightLetters, [...batch, contracted[0], rightFree], "transpose_right");
  const productLetters = [...batch, leftFree, rightFree];
  const back = p.output.map((c) => productLetters.indexOf(c));
  const mmOut = isIdentity(back) ? n.outputs[0] : g.uniqueName(`${scope}_out`);
  nodes.push(node(n.name, "MatMul", [l, r], [mmOut]));
  if (!isIdentity(back))
    nodes.push(
      node(g.uniqueName(`${scope}/sluice_transpose_out`), "Transpose", [mmOut], [n.outputs[0]], {
        perm: { type: "ints", value: back },
      }),
    );
  return { nodes, removed: [n] };
}

/** Rewrites every Einsum this module understands (see above); the rest are returned by name. */
export function rewriteEinsums(g: Graph): EinsumRewrite {
  const result: EinsumRewrite = { rewritten: 0, left: [] };
  for (const n of [...g.nodes]) {
    if (n.op !== "Einsum" || (n.domain && n.domain !== "ai.onnx")) continue;
    const equation = attrOf<string>(n, "equation") ?? "";
    const parsed = n.inputs.length === 2 ? parseEquation(equation) : undefined;
    const consumers = g.consumers();
    const plan = !parsed
      ? undefined
      : g.initializers.has(n.inputs[1])
        ? denseRewrite(g, n, parsed, consumers)
        : g.initializers.has(n.inputs[0])
          ? undefined
          : batchedRewrite(g, n, parsed);
    if (!plan) {
      result.left.push({ node: n.name, equation });
      continue;
    }
    const at = g.nodes.indexOf(n);
    const removed = new Set(plan.removed);
    g.nodes = [...g.nodes.slice(0, at), ...plan.nodes, ...g.nodes.slice(at).filter((x) => !removed.has(x))];
    result.rewritten++;
  }
  if (result.rewritten > 0) g.toposort().cleanup();
  return result;
}
