/**
 * Gradient rules, one per ONNX op (in the style of tinygrad's gradient.py and ONNX Runtime's gradient
 * builders). A rule receives the forward node and the upstream gradients of its outputs, emits the nodes that
 * compute the gradients of the inputs that need one (`needs[i]`), and returns their names. Frozen inputs are
 * never differentiated: a rule only builds what `needs` asks for.
 *
 * Notation: x = node inputs, y = node outputs, dy = gradients of the outputs, e = the emitter.
 */
import { attrOf, type Node } from "../../core/onnx/graph";
import { type Dim, isFloat, normAxis } from "../../core/onnx/shape-inference";
import { ONNX_DTYPE, tensor } from "../../core/onnx/tensor";
import type { Emitter } from "./emit";

export interface GradArgs {
  e: Emitter;
  node: Node;
  x: string[];
  y: string[];
  dy: (string | undefined)[];
  needs: boolean[];
}

export type Grads = (string | undefined)[];
export type GradRule = (a: GradArgs) => Grads;

/** Ops whose outputs carry no gradient (integer/shape arithmetic, comparisons, constants). */
export const NON_DIFFERENTIABLE = new Set([
  "Shape",
  "Size",
  "Constant",
  "ConstantOfShape",
  "Range",
  "NonZero",
  "Equal",
  "Less",
  "Greater",
  "LessOrEqual",
  "GreaterOrEqual",
  "Not",
  "And",
  "Or",
  "Xor",
  "ArgMax",
  "ArgMin",
  "Floor",
  "Ceil",
  "Round",
  "Sign",
  "OneHot",
  "RandomNormal",
  "RandomNormalLike",
  "RandomUniform",
  "RandomUniformLike",
  "Bernoulli",
]);

// ---- helpers shared by the rules ----

const outShape = (a: GradArgs) => a.e.shape(a.y[0]);
/** Reduce a gradient shaped like the output (broadcast) to input i. */
const toInput = (a: GradArgs, g: string, i: number, shape: Dim[] | undefined = outShape(a)) =>
  a.e.reduceToShape(g, shape, a.x[i]);
const scalarLike = (a: GradArgs, v: number, like = a.y[0]) => a.e.scalar(v, a.e.dtype(like));
const only = (i: number, g: string | undefined, n: number): Grads => {
  const out: Grads = new Array(n).fill(undefined);
  out[i] = g;
  return out;
};
/** Static scalar value of an input (a constant exponent, say), if known. */
function constScalar(a: GradArgs, i: number): number | undefined {
  const v = a.e.value(a.x[i]);
  if (!v || new Set(v).size !== 1 || typeof v[0] !== "number") return undefined;
  return v[0];
}
function constInts(a: GradArgs, i: number): number[] | undefined {
  if (!a.x[i]) return undefined;
  const v = a.e.value(a.x[i]);
  return v?.every((d) => typeof d === "number") ? (v as number[]) : undefined;
}
/** Axes given as attribute (older opsets) or second input. */
function axesArg(a: GradArgs): number[] | undefined {
  const attr = attrOf<number[]>(a.node, "axes");
  if (attr) return attr;
  if (!a.x[1]) return undefined;
  const v = constInts(a, 1);
  if (!v) throw new Error(`autodiff: ${a.node.op} '${a.node.name}' has run-time axes; fold constants first`);
  return v;
}
/** dGelu/dx = Φ(x) + x·φ(x) (exact, erf form): 0.5·(1 + erf(x/√2)) + x·exp(-x²/2)/√(2π). */
function geluSlope(a: GradArgs): string {
  const { e } = a;
  const x = a.x[0];
  const cdf = e.mul(
    e.op("Add", [e.op("Erf", [e.mul(x, scalarLike(a, Math.SQRT1_2))]), scalarLike(a, 1)]),
    scalarLike(a, 0.5),
  );
  const pdf = e.mul(
    e.op("Exp", [e.mul(e.mul(x, x), scalarLike(a, -0.5))]),
    scalarLike(a, 1 / Math.sqrt(2 * Math.PI)),
  );
  return e.op("Add", [cdf, e.mul(x, pdf)]);
}
/**
 * Slope of the tanh approximation y = 0.5·x·(1 + t), t = tanh(c·(x + k·x³)), c = √(2/π), k = 0.044715:
 * 0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3k·x²).
 */
