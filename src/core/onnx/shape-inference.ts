/**
 * Light static shape inference over the ops transformer encoders use (the symbolic-shape idea of
 * onnxruntime's symbolic_shape_infer.py, much smaller). Each value gets a dtype, a shape whose dims are numbers
 * or symbols, and, for small rank-0/1 tensors (shape arithmetic), its element values when they can be worked
 * out. Autodiff uses it to reduce broadcast gradients with static axes; constant folding uses the values.
 *
 * Hand-written because ORT's symbolic inference is Python-only and onnx's C++ inference is not exposed to JS.
 * Dims: a number, or a string symbol. Symbols from graph inputs keep their names ("batch"); products of them
 * are written in layout order ("batch*16", dim-product.ts), so a flatten and the reshape that restores it stay
 * exact; a dim nothing can name gets a fresh symbol starting with "?" that equals only itself.
 */
import { type Dim, inferredDim, productDim } from "./dim-product";
import { attrOf, type Graph, type Node } from "./graph";
import { DTYPE_OF_ONNX, type DType, type Tensor, toNumbers } from "./tensor";

export type { Dim } from "./dim-product";

export interface ValueShape {
  dtype?: DType;
  /** undefined: rank unknown. */
  shape?: Dim[];
  /** Element values of a small rank-0/1 tensor (numbers, or dim symbols for shape tensors). */
  value?: Dim[];
}

export type ShapeMap = Map<string, ValueShape>;

const MAX_TRACKED = 64;
const INT_TYPES = new Set<DType>(["int64", "int32", "int8", "uint8", "bool"]);

export const isFloat = (d: DType | undefined) => d === "float32" || d === "float64";
export const isStaticShape = (s: Dim[] | undefined): s is number[] =>
  !!s && s.every((d) => typeof d === "number");

let freshCounter = 0;
const fresh = (): string => `?${++freshCounter}`;

/** Element values of a tensor when it is small enough to track. */
export function trackedValue(t: Tensor): number[] | undefined {
  if (t.dims.length > 1 || t.data.length > MAX_TRACKED) return undefined;
  return toNumbers(t);
}

/** Normalises a possibly negative axis against a rank. */
export const normAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Numpy broadcasting of dims; symbols broadcast against 1 and against equal symbols. */
export function broadcastShapes(shapes: (Dim[] | undefined)[]): Dim[] | undefined {
  if (shapes.some((s) => !s)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const e = s![s!.length - rank + i] ?? 1;
      if (e === 1 || e === d) continue;
      if (d === 1) d = e;
      else if (typeof d === "string" && typeof e === "number") d = e;
      else if (typeof d === "string" && typeof e === "string") d = d.startsWith("?") ? e : d;
    }
    out.push(d);
  }
  return out;
}

function product(dims: Dim[]): Dim {
  return productDim(dims) ?? fresh();
}

/** Resolves a Reshape target (0 = copy, -1 = infer) against the input shape. */
function reshapeDims(input: Dim[] | undefined, target: Dim[], allowZero: boolean): Dim[] {
  const out = target.map((d, i) => (d === 0 && !allowZero ? (input?.[i] ?? fresh()) : d));
  const minus = out.indexOf(-1);
  if (minus < 0) return out;
  // The -1 dim is what is left of the input's factors once the other output dims are peeled off its front and
  // back in layout order (`batch*16` then 96, under [-1, 16, 96], is `batch`).
  out[minus] = (input && inferredDim(input, out.slice(0, minus), out.slice(minus + 1))) ?? fresh();
  return out;
}

type Get = (name: string) => ValueShape;

