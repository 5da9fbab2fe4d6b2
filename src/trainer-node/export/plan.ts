/**
 * What survives export, decided from the evaluation gates before any graph is touched:
 *
 * - every gated layer's weight is folded, W' = Diag(r) W Diag(c) and b' = b ⊙ r (stored [in, out]);
 * - a linear reads only inputs whose column gate is non-zero and computes only outputs whose row gate is;
 * - FFN neuron j stays iff up-row j and down-column j are both open. A neuron whose up-row is closed but whose
 *   down-column is open outputs act(0) for every token, a constant folded into the down bias;
 * - attention: a Q/K dimension stays iff its Q row and K row are open (otherwise its QKᵀ term is 0); a V
 *   dimension stays iff its V row and the matching output column are open; a head with no V dimension left
 *   contributes nothing and disappears with its Q/K dimensions;
 * - a block whose output layer has every row closed outputs zeros, so nothing before it in the block stays.
 *
 * The plan also yields the exact parameter and FLOP counts the report gives.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { toNumbers } from "../../core/onnx/tensor";
import type { AttentionBlock, EncoderAnalysis, FfnBlock, PathOp } from "../import/blocks";
import type { LinearLayer } from "../import/linears";

export interface LayerGates {
  row: ArrayLike<number>;
  col: ArrayLike<number>;
}

/** A linear layer with its gates folded in: weight row-major [in, out], bias [out]. */
export interface FoldedLinear {
  layer: LinearLayer;
  weight: Float32Array;
  bias: Float32Array;
}

export interface LinearPlan {
  folded: FoldedLinear;
  /** Input features read (original indices, ascending). */
  read: number[];
  /** Output features computed (original indices, ascending). */
  out: number[];
}

export interface AttentionPlan {
  block: AttentionBlock;
  q: LinearPlan;
  k: LinearPlan;
  v: LinearPlan;
  o: LinearPlan;
  /** Per head: kept Q/K dimensions (indices into the projection's outputs). */
  qk: number[][];
  /** Per head: kept V dimensions (also the output layer's kept inputs). */
  vDims: number[][];
}

export interface FfnPlan {
  block: FfnBlock;
  up: LinearPlan;
  down: LinearPlan;
  neurons: number[];
  /** act(0)-contributions of neurons removed for a closed up-row, added to the down bias ([down out]). */
  extraBias?: Float32Array;
}