function geluTanhSlope(a: GradArgs): string {
  const { e } = a;
  const x = a.x[0];
  const [c, k] = [Math.sqrt(2 / Math.PI), 0.044715];
  const x2 = e.mul(x, x);
  const t = e.op("Tanh", [
    e.mul(e.mul(x, e.op("Add", [e.mul(x2, scalarLike(a, k)), scalarLike(a, 1)])), scalarLike(a, c)),
  ]);
  const half = e.mul(e.op("Add", [t, scalarLike(a, 1)]), scalarLike(a, 0.5));
  const du = e.mul(e.op("Add", [e.mul(x2, scalarLike(a, 3 * k)), scalarLike(a, 1)]), scalarLike(a, 0.5 * c));
  return e.op("Add", [half, e.mul(e.mul(x, e.sub(scalarLike(a, 1), e.mul(t, t))), du)]);
}
/** MatMul-style transpose of the last two axes. */
const swapLast = (rank: number) => {
  const p = Array.from({ length: rank }, (_, i) => i);
  [p[rank - 2], p[rank - 1]] = [p[rank - 1], p[rank - 2]];
  return p;
};
/** Passes the gradient back unchanged through a reshape-like op. */
const reshapeBack: GradRule = (a) => only(0, a.e.reshapeLike(a.dy[0]!, a.x[0]), a.x.length);

// ---- the table ----