function elementwise(values: (Dim[] | undefined)[], f: (...xs: number[]) => number): Dim[] | undefined {
  if (values.some((v) => !v)) return undefined;
  const n = Math.max(...values.map((v) => v!.length));
  if (values.some((v) => v!.length !== n && v!.length !== 1)) return undefined;
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const xs = values.map((v) => v![v!.length === 1 ? 0 : i]);
    if (xs.every((x) => typeof x === "number")) out.push(f(...(xs as number[])));
    else if (f === MUL && productDim(xs) !== undefined) out.push(productDim(xs)!);
    else if (f === ADD && xs.includes(0)) out.push(xs.find((x) => x !== 0) ?? 0);
    else return undefined;
  }
  return out;
}
const MUL = (a: number, b: number) => a * b;
const ADD = (a: number, b: number) => a + b;

const BINARY: Record<string, (a: number, b: number) => number> = {
  Add: ADD,
  Sub: (a, b) => a - b,
  Mul: MUL,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
  Max: Math.max,
  Min: Math.min,
  Equal: (a, b) => Number(a === b),
  Less: (a, b) => Number(a < b),
  Greater: (a, b) => Number(a > b),
  LessOrEqual: (a, b) => Number(a <= b),
  GreaterOrEqual: (a, b) => Number(a >= b),
  And: (a, b) => Number(a && b),
  Or: (a, b) => Number(a || b),
  Mod: (a, b) => a % b,
};
const COMPARISONS = new Set([
  "Equal",
  "Less",
  "Greater",
  "LessOrEqual",
  "GreaterOrEqual",
  "And",
  "Or",
  "Xor",
]);

const UNARY: Record<string, ((a: number) => number) | null> = {
  Identity: (a) => a,
  Neg: (a) => -a,
  Abs: Math.abs,
  Sqrt: Math.sqrt,
  Reciprocal: (a) => 1 / a,
  Floor: Math.floor,
  Ceil: Math.ceil,
  Exp: Math.exp,
  Log: Math.log,
  Not: (a) => Number(!a),
  Sign: Math.sign,
  Relu: (a) => Math.max(a, 0),
  Erf: null,
  Tanh: Math.tanh,
  Sigmoid: (a) => 1 / (1 + Math.exp(-a)),
  Softmax: null,
  LogSoftmax: null,
  Clip: null,
  Gelu: null,
  Round: Math.round,
  Softplus: null,
  LeakyRelu: null,
  CumSum: null,
  Trilu: null,
};

const castValue = (v: number, to: DType) =>
  to === "bool" ? Number(v !== 0) : INT_TYPES.has(to) ? Math.trunc(v) : v;

/** Axes of a reduce/squeeze/unsqueeze node: from its attribute (old opsets) or its second input. */
function axesOf(node: Node, get: Get): number[] | undefined | null {
  const attr = attrOf<number[]>(node, "axes");
  if (attr) return attr;
  if (node.inputs[1]) {
    const v = get(node.inputs[1]).value;
    return v?.every((x) => typeof x === "number") ? (v as number[]) : null; // null: dynamic, unknown
  }
  return undefined; // absent: op default
}