export interface ExportPlan {
  attention: AttentionPlan[];
  ffn: FfnPlan[];
  /** Gated layers outside any recognised block: folded, input-sliced, written back to full width. */
  generic: LinearPlan[];
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const openIndices = (gate: ArrayLike<number>) => range(gate.length).filter((i) => gate[i] !== 0);

/** Reads a linear's weight as [in, out] and bias, with Gemm alpha/beta applied and the gates folded in. */
export function foldLinear(g: Graph, layer: LinearLayer, gates?: LayerGates): FoldedLinear {
  const w = g.initializers.get(layer.weight);
  if (!w) throw new Error(`weight ${layer.weight} of ${layer.node} is not an initializer`);
  const src = w.data as Float32Array;
  const { inFeatures: nIn, outFeatures: nOut } = layer;
  const node = g.nodes.find((n) => n.name === layer.node);
  const alpha = layer.op === "Gemm" ? ((node?.attrs.alpha?.value as number | undefined) ?? 1) : 1;
  const beta = layer.op === "Gemm" ? ((node?.attrs.beta?.value as number | undefined) ?? 1) : 1;
  const row = gates?.row;
  const col = gates?.col;
  if (row && row.length !== nOut)
    throw new Error(`${layer.node}: row gate has ${row.length} entries, layer has ${nOut} outputs`);
  if (col && col.length !== nIn)
    throw new Error(`${layer.node}: column gate has ${col.length} entries, layer has ${nIn} inputs`);
  // Folded lazily: the trainer's removal counting plans exports often and never reads the weights.
  let weight: Float32Array | undefined;
  const foldWeight = () => {
    const w = new Float32Array(nIn * nOut);
    for (let i = 0; i < nIn; i++) {
      const c = (col ? col[i] : 1) * alpha;
      for (let o = 0; o < nOut; o++) {
        const v = layer.weightTransposed ? src[o * nIn + i] : src[i * nOut + o];
        w[i * nOut + o] = v * c * (row ? row[o] : 1);
      }
    }
    return w;
  };
  const bias = new Float32Array(nOut);
  if (layer.bias) {
    const b = g.initializers.get(layer.bias)!.data as Float32Array;
    // A Gemm's C may broadcast a single value.
    for (let o = 0; o < nOut; o++) bias[o] = (b.length === 1 ? b[0] : b[o]) * beta * (row ? row[o] : 1);
  }
  return {
    layer,
    bias,
    get weight() {
      weight ??= foldWeight();
      return weight;
    },
  };
}

function linearPlan(g: Graph, layer: LinearLayer, gates: LayerGates | undefined): LinearPlan {
  const folded = foldLinear(g, layer, gates);
  return {
    folded,
    read: gates ? openIndices(gates.col) : range(layer.inFeatures),
    out: gates ? openIndices(gates.row) : range(layer.outFeatures),
  };
}

/** The value of an elementwise chain at input 0 (what a neuron with a closed up-row emits), if computable. */
export function chainAtZero(g: Graph, chain: PathOp[], start: string): number | undefined {
  const values = new Map<string, number>([[start, 0]]);
  const get = (name: string): number | undefined => {
    if (values.has(name)) return values.get(name);
    const t = g.initializers.get(name);
    return t && t.data.length === 1 ? toNumbers(t)[0] : undefined;
  };
  for (const { node } of chain) {
    const args = node.inputs.map(get);
    if (args.some((a) => a === undefined)) return undefined;
    const v = scalarOp(node, args as number[]);
    if (v === undefined || !Number.isFinite(v)) return undefined;
    values.set(node.outputs[0], Math.fround(v));
  }
  return values.get(chain.at(-1)?.node.outputs[0] ?? start);
}

function scalarOp(node: Node, [a, b]: number[]): number | undefined {
  const alpha = node.attrs.alpha?.value as number | undefined;
  switch (node.op) {
    case "Add":
      return a + b;
    case "Sub":
      return a - b;
    case "Mul":
      return a * b;
    case "Div":
      return a / b;
    case "Pow":
      return a ** b;
    case "Identity":
      return a;
    case "Neg":
      return -a;
    case "Abs":
      return Math.abs(a);
    case "Relu":
      return Math.max(a, 0);
    case "Tanh":
      return Math.tanh(a);
    case "Sigmoid":
      return 1 / (1 + Math.exp(-a));
    case "Exp":
      return Math.exp(a);
    case "Sqrt":
      return Math.sqrt(a);
    case "Softplus":
      return Math.log1p(Math.exp(a));
    case "LeakyRelu":
      return a >= 0 ? a : (alpha ?? 0.01) * a;
    case "Elu":
      return a >= 0 ? a : (alpha ?? 1) * (Math.exp(a) - 1);
    // Only needed at 0 here; erf(0) = 0 exactly, and GELU(0) = 0 for both of its forms.
    case "Erf":
      return a === 0 ? 0 : undefined;
    case "Gelu":
      return a === 0 ? 0 : undefined;
    default:
      return undefined;
  }
}

function attentionPlan(g: Graph, block: AttentionBlock, gates: Map<string, LayerGates>): AttentionPlan {
  const q = linearPlan(g, block.q, gates.get(block.q.node));
  const k = linearPlan(g, block.k, gates.get(block.k.node));
  const v = linearPlan(g, block.v, gates.get(block.v.node));
  const o = linearPlan(g, block.o, gates.get(block.o.node));
  const qRows = new Set(q.out);
  const kRows = new Set(k.out);
  const vRows = new Set(v.out);
  // An output layer whose rows are all closed writes zeros: then nothing upstream in the block matters.
  const oCols = new Set(o.out.length === 0 ? [] : o.read);
  const qk: number[][] = [];
  const vDims: number[][] = [];
  for (let h = 0; h < block.heads; h++) {
    const dims = range(block.headDim).map((j) => h * block.headDim + j);
    const vh = dims.filter((j) => vRows.has(j) && oCols.has(j));
    vDims.push(vh);
    qk.push(vh.length === 0 ? [] : dims.filter((j) => qRows.has(j) && kRows.has(j)));
  }
  // What the projections and the output layer really compute is decided per head above.
  const flatQk = qk.flat();
  const flatV = vDims.flat();
  return {
    block,
    q: { ...q, out: flatQk },
    k: { ...k, out: flatQk },
    v: { ...v, out: flatV },
    o: { ...o, read: flatV },
    qk,
    vDims,
  };
}

function ffnPlan(g: Graph, block: FfnBlock, gates: Map<string, LayerGates>): FfnPlan {
  const up = linearPlan(g, block.up, gates.get(block.up.node));
  const down = linearPlan(g, block.down, gates.get(block.down.node));
  const upRows = new Set(up.out);
  const downCols = new Set(down.out.length === 0 ? [] : down.read);
  const f0 = chainAtZero(g, block.chain, block.up.output);
  const neurons: number[] = [];
  let extraBias: Float32Array | undefined;
  const nOut = block.down.outFeatures;
  for (let j = 0; j < block.up.outFeatures; j++) {
    if (!downCols.has(j)) continue;
    if (upRows.has(j) || f0 === undefined) {
      neurons.push(j);
      continue;
    }
    // Closed up-row, open down-column: the neuron emits act(0) for every token.
    if (f0 !== 0) {
      extraBias ??= new Float32Array(nOut);
      for (let o = 0; o < nOut; o++) extraBias[o] += f0 * down.folded.weight[j * nOut + o];
    }
  }
  return {
    block,
    up: { ...up, out: neurons },
    down: { ...down, read: neurons },
    neurons,
    extraBias,
  };
}

/**
 * What to do with closed features that cannot propagate (residual-stream columns read by Q/K/V/FFN-in, rows
 * written by the attention output / FFN-out):
 * - `gather`: read kept inputs through a Gather and write back through Concat+Gather — fewest parameters;
 * - `zeros`: keep them as zero rows/columns of the folded weight — no data movement, the MACs stay;
 * - `auto` (default): per layer, whichever costs less. onnxruntime's CPU Gather on the last axis copies element
 *   by element, measured at ~10 ns per element against ~60 GFLOP/s for MatMul on this class of CPU, so one
 *   gathered element costs about as much as `gatherCost` (default 500) FLOPs.
 */
export type ResidualPolicy = "gather" | "zeros" | "auto";

export interface PlanOptions {
  residual?: ResidualPolicy;
  gatherCost?: number;
}

export const GATHER_COST_FLOPS = 500;

const isAll = (idx: number[], n: number) => idx.length === n;

/** Applies the policy to a linear's input side (columns it reads from the residual stream). */
function residualRead(p: LinearPlan, o: Required<PlanOptions>): LinearPlan {
  const nIn = p.folded.layer.inFeatures;
  if (p.read.length === 0 || isAll(p.read, nIn) || p.out.length === 0) return p;
  const closed = nIn - p.read.length;
  const gather =
    o.residual === "gather" ||
    (o.residual === "auto" && o.gatherCost * p.read.length < 2 * closed * p.out.length);
  return gather ? p : { ...p, read: range(nIn) };
}

/** Applies the policy to a linear's output side (rows it writes back into the residual stream). */
function residualWrite(p: LinearPlan, o: Required<PlanOptions>): LinearPlan {
  const nOut = p.folded.layer.outFeatures;
  if (p.out.length === 0 || isAll(p.out, nOut)) return p;
  const closed = nOut - p.out.length;
  const writeBack =
    o.residual === "gather" || (o.residual === "auto" && o.gatherCost * nOut < 2 * p.read.length * closed);
  return writeBack ? p : { ...p, out: range(nOut) };
}

/** Decides, from the gates, what every gated layer keeps. `gates` maps gated-layer node names to gates. */
export function planExport(
  g: Graph,
  analysis: EncoderAnalysis,
  gates: Map<string, LayerGates>,
  options: PlanOptions = {},
): ExportPlan {
  const o = { residual: options.residual ?? "auto", gatherCost: options.gatherCost ?? GATHER_COST_FLOPS };
  const plan = planStructure(g, analysis, gates);
  for (const a of plan.attention) {
    a.o = residualWrite(a.o, o);
    a.q = residualRead(a.q, o);
    a.k = residualRead(a.k, o);
    a.v = residualRead(a.v, o);
  }
  for (const f of plan.ffn) {
    f.down = residualWrite(f.down, o);
    f.up = residualRead(f.up, o);
  }
  plan.generic = plan.generic.map((p) => residualRead(residualWrite(p, o), o));
  checkSharedPlans(plan);
  return plan;
}

/**
 * Every use of a shared weight (ALBERT) must keep the same rows and columns, so that export can write one
 * pruned copy for all of them: true by construction when its tied gates sit in equally shared blocks (import
 * checks that); a plan that breaks it is a bug, not a model to export.
 */
function checkSharedPlans(plan: ExportPlan): void {
  const first = new Map<string, LinearPlan>();
  for (const { plan: p } of plannedLinears(plan)) {
    const w = p.folded.layer.weight;
    const q = first.get(w);
    if (!q) {
      first.set(w, p);
      continue;
    }
    if (q.read.join() !== p.read.join() || q.out.join() !== p.out.join())
      throw new Error(
        `shared weight ${w}: ${q.folded.layer.node} keeps ${q.read.length}x${q.out.length} and ${p.folded.layer.node} ${p.read.length}x${p.out.length}; a shared weight must be pruned alike at every use`,
      );
  }
}

function planStructure(g: Graph, analysis: EncoderAnalysis, gates: Map<string, LayerGates>): ExportPlan {
  const gated = (l: LinearLayer) => gates.has(l.node);
  const attention = analysis.attention
    .filter((b) => [b.q, b.k, b.v, b.o].some(gated))
    .map((b) => attentionPlan(g, b, gates));
  const ffn = analysis.ffn.filter((b) => gated(b.up) || gated(b.down)).map((b) => ffnPlan(g, b, gates));
  const inBlocks = new Set([
    ...attention.flatMap((a) => [a.q, a.k, a.v, a.o].map((p) => p.folded.layer.node)),
    ...ffn.flatMap((f) => [f.up.folded.layer.node, f.down.folded.layer.node]),
  ]);
  const generic = analysis.linears
    .filter((l) => gated(l) && !inBlocks.has(l.node))
    .map((l) => linearPlan(g, l, gates.get(l.node)));
  return { attention, ffn, generic };
}

/** Weight elements a planned linear keeps (read × out; zero when it is not computed at all). */
export const keptWeights = (p: LinearPlan) => p.read.length * p.out.length;

/** Every planned linear with its role, for counting and reporting. */
export function plannedLinears(plan: ExportPlan): { role: string; plan: LinearPlan }[] {
  return [
    ...plan.attention.flatMap((a) => [
      { role: "attention.q", plan: a.q },
      { role: "attention.k", plan: a.k },
      { role: "attention.v", plan: a.v },
      { role: "attention.output", plan: a.o },
    ]),
    ...plan.ffn.flatMap((f) => [
      { role: "ffn.up", plan: f.up },
      { role: "ffn.down", plan: f.down },
    ]),
    ...plan.generic.map((p) => ({ role: "linear", plan: p })),
  ];
}