export const GRADIENTS: Record<string, GradRule> = {
  Identity: (a) => [a.dy[0]],

  Dropout: (a) => {
    const training = a.x[2] ? constScalar(a, 2) : 0;
    if (!training) return [a.dy[0]];
    const ratio = a.x[1] ? constScalar(a, 1) : 0.5;
    if (ratio === undefined) throw new Error(`autodiff: Dropout '${a.node.name}' needs a constant ratio`);
    if (!a.node.outputs[1]) a.node.outputs[1] = a.e.fresh("dropout_mask");
    const mask = a.e.op("Cast", [a.node.outputs[1]], { to: ONNX_DTYPE[a.e.dtype(a.x[0])] });
    return [a.e.mul(a.e.mul(a.dy[0]!, mask), scalarLike(a, 1 / (1 - ratio)))];
  },

  Cast: (a) => {
    const from = a.e.dtype(a.x[0]);
    return [isFloat(from) ? a.e.op("Cast", [a.dy[0]!], { to: ONNX_DTYPE[from] }) : undefined];
  },

  Neg: (a) => [a.e.neg(a.dy[0]!)],

  Add: (a) => [
    a.needs[0] ? toInput(a, a.dy[0]!, 0) : undefined,
    a.needs[1] ? toInput(a, a.dy[0]!, 1) : undefined,
  ],

  Sum: (a) => a.x.map((_, i) => (a.needs[i] ? toInput(a, a.dy[0]!, i) : undefined)),

  Sub: (a) => [
    a.needs[0] ? toInput(a, a.dy[0]!, 0) : undefined,
    a.needs[1] ? toInput(a, a.e.neg(a.dy[0]!), 1) : undefined,
  ],

  Mul: (a) => [
    a.needs[0] ? toInput(a, a.e.mul(a.dy[0]!, a.x[1]), 0) : undefined,
    a.needs[1] ? toInput(a, a.e.mul(a.dy[0]!, a.x[0]), 1) : undefined,
  ],

  // y = a / b: da = dy / b, db = -dy * y / b
  Div: (a) => {
    const { e, dy, x, y } = a;
    const dyOverB = e.div(dy[0]!, x[1]);
    return [
      a.needs[0] ? toInput(a, dyOverB, 0) : undefined,
      a.needs[1] ? toInput(a, e.neg(e.mul(dyOverB, y[0])), 1) : undefined,
    ];
  },

  // y = x^p: dx = dy * p * x^(p-1) (special-cased for the constant exponents exporters emit), dp = dy * y * ln x
  Pow: (a) => {
    const { e, dy, x, y } = a;
    const p = constScalar(a, 1);
    let dx: string | undefined;
    if (a.needs[0]) {
      if (p === 2) dx = e.mul(dy[0]!, e.mul(x[0], scalarLike(a, 2)));
      else if (p === 1) dx = dy[0]!;
      else if (p === 0.5) dx = e.div(dy[0]!, e.mul(y[0], scalarLike(a, 2)));
      else if (p !== undefined)
        dx = e.mul(dy[0]!, e.mul(e.op("Pow", [x[0], scalarLike(a, p - 1)]), scalarLike(a, p)));
      else dx = e.mul(dy[0]!, e.mul(e.op("Pow", [x[0], e.sub(x[1], scalarLike(a, 1, x[1]))]), x[1]));
      dx = toInput(a, dx, 0);
    }
    const dp = a.needs[1] ? toInput(a, e.mul(dy[0]!, e.mul(y[0], e.op("Log", [x[0]]))), 1) : undefined;
    return [dx, dp];
  },

  Sqrt: (a) => [a.e.div(a.dy[0]!, a.e.mul(a.y[0], scalarLike(a, 2)))],

  Exp: (a) => [a.e.mul(a.dy[0]!, a.y[0])],

  Log: (a) => [a.e.div(a.dy[0]!, a.x[0])],

  Abs: (a) => [a.e.mul(a.dy[0]!, a.e.op("Sign", [a.x[0]]))],

  Reciprocal: (a) => [a.e.neg(a.e.mul(a.dy[0]!, a.e.mul(a.y[0], a.y[0])))],

  // d erf(x)/dx = 2/sqrt(pi) * exp(-x^2)
  Erf: (a) => {
    const { e, x } = a;
    const bump = e.op("Exp", [e.neg(e.mul(x[0], x[0]))]);
    return [e.mul(a.dy[0]!, e.mul(bump, scalarLike(a, 2 / Math.sqrt(Math.PI))))];
  },

  // Gelu (opset 20), approximate "none" (erf) or "tanh"
  Gelu: (a) => [
    a.e.mul(a.dy[0]!, attrOf<string>(a.node, "approximate") === "tanh" ? geluTanhSlope(a) : geluSlope(a)),
  ],

  Tanh: (a) => [a.e.mul(a.dy[0]!, a.e.sub(scalarLike(a, 1), a.e.mul(a.y[0], a.y[0])))],

  Sigmoid: (a) => [a.e.mul(a.dy[0]!, a.e.mul(a.y[0], a.e.sub(scalarLike(a, 1), a.y[0])))],

  Relu: (a) => [a.e.op("Where", [a.e.op("Greater", [a.x[0], scalarLike(a, 0)]), a.dy[0]!, scalarLike(a, 0)])],

  // Passes the gradient where min <= x <= max (torch.clamp's convention at the bounds).
  Clip: (a) => {
    const { e, x } = a;
    let inside: string | undefined;
    if (x[1]) inside = e.op("GreaterOrEqual", [x[0], x[1]]);
    if (x[2]) {
      const below = e.op("LessOrEqual", [x[0], x[2]]);
      inside = inside ? e.op("And", [inside, below]) : below;
    }
    return only(0, inside ? e.op("Where", [inside, a.dy[0]!, scalarLike(a, 0)]) : a.dy[0], x.length);
  },

  Where: (a) => {
    const { e, x, dy } = a;
    const zero = scalarLike(a, 0);
    return [
      undefined,
      a.needs[1] ? toInput(a, e.op("Where", [x[0], dy[0]!, zero]), 1) : undefined,
      a.needs[2] ? toInput(a, e.op("Where", [x[0], zero, dy[0]!]), 2) : undefined,
    ];
  },

  // dx = y * (dy - sum(dy * y)) over the softmax axis
  Softmax: (a) => {
    const { e, y } = a;
    const axis = normAxis(attrOf<number>(a.node, "axis") ?? -1, e.rank(y[0]));
    const t = e.mul(a.dy[0]!, y[0]);
    return [e.sub(t, e.mul(y[0], e.reduceSum(t, [axis], true)))];
  },

  // dx = dy - softmax(x) * sum(dy)
  LogSoftmax: (a) => {
    const { e, y } = a;
    const axis = normAxis(attrOf<number>(a.node, "axis") ?? -1, e.rank(y[0]));
    return [e.sub(a.dy[0]!, e.mul(e.op("Exp", [y[0]]), e.reduceSum(a.dy[0]!, [axis], true)))];
  },

  /**
   * y = xhat * scale + b with xhat = (x - mean) * invstd over axes [axis, rank). The node is asked for its
   * Mean/InvStdDev outputs so nothing is recomputed:
   * dx = invstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * scale; dscale = sum(dy * xhat); db = sum(dy).
   */
  LayerNormalization: (a) => {
    const { e, node, x } = a;
    if (a.dy[1] || a.dy[2])
      throw new Error(`autodiff: gradient through LayerNormalization mean/invstd outputs`);
    const rank = e.rank(x[0]);
    const axis = normAxis(attrOf<number>(node, "axis") ?? -1, rank);
    const normAxes = Array.from({ length: rank - axis }, (_, i) => axis + i);
    const batchAxes = Array.from({ length: axis }, (_, i) => i);
    const stat = e.shape(x[0])!.map((d, i) => (i >= axis ? 1 : d));
    for (const i of [1, 2]) {
      if (!node.outputs[i])
        node.outputs[i] = e.setInfo(e.fresh(i === 1 ? "ln_mean" : "ln_invstd"), {
          dtype: "float32",
          shape: stat,
        });
    }
    while (node.outputs.length < 3) node.outputs.push(e.fresh("ln_stat"));
    const [mean, invstd] = [node.outputs[1], node.outputs[2]];
    const dy = a.dy[0]!;
    const xhat = e.mul(e.sub(x[0], mean), invstd);
    const sumBatch = (t: string, i: number) => {
      const reduced = batchAxes.length ? e.reduceSum(t, batchAxes, false) : t;
      return e.reshapeLike(reduced, x[i]);
    };
    let dx: string | undefined;
    if (a.needs[0]) {
      const g = e.mul(dy, x[1]);
      const m1 = e.reduceMean(g, normAxes, true);
      const m2 = e.reduceMean(e.mul(g, xhat), normAxes, true);
      dx = e.mul(e.sub(e.sub(g, m1), e.mul(xhat, m2)), invstd);
    }
    return [
      dx,
      a.needs[1] ? sumBatch(e.mul(dy, xhat), 1) : undefined,
      a.needs[2] ? sumBatch(dy, 2) : undefined,
    ];
  },

  /**
   * loss_i = -w_i log softmax(scores)_i[label_i] (w_i: class weight, 0 for ignore_index), reduced as asked;
   * d loss_i / d scores_i = w_i (softmax_i - onehot_i). The node is asked for its log_prob output.
   */
  SoftmaxCrossEntropyLoss: (a) => {
    const { e, node, x } = a;
    if (a.dy[1]) throw new Error(`autodiff: gradient through SoftmaxCrossEntropyLoss log_prob output`);
    if (!a.needs[0]) return [undefined, undefined, undefined];
    const reduction = attrOf<string>(node, "reduction") ?? "mean";
    const ignore = attrOf<number>(node, "ignore_index");
    const dtype = e.dtype(x[0]);
    if (!node.outputs[1]) node.outputs[1] = e.setInfo(e.fresh("log_prob"), { dtype, shape: e.shape(x[0]) });
    const c = e.shape(x[0])?.[1];
    const depth =
      typeof c === "number" ? e.ints([c]) : e.op("Gather", [e.shapeOf(x[0]), e.ints([1])], { axis: 0 });
    let labels = x[1];
    let weight: string | undefined;
    if (ignore !== undefined) {
      const keep = e.op("Not", [
        e.op("Equal", [x[1], e.constant(tensor(e.dtype(x[1]), [], [ignore]), "ignore")]),
      ]);
      labels = e.op("Where", [keep, x[1], e.constant(tensor(e.dtype(x[1]), [], [0]), "zero_label")]);
      weight = e.op("Cast", [keep], { to: ONNX_DTYPE[dtype] });
    }
    if (x[2]) {
      const cw = e.op("Gather", [x[2], labels], { axis: 0 });
      weight = weight ? e.mul(weight, cw) : cw;
    }
    const onehot = e.op("OneHot", [labels, depth, e.constant(tensor(dtype, [2], [0, 1]), "onehot_values")], {
      axis: 1,
    });
    let g = e.sub(e.op("Exp", [node.outputs[1]]), onehot); // [N, C, ...]
    let scale = a.dy[0]!;
    if (reduction === "mean") {
      const total = weight
        ? e.op("ReduceSum", [weight], { keepdims: 0 })
        : e.op("Cast", [e.op("Size", [x[1]])], { to: ONNX_DTYPE[dtype] });
      scale = e.div(scale, total);
    }
    if (reduction === "none") scale = e.unsqueeze(scale, [1]);
    if (weight) g = e.mul(g, e.unsqueeze(weight, [1]));
    return [e.mul(g, scale), undefined, undefined];
  },

  ReduceSum: (a) => reduceBack(a, false),
  ReduceMean: (a) => reduceBack(a, true),

  Transpose: (a) => {
    const rank = a.e.rank(a.x[0]);
    const perm = attrOf<number[]>(a.node, "perm") ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
    const inverse = new Array<number>(rank);
    perm.forEach((p, i) => {
      inverse[p] = i;
    });
    return [a.e.transpose(a.dy[0]!, inverse)];
  },

  Reshape: reshapeBack,
  Flatten: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,

  Expand: (a) => only(0, toInput(a, a.dy[0]!, 0), 2),

  Concat: (a) => {
    const { e, x } = a;
    const rank = e.rank(a.y[0]);
    const axis = normAxis(attrOf<number>(a.node, "axis") ?? 0, rank);
    const sizes = x.map((xi) => e.shape(xi)?.[axis]);
    const sizesName = sizes.every((s) => typeof s === "number")
      ? e.ints(sizes as number[])
      : e.op(
          "Concat",
          x.map((xi) => e.op("Gather", [e.shapeOf(xi), e.ints([axis])], { axis: 0 })),
          { axis: 0 },
        );
    const parts = e.ops("Split", [a.dy[0]!, sizesName], { axis }, x.length);
    return parts.map((p, i) => (a.needs[i] ? p : undefined));
  },

  Split: (a) => {
    const { e, y } = a;
    const axis = normAxis(attrOf<number>(a.node, "axis") ?? 0, e.rank(a.x[0]));
    const parts = y.map((yi, i) => a.dy[i] ?? e.zerosLike(yi));
    return only(0, e.op("Concat", parts, { axis }), a.x.length);
  },

  Slice: (a) => sliceBack(a),

  Gather: (a) => gatherBack(a),

  MatMul: (a) => matmulBack(a),

  Gemm: (a) => {
    const { e, node, x } = a;
    const dy = a.dy[0]!;
    const alpha = attrOf<number>(node, "alpha") ?? 1;
    const beta = attrOf<number>(node, "beta") ?? 1;
    const tA = attrOf<number>(node, "transA") ?? 0;
    const tB = attrOf<number>(node, "transB") ?? 0;
    const gemm = (p: string, q: string, ta: number, tb: number, scale: number) =>
      e.op("Gemm", [p, q], { transA: ta, transB: tb, alpha: { type: "float", value: scale } });
    let dA: string | undefined;
    let dB: string | undefined;
    if (a.needs[0]) dA = tA ? gemm(x[1], dy, tB, 1, alpha) : gemm(dy, x[1], 0, 1 - tB, alpha);
    if (a.needs[1]) dB = tB ? gemm(dy, x[0], 1, tA, alpha) : gemm(x[0], dy, 1 - tA, 0, alpha);
    let dC: string | undefined;
    if (a.needs[2]) {
      const scaled = beta === 1 ? dy : e.mul(dy, scalarLike(a, beta));
      dC = toInput(a, scaled, 2);
    }
    return [dA, dB, dC];
  },
};

