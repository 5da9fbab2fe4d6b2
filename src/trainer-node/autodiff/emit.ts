/**
 * Emission helpers for gradient rules: fresh names, cached constants and shapes, opset-correct reduce/squeeze
 * forms, and the one place where broadcast gradients are reduced back to an input's shape (`reduceToShape`).
 * The graph is at opset >= 17 here (backward upgrades older graphs first).
 */
import type { AttrInput, Graph } from "../../core/onnx/graph";
import { type Dim, normAxis, type ShapeMap, type ValueShape } from "../../core/onnx/shape-inference";
import { type DType, type Tensor, tensor } from "../../core/onnx/tensor";

export class Emitter {
  private taken: Set<string>;
  private counter = 0;
  private cache = new Map<string, string>();

  constructor(
    readonly graph: Graph,
    readonly info: ShapeMap,
    private readonly prefix = "grad",
  ) {
    // Graph.uniqueName rescans the graph on every call; backward emits thousands of names, so keep a set.
    this.taken = new Set([...graph.initializers.keys(), ...graph.inputs.map((v) => v.name)]);
    for (const n of graph.nodes) {
      this.taken.add(n.name);
      for (const o of n.outputs) this.taken.add(o);
    }
  }

  fresh(hint: string): string {
    let name: string;
    do name = `${this.prefix}/${hint}_${++this.counter}`;
    while (this.taken.has(name));
    this.taken.add(name);
    return name;
  }

  /** Emits a node and returns its outputs. */
  ops(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrInput | undefined> = {},
    outputs = 1,
  ): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(op));
    return this.graph.addNode(op, inputs, attrs, { name: this.fresh(`${op}_node`), outputs: outs });
  }

  op(op: string, inputs: string[], attrs: Record<string, AttrInput | undefined> = {}): string {
    return this.ops(op, inputs, attrs, 1)[0];
  }

  shape(name: string): Dim[] | undefined {
    return this.info.get(name)?.shape;
  }

  rank(name: string): number {
    const s = this.shape(name);
    if (!s) throw new Error(`autodiff: rank of '${name}' is unknown (declare graph input shapes)`);
    return s.length;
  }

  dtype(name: string): DType {
    return this.info.get(name)?.dtype ?? "float32";
  }

  /** Constant tensor values known statically (initializer or inferred), if any. */
  value(name: string): Dim[] | undefined {
    return this.info.get(name)?.value;
  }

  setInfo(name: string, v: ValueShape): string {
    this.info.set(name, v);
    return name;
  }

  constant(t: Tensor, hint: string): string {
    const key = `${t.dtype}|${t.dims}|${Array.from(t.data as ArrayLike<number | bigint>).join(",")}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const name = this.fresh(hint);
    this.graph.initializers.set(name, t);
    this.cache.set(key, name);
    return name;
  }

  ints(values: number[]): string {
    return this.constant(tensor("int64", [values.length], values), "ints");
  }

  scalarInt(v: number): string {
    return this.constant(tensor("int64", [], [v]), "int");
  }

  scalar(v: number, dtype: DType = "float32"): string {
    return this.constant(tensor(dtype, [], [v]), "scalar");
  }

  /** Shape(x), emitted once per value. */
  shapeOf(x: string): string {
    const key = `shape|${x}`;
    let s = this.cache.get(key);
    if (!s) {
      s = this.op("Shape", [x]);
      this.cache.set(key, s);
    }
    return s;
  }

  add = (a: string, b: string) => this.op("Add", [a, b]);
  sub = (a: string, b: string) => this.op("Sub", [a, b]);
  mul = (a: string, b: string) => this.op("Mul", [a, b]);
  div = (a: string, b: string) => this.op("Div", [a, b]);
  neg = (a: string) => this.op("Neg", [a]);

  reduceSum(x: string, axes: number[], keepdims: boolean): string {
    return this.op("ReduceSum", [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  reduceMean(x: string, axes: number[], keepdims: boolean): string {
    if (this.graph.opset >= 18)
      return this.op("ReduceMean", [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
    return this.op("ReduceMean", [x], { axes, keepdims: keepdims ? 1 : 0 });
  }

  unsqueeze(x: string, axes: number[]): string {
    return this.op("Unsqueeze", [x, this.ints(axes)]);
  }

  squeeze(x: string, axes: number[]): string {
    return this.op("Squeeze", [x, this.ints(axes)]);
  }

  transpose(x: string, perm: number[]): string {
    return this.op("Transpose", [x], { perm });
  }

  /** x reshaped to like's shape: static when like's dims are all numbers, else Shape(like) at run time. */
  reshapeLike(x: string, like: string): string {
    const s = this.shape(like);
    const target = s?.every((d) => typeof d === "number") ? this.ints(s as number[]) : this.shapeOf(like);
    return this.op("Reshape", [x, target]);
  }

  zerosLike(x: string): string {
    const zero = tensor(this.dtype(x), [1], [0]);
    return this.op("ConstantOfShape", [this.shapeOf(x)], { value: zero });
  }

  /**
   * Sums a gradient of (broadcast) shape `gradShape` down to the shape of `target`, numpy style: leading axes
   * the target lacks, and axes where the target has 1 and the gradient does not. Uses static axes when the
   * shapes decide them; when a symbolic dim of the target could be 1 or not, the axes are computed at run time.
   */
  reduceToShape(grad: string, gradShape: Dim[] | undefined, target: string): string {
    const tShape = this.shape(target);
    if (!gradShape || !tShape)
      throw new Error(`autodiff: cannot reduce gradient to '${target}': rank unknown (declare input shapes)`);
    const lead = gradShape.length - tShape.length;
    if (lead < 0)
      throw new Error(`autodiff: gradient of rank ${gradShape.length} for '${target}' of higher rank`);
    const axes: number[] = [];
    for (let i = 0; i < lead; i++) axes.push(i);
    let ambiguous = false;
    tShape.forEach((d, i) => {
      const o = gradShape[lead + i];
      if (d === o) return;
      if (d === 1) axes.push(lead + i);
      else if (typeof d === "string" && o !== 1) ambiguous = true; // d may be 1 at run time
    });
    if (ambiguous) return this.reduceToShapeDynamic(grad, lead, target);
    if (axes.length === 0) return grad;
    const inner = axes.filter((a) => a >= lead);
    if (inner.length === 0) return this.reduceSum(grad, axes, false);
    const kept = this.reduceSum(grad, axes, true);
    return lead > 0
      ? this.squeeze(
          kept,
          Array.from({ length: lead }, (_, i) => i),
        )
      : kept;
  }

  private reduceToShapeDynamic(grad: string, lead: number, target: string): string {
    const tShape = this.shapeOf(target);
    const padded =
      lead > 0 ? this.op("Concat", [this.ints(new Array(lead).fill(1)), tShape], { axis: 0 }) : tShape;
    const differs = this.op("Not", [this.op("Equal", [padded, this.shapeOf(grad)])]);
    const axes = this.op("Reshape", [this.op("NonZero", [differs]), this.ints([-1])]);
    const summed = this.op("ReduceSum", [grad, axes], { keepdims: 1, noop_with_empty_axes: 1 });
    return this.op("Reshape", [summed, tShape]);
  }

  /** Normalised, sorted axes. */
  axes(axes: number[], rank: number): number[] {
    return axes.map((a) => normAxis(a, rank)).sort((a, b) => a - b);
  }
}