/** Shape and value rules, one per op. Returns one ValueShape per output. */
function inferNode(node: Node, get: Get, opset: number): ValueShape[] {
  const x = node.inputs[0] ? get(node.inputs[0]) : {};
  const op = node.op;
  const same = (): ValueShape[] => [{ dtype: x.dtype, shape: x.shape }];

  if (op in BINARY || op === "Xor" || op === "Sum" || op === "Where") {
    const ins = node.inputs.map(get);
    const shape = broadcastShapes(ins.map((i) => i.shape));
    const dtype = COMPARISONS.has(op) ? "bool" : op === "Where" ? ins[1].dtype : ins[0].dtype;
    let value: Dim[] | undefined;
    if (op === "Where") value = elementwise(ins.map((i) => i.value) as Dim[][], (c, a, b) => (c ? a : b));
    else if (op === "Sum") value = undefined;
    else if (op === "Div" && dtype && INT_TYPES.has(dtype))
      value = elementwise([ins[0].value, ins[1].value], (a, b) => Math.trunc(a / b));
    else if (BINARY[op]) value = elementwise([ins[0].value, ins[1].value], BINARY[op]);
    return [{ dtype, shape, value }];
  }
  if (op in UNARY) {
    const f = UNARY[op];
    const out: ValueShape = { dtype: op === "Not" ? "bool" : x.dtype, shape: x.shape };
    if (f && x.value) out.value = elementwise([x.value], f);
    return [out];
  }
  switch (op) {
    case "Constant": {
      const a = node.attrs;
      let t: Tensor | undefined;
      if (a.value?.type === "tensor") t = a.value.value;
      if (t) return [{ dtype: t.dtype, shape: t.dims, value: trackedValue(t) }];
      if (a.value_int) return [{ dtype: "int64", shape: [], value: [a.value_int.value as number] }];
      if (a.value_ints) {
        const v = a.value_ints.value as number[];
        return [{ dtype: "int64", shape: [v.length], value: v }];
      }
      if (a.value_float) return [{ dtype: "float32", shape: [], value: [a.value_float.value as number] }];
      if (a.value_floats) {
        const v = a.value_floats.value as number[];
        return [{ dtype: "float32", shape: [v.length], value: v }];
      }
      return [{}];
    }
    case "Cast": {
      const to = DTYPE_OF_ONNX[attrOf<number>(node, "to") ?? 1];
      return [
        {
          dtype: to,
          shape: x.shape,
          value: x.value?.map((v) => (typeof v === "number" ? castValue(v, to) : v)),
        },
      ];
    }
    case "CastLike": {
      // Cast to the element type of the second input (opset 15; the dynamo exporter's torch_lib writes it).
      const to = get(node.inputs[1]).dtype;
      return [
        {
          dtype: to,
          shape: x.shape,
          value: to ? x.value?.map((v) => (typeof v === "number" ? castValue(v, to) : v)) : undefined,
        },
      ];
    }
    case "Shape": {
      if (!x.shape) return [{ dtype: "int64", shape: [fresh()] }];
      const r = x.shape.length;
      const start = normAxis(attrOf<number>(node, "start") ?? 0, r);
      const end = normAxis(Math.min(attrOf<number>(node, "end") ?? r, r), r);
      const value = x.shape.slice(Math.max(0, start), end);
      return [{ dtype: "int64", shape: [value.length], value }];
    }
    case "Size":
      return [{ dtype: "int64", shape: [], value: x.shape ? [product(x.shape)] : undefined }];
    case "Dropout": {
      return [
        { dtype: x.dtype, shape: x.shape },
        { dtype: "bool", shape: x.shape },
      ];
    }
    case "Gather": {
      const idx = get(node.inputs[1]);
      const r = x.shape?.length;
      const axis = r === undefined ? 0 : normAxis(attrOf<number>(node, "axis") ?? 0, r);
      const shape =
        x.shape && idx.shape
          ? [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)]
          : undefined;
      let value: Dim[] | undefined;
      if (x.value && x.shape?.length === 1 && idx.value?.every((i) => typeof i === "number")) {
        const n = x.value.length;
        value = (idx.value as number[]).map((i) => x.value![i < 0 ? i + n : i]);
        if (value.some((v) => v === undefined)) value = undefined;
      }
      return [{ dtype: x.dtype, shape, value }];
    }
    case "Unsqueeze": {
      const axes = axesOf(node, get);
      if (!x.shape || !axes) return [{ dtype: x.dtype }];
      const r = x.shape.length + axes.length;
      const set = new Set(axes.map((a) => normAxis(a, r)));
      const shape: Dim[] = [];
      let k = 0;
      for (let i = 0; i < r; i++) shape.push(set.has(i) ? 1 : x.shape[k++]);
      return [{ dtype: x.dtype, shape, value: x.value }];
    }
    case "Squeeze": {
      const axes = axesOf(node, get);
      if (!x.shape || axes === null) return [{ dtype: x.dtype }];
      const r = x.shape.length;
      const set = new Set(
        axes ? axes.map((a) => normAxis(a, r)) : x.shape.flatMap((d, i) => (d === 1 ? [i] : [])),
      );
      return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !set.has(i)), value: x.value }];
    }
    case "Concat": {
      const ins = node.inputs.map(get);
      const first = ins.find((i) => i.shape)?.shape;
      if (!first || ins.some((i) => !i.shape)) return [{ dtype: x.dtype, shape: first?.map(fresh) }];
      const axis = normAxis(attrOf<number>(node, "axis") ?? 0, first.length);
      const shape = [...first];
      const sizes = ins.map((i) => i.shape![axis]);
      shape[axis] = sizes.every((d) => typeof d === "number") ? (sizes as number[]).reduce(ADD, 0) : fresh();
      const value = ins.every((i) => i.value) ? ins.flatMap((i) => i.value!) : undefined;
      return [{ dtype: x.dtype, shape, value }];
    }
    case "Reshape": {
      const target = get(node.inputs[1]);
      const allowZero = (attrOf<number>(node, "allowzero") ?? 0) === 1;
      let shape: Dim[] | undefined;
      if (target.value) shape = reshapeDims(x.shape, target.value, allowZero);
      else if (typeof target.shape?.[0] === "number") shape = Array.from({ length: target.shape[0] }, fresh);
      return [{ dtype: x.dtype, shape, value: shape && shape.length <= 1 ? x.value : undefined }];
    }
    case "Flatten": {
      if (!x.shape) return [{ dtype: x.dtype }];
      const axis = normAxis(attrOf<number>(node, "axis") ?? 1, x.shape.length);
      return [{ dtype: x.dtype, shape: [product(x.shape.slice(0, axis)), product(x.shape.slice(axis))] }];
    }
    case "Transpose": {
      if (!x.shape) return [{ dtype: x.dtype }];
      const perm = attrOf<number[]>(node, "perm") ?? x.shape.map((_, i) => x.shape!.length - 1 - i);
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape![p]) }];
    }
    case "Expand": {
      const target = get(node.inputs[1]);
      let t: Dim[] | undefined = target.value;
      if (!t && typeof target.shape?.[0] === "number") t = Array.from({ length: target.shape[0] }, fresh);
      // Expand's 1s keep the input dim, like broadcasting.
      return [{ dtype: x.dtype, shape: t ? broadcastShapes([x.shape, t]) : undefined }];
    }
    case "Tile": {
      const repeats = get(node.inputs[1]).value;
      if (!x.shape || !repeats || repeats.length !== x.shape.length) return [{ dtype: x.dtype }];
      const shape = x.shape.map((d, i) => {
        const r = repeats[i];
        if (r === 1) return d;
        if (d === 1) return r;
        return typeof d === "number" && typeof r === "number" ? d * r : fresh();
      });
      return [{ dtype: x.dtype, shape }];
    }
    case "ConstantOfShape": {
      const vt = node.attrs.value?.type === "tensor" ? node.attrs.value.value : undefined;
      const dtype = vt?.dtype ?? "float32";
      const shape =
        x.value ?? (typeof x.shape?.[0] === "number" ? Array.from({ length: x.shape[0] }, fresh) : undefined);
      let value: Dim[] | undefined;
      if (shape && shape.length <= 1 && isStaticShape(shape) && (shape[0] ?? 1) <= MAX_TRACKED)
        value = new Array(shape[0] ?? 1).fill(vt ? toNumbers(vt)[0] : 0);
      return [{ dtype, shape, value }];
    }
    case "Range": {
      const [s, l, d] = node.inputs.map((i) => get(i).value?.[0]);
      if (typeof s === "number" && typeof l === "number" && typeof d === "number") {
        const n = Math.max(Math.ceil((l - s) / d), 0);
        const value = n <= MAX_TRACKED ? Array.from({ length: n }, (_, i) => s + i * d) : undefined;
        return [{ dtype: x.dtype, shape: [n], value }];
      }
      if (s === 0 && d === 1 && l !== undefined) return [{ dtype: x.dtype, shape: [l] }];
      return [{ dtype: x.dtype, shape: [fresh()] }];
    }
    case "NonZero":
      return [{ dtype: "int64", shape: x.shape ? [x.shape.length, fresh()] : undefined }];
    case "MatMul": {
      const b = get(node.inputs[1]);
      if (!x.shape || !b.shape) return [{ dtype: x.dtype }];
      const a2 = x.shape.length === 1 ? [1, x.shape[0]] : x.shape;
      const b2 = b.shape.length === 1 ? [b.shape[0], 1] : b.shape;
      const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)])!;
      const shape = [...batch];
      if (x.shape.length > 1) shape.push(a2[a2.length - 2]);
      if (b.shape.length > 1) shape.push(b2[b2.length - 1]);
      return [{ dtype: x.dtype, shape }];
    }
    case "Gemm": {
      const b = get(node.inputs[1]);
      const m = x.shape ? x.shape[attrOf<number>(node, "transA") ? 1 : 0] : fresh();
      const n = b.shape ? b.shape[attrOf<number>(node, "transB") ? 0 : 1] : fresh();
      return [{ dtype: x.dtype, shape: [m, n] }];
    }
    case "ReduceSum":
    case "ReduceMean":
    case "ReduceMax":
    case "ReduceMin":
    case "ReduceProd":
    case "ReduceL2":
    case "ReduceSumSquare": {
      const axes = axesOf(node, get);
      const keep = (attrOf<number>(node, "keepdims") ?? 1) === 1;
      if (!x.shape || axes === null) return [{ dtype: x.dtype }];
      const r = x.shape.length;
      const noop = (attrOf<number>(node, "noop_with_empty_axes") ?? 0) === 1;
      if ((!axes || axes.length === 0) && noop) return same();
      const set = new Set(axes?.length ? axes.map((a) => normAxis(a, r)) : x.shape.map((_, i) => i));
      const shape = keep
        ? x.shape.map((d, i) => (set.has(i) ? 1 : d))
        : x.shape.filter((_, i) => !set.has(i));
      let value: Dim[] | undefined;
      // The product of a shape slice (tf.tensordot's flatten size): a number, or a product of symbols.
      const prod = x.value && r === 1 && op === "ReduceProd" ? productDim(x.value) : undefined;
      if (prod !== undefined) value = [prod];
      return [{ dtype: x.dtype, shape, value }];
    }
    case "LayerNormalization": {
      const r = x.shape?.length;
      const axis = r === undefined ? 0 : normAxis(attrOf<number>(node, "axis") ?? -1, r);
      const stat = x.shape?.map((d, i) => (i >= axis ? 1 : d));
      return [
        { dtype: x.dtype, shape: x.shape },
        { dtype: "float32", shape: stat },
        { dtype: "float32", shape: stat },
      ];
    }
    case "Slice": {
      if (!x.shape) return [{ dtype: x.dtype }];
      const r = x.shape.length;
      const vals = node.inputs.slice(1).map((i) => (i ? get(i).value : undefined));
      const [starts, ends, axesV, stepsV] =
        opset < 10
          ? [
              attrOf<number[]>(node, "starts"),
              attrOf<number[]>(node, "ends"),
              attrOf<number[]>(node, "axes"),
              undefined,
            ]
          : vals;
      const shape = [...x.shape];
      if (!starts || !ends) {
        const axes = axesV ?? shape.map((_, i) => i);
        for (const a of axes) if (typeof a === "number") shape[normAxis(a, r)] = fresh();
        if (!axesV) return [{ dtype: x.dtype, shape: shape.map(fresh) }];
        return [{ dtype: x.dtype, shape }];
      }
      const axes = axesV ?? starts.map((_, i) => i);
      let value = x.value && r === 1 ? [...x.value] : undefined;
      for (let k = 0; k < starts.length; k++) {
        const [s, e, a, st] = [starts[k], ends[k], axes[k], stepsV?.[k] ?? 1];
        if (
          typeof a !== "number" ||
          typeof s !== "number" ||
          typeof e !== "number" ||
          typeof st !== "number"
        ) {
          if (typeof a === "number") shape[normAxis(a, r)] = fresh();
          value = undefined;
          continue;
        }
        const ax = normAxis(a, r);
        const dim = shape[ax];
        if (typeof dim !== "number") {
          // Symbolic dim: only the whole-range slice keeps it.
          shape[ax] = s === 0 && st === 1 && e >= 2 ** 31 - 1 ? dim : fresh();
          value = undefined;
          continue;
        }
        const idx = sliceIndices(dim, s, e, st);
        shape[ax] = idx.length;
        if (value) value = idx.map((i) => value![i]);
      }
      return [{ dtype: x.dtype, shape, value }];
    }
    case "Split": {
      const n = node.outputs.length;
      if (!x.shape) return node.outputs.map(() => ({ dtype: x.dtype }));
      const axis = normAxis(attrOf<number>(node, "axis") ?? 0, x.shape.length);
      let sizes: Dim[] | undefined = attrOf<number[]>(node, "split");
      if (!sizes && node.inputs[1]) sizes = get(node.inputs[1]).value;
      const dim = x.shape[axis];
      if (!sizes && typeof dim === "number")
        sizes = new Array(n).fill(Math.ceil(dim / n)).map((s, i) => Math.min(s, dim - i * s));
      return node.outputs.map((_, i) => {
        const shape = [...x.shape!];
        shape[axis] = sizes?.[i] ?? fresh();
        return { dtype: x.dtype, shape };
      });
    }
    case "SoftmaxCrossEntropyLoss": {
      const reduction = attrOf<string>(node, "reduction") ?? "mean";
      return [
        { dtype: x.dtype, shape: reduction === "none" ? x.shape?.filter((_, i) => i !== 1) : [] },
        same()[0],
      ];
    }
    case "Pad":
      return [{ dtype: x.dtype, shape: x.shape?.map(fresh) }];
    case "OneHot": {
      return [{ dtype: get(node.inputs[2]).dtype, shape: x.shape ? [...x.shape, fresh()] : undefined }];
    }
    case "ArgMax":
    case "ArgMin": {
      if (!x.shape) return [{ dtype: "int64" }];
      const axis = normAxis(attrOf<number>(node, "axis") ?? 0, x.shape.length);
      const keep = (attrOf<number>(node, "keepdims") ?? 1) === 1;
      return [
        {
          dtype: "int64",
          shape: keep ? x.shape.map((d, i) => (i === axis ? 1 : d)) : x.shape.filter((_, i) => i !== axis),
        },
      ];
    }
    case "ScatterND":
    case "ScatterElements":
      return same();
    default:
      return node.outputs.map(() => ({}));
  }
}