function reduceBack(a: GradArgs, mean: boolean): Grads {
  const { e, node, x } = a;
  const rank = e.rank(x[0]);
  let axes = axesArg(a);
  const noop = (attrOf<number>(node, "noop_with_empty_axes") ?? 0) === 1;
  if ((!axes || axes.length === 0) && noop) return only(0, a.dy[0], x.length);
  axes = axes?.length ? e.axes(axes, rank) : Array.from({ length: rank }, (_, i) => i);
  const keep = (attrOf<number>(node, "keepdims") ?? 1) === 1;
  let g = keep ? a.dy[0]! : e.unsqueeze(a.dy[0]!, axes);
  if (mean) {
    const dims = axes.map((ax) => e.shape(x[0])![ax]);
    const count = dims.every((d) => typeof d === "number")
      ? scalarLike(
          a,
          (dims as number[]).reduce((p, q) => p * q, 1),
        )
      : e.op("Cast", [e.div(e.op("Size", [x[0]]), e.op("Size", [a.y[0]]))], {
          to: ONNX_DTYPE[e.dtype(x[0])],
        });
    g = e.div(g, count);
  }
  return only(0, e.op("Expand", [g, e.shapeOf(x[0])]), x.length);
}

/**
 * Slice's adjoint places dy back into zeros. With constant unit steps and a statically decided extent this is a
 * Pad; otherwise each sliced axis scatters its rows back by index (ScatterElements), which also covers
 * negative and strided slices with symbolic dims.
 */
function sliceBack(a: GradArgs): Grads {
  const { e, x } = a;
  const rank = e.rank(x[0]);
  const shape = e.shape(x[0])!;
  const starts = constInts(a, 1);
  const ends = constInts(a, 2);
  const axes = x[3] ? constInts(a, 3) : starts?.map((_, i) => i);
  const steps = x[4] ? constInts(a, 4) : starts?.map(() => 1);
  const dy = a.dy[0]!;
  if (starts && ends && axes && steps?.every((s) => s === 1)) {
    const pads = new Array<number>(2 * rank).fill(0);
    let ok = true;
    axes.forEach((axRaw, k) => {
      const ax = normAxis(axRaw, rank);
      const dim = shape[ax];
      const [s, en] = [starts[k], ends[k]];
      if (typeof dim === "number") {
        const begin = Math.min(Math.max(s < 0 ? s + dim : s, 0), dim);
        const end = Math.max(Math.min(en < 0 ? en + dim : en, dim), begin);
        pads[ax] = begin;
        pads[rank + ax] = dim - end;
      } else if (s >= 0 && en >= 2 ** 31 - 1) pads[ax] = s;
      else ok = false;
    });
    if (ok) return only(0, e.op("Pad", [dy, e.ints(pads)]), x.length);
  }
  // General path: per sliced axis, indices = Slice(Range(0, dim)) scattered into zeros along that axis.
  if (!x[1] || !x[2]) throw new Error(`autodiff: Slice '${a.node.name}' without starts/ends inputs`);
  const axesList = axes ?? (constInts(a, 3) as number[] | undefined);
  if (!axesList) throw new Error(`autodiff: Slice '${a.node.name}' has run-time axes`);
  let g = dy;
  const gShape = [...(e.shape(a.y[0]) ?? [])];
  axesList.forEach((axRaw, k) => {
    const ax = normAxis(axRaw, rank);
    const pick = (i: number) => (x[i] ? e.op("Slice", [x[i], e.ints([k]), e.ints([k + 1])]) : undefined);
    const dim = e.op("Gather", [e.shapeOf(x[0]), e.ints([ax])], { axis: 0 });
    const r = e.op("Range", [e.scalarInt(0), e.op("Squeeze", [dim, e.ints([0])]), e.scalarInt(1)]);
    const steps1 = pick(4) ?? e.ints([1]);
    const idx = e.op("Slice", [r, pick(1)!, pick(2)!, e.ints([0]), steps1]);
    const view = new Array<number>(rank).fill(1);
    view[ax] = -1;
    const idxFull = e.op("Expand", [e.op("Reshape", [idx, e.ints(view)]), e.shapeOf(g)]);
    // zeros shaped like g with axis `ax` restored to the input's length
    const mask = tensor(
      "bool",
      [rank],
      Array.from({ length: rank }, (_, i) => Number(i === ax)),
    );
    const zshape = e.op("Where", [e.constant(mask, "axis_mask"), e.shapeOf(x[0]), e.shapeOf(g)]);
    const zeros = e.op("ConstantOfShape", [zshape], { value: tensor(e.dtype(x[0]), [1], [0]) });
    g = e.op("ScatterElements", [zeros, idxFull, g], { axis: ax });
    gShape[ax] = shape[ax];
    e.setInfo(g, { dtype: e.dtype(x[0]), shape: [...gShape] });
  });
  return only(0, g, x.length);
}