/** Indices that Slice(start, end, step) selects along a dim of static length (ONNX clamping rules). */
export function sliceIndices(dim: number, start: number, end: number, step: number): number[] {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
  } else {
    s = clamp(s, -1, dim - 1);
    e = clamp(e, -1, dim - 1);
  }
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}

/**
 * Infers dtype/shape/value for every value of the graph (nodes must be in topological order).
 * `known` seeds or overrides entries (e.g. feeds of a particular size).
 */
export function inferShapes(graph: Graph, known?: ShapeMap): ShapeMap {
  const map: ShapeMap = new Map(known);
  for (const [name, t] of graph.initializers)
    if (!map.has(name)) map.set(name, { dtype: t.dtype, shape: [...t.dims], value: trackedValue(t) });
  for (const v of graph.inputs)
    if (!map.has(v.name))
      map.set(v.name, { dtype: v.dtype, shape: v.shape?.map((d) => (d === "?" || d === "" ? fresh() : d)) });
  const get: Get = (name) => map.get(name) ?? {};
  for (const node of graph.nodes) {
    let outs: ValueShape[];
    try {
      outs = inferNode(node, get, graph.opset);
    } catch {
      outs = node.outputs.map(() => ({}));
    }
    node.outputs.forEach((o, i) => {
      if (o && !map.has(o)) map.set(o, outs[i] ?? {});
    });
  }
  return map;
}