/**
 * Gather's adjoint scatters-adds dy rows back: ScatterND(reduction=add) for axis 0 (embedding tables, any index
 * rank), ScatterElements(reduction=add) along other axes for scalar or 1-D indices (e.g. the CLS token).
 */
function gatherBack(a: GradArgs): Grads {
  const { e, x } = a;
  if (!a.needs[0]) return [undefined, undefined];
  const rank = e.rank(x[0]);
  const axis = normAxis(attrOf<number>(a.node, "axis") ?? 0, rank);
  const zeros = e.zerosLike(x[0]);
  const dy = a.dy[0]!;
  if (axis === 0) {
    const idx = e.unsqueeze(x[1], [-1]);
    return [e.op("ScatterND", [zeros, idx, dy], { reduction: "add" }), undefined];
  }
  const idxRank = e.rank(x[1]);
  if (idxRank > 1)
    throw new Error(`autodiff: Gather '${a.node.name}' on axis ${axis} with indices of rank ${idxRank}`);
  const updates = idxRank === 0 ? e.unsqueeze(dy, [axis]) : dy;
  const view = new Array<number>(rank).fill(1);
  view[axis] = -1;
  const idx = e.op("Expand", [e.op("Reshape", [x[1], e.ints(view)]), e.shapeOf(updates)]);
  return [e.op("ScatterElements", [zeros, idx, updates], { axis, reduction: "add" }), undefined];
}

/**
 * Y = A @ B with numpy batch broadcasting: dA = dY @ Bᵀ, dB = Aᵀ @ dY, each summed over the batch axes its
 * operand was broadcast along. For the common activation [.., M, K] × weight [K, N] case, dB is one 2-D Gemm
 * over the flattened rows instead of a batched product followed by a sum.
 */
function matmulBack(a: GradArgs): Grads {
  const { e, x, y } = a;
  const dy = a.dy[0]!;
  const [ra, rb] = [e.rank(x[0]), e.rank(x[1])];
  if (ra < 2 || rb < 2)
    throw new Error(`autodiff: MatMul '${a.node.name}' with a 1-D operand is not supported`);
  const yShape = e.shape(y[0])!;
  let dA: string | undefined;
  let dB: string | undefined;
  if (a.needs[0]) {
    const bt = e.transpose(x[1], swapLast(rb));
    const g = e.op("MatMul", [dy, bt]);
    const gShape = [...yShape.slice(0, -1), e.shape(x[0])![ra - 1]];
    dA = e.reduceToShape(g, gShape, x[0]);
  }
  if (a.needs[1]) {
    if (rb === 2 && ra > 2) {
      const a2 = e.op("Flatten", [x[0]], { axis: ra - 1 });
      const dy2 = e.op("Flatten", [dy], { axis: ra - 1 });
      dB = e.op("Gemm", [a2, dy2], { transA: 1 });
    } else {
      const at = e.transpose(x[0], swapLast(ra));
      const g = e.op("MatMul", [at, dy]);
      const gShape = [...yShape.slice(0, -2), e.shape(x[1])![rb - 2], yShape[yShape.length - 1]];
      dB = e.reduceToShape(g, gShape, x[1]);
    }
  }
  return [dA, dB];
}
