/**
 * A small, mutable ONNX graph API in the spirit of onnx-graphsurgeon: nodes refer to values by name,
 * initializers are typed arrays, and a handful of operations (add, toposort, cleanup, clone) cover what the
 * trainer, autodiff, export and tests need. Encoding/decoding lives in ./codec.
 */
import { type DType, type Tensor, tensor } from "./tensor";

export type Attr =
  | { type: "int"; value: number }
  | { type: "float"; value: number }
  | { type: "string"; value: string }
  | { type: "tensor"; value: Tensor }
  | { type: "ints"; value: number[] }
  | { type: "floats"; value: number[] }
  | { type: "strings"; value: string[] };

/** Loose attribute values for builders: integers become INT, other numbers FLOAT; wrap with `float()` to force. */
export type AttrInput = Attr | number | number[] | string | string[] | Tensor;

export const float = (value: number): Attr => ({ type: "float", value });
export const floats = (value: number[]): Attr => ({ type: "floats", value });

export function toAttr(v: AttrInput): Attr {
  if (typeof v === "number")
    return Number.isInteger(v) ? { type: "int", value: v } : { type: "float", value: v };
  if (typeof v === "string") return { type: "string", value: v };
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === "string") return { type: "strings", value: v as string[] };
    const nums = v as number[];
    return nums.every(Number.isInteger) ? { type: "ints", value: nums } : { type: "floats", value: nums };
  }
  if ("type" in v && "value" in v) return v as Attr;
  return { type: "tensor", value: v as Tensor };
}

export interface Node {
  name: string;
  op: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

/** A graph input/output or an annotated intermediate. Shape entries: number, symbolic name, or "?". */
export interface ValueInfo {
  name: string;
  dtype: DType;
  shape?: (number | string)[];
}

export class Graph {
  name: string;
  opset: number;
  extraOpsets: { domain: string; version: number }[] = [];
  nodes: Node[] = [];
  inputs: ValueInfo[] = [];
  outputs: ValueInfo[] = [];
  initializers = new Map<string, Tensor>();
  valueInfo = new Map<string, ValueInfo>();
  private counter = 0;

  constructor(opts: { name?: string; opset?: number } = {}) {
    this.name = opts.name ?? "graph";
    this.opset = opts.opset ?? 17;
  }

  /** A name not yet used by any value or node in the graph. */
  uniqueName(prefix: string): string {
    const taken = this.names();
    let name = prefix;
    while (taken.has(name)) name = `${prefix}_${++this.counter}`;
    return name;
  }

  private names(): Set<string> {
    const s = new Set<string>([...this.initializers.keys(), ...this.inputs.map((v) => v.name)]);
    for (const n of this.nodes) {
      s.add(n.name);
      for (const o of n.outputs) s.add(o);
    }
    return s;
  }

  addInput(name: string, dtype: DType, shape?: (number | string)[]): string {
    this.inputs.push({ name, dtype, shape });
    return name;
  }

  addOutput(name: string, dtype: DType = "float32", shape?: (number | string)[]): string {
    this.outputs.push({ name, dtype, shape });
    return name;
  }

  /** Adds an initializer under a fresh name derived from `name`; returns the name used. */
  addInitializer(name: string, t: Tensor): string {
    const unique = this.initializers.has(name) ? this.uniqueName(name) : name;
    this.initializers.set(unique, t);
    return unique;
  }

  /** A constant as an initializer (ONNX Runtime folds these; no Constant node needed). */
  constant(t: Tensor, prefix = "const"): string {
    return this.addInitializer(this.uniqueName(prefix), t);
  }

  constInts(values: number[], prefix = "ints"): string {
    return this.constant(tensor("int64", [values.length], values), prefix);
  }

  constFloat(value: number, prefix = "scalar"): string {
    return this.constant(tensor("float32", [], [value]), prefix);
  }

  /**
   * Appends a node and returns its output names. `outputs` is a count (fresh names) or explicit names.
   */
  addNode(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrInput | undefined> = {},
    opts: { outputs?: number | string[]; name?: string; domain?: string } = {},
  ): string[] {
    const name = opts.name ?? this.uniqueName(op);
    const outs = Array.isArray(opts.outputs)
      ? opts.outputs
      : Array.from({ length: opts.outputs ?? 1 }, (_, i) => this.uniqueName(`${name}_out${i}`));
    const a: Record<string, Attr> = {};
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) a[k] = toAttr(v);
    this.nodes.push({ name, op, domain: opts.domain ?? "", inputs, outputs: outs, attrs: a });
    return outs;
  }

  /** Single-output shorthand for addNode. */
  op(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrInput | undefined> = {},
    opts: { name?: string; output?: string } = {},
  ): string {
    return this.addNode(op, inputs, attrs, { name: opts.name, outputs: opts.output ? [opts.output] : 1 })[0];
  }

  /** value name -> node producing it. */
  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n);
    return m;
  }

  /** value name -> nodes consuming it. */
  consumers(): Map<string, Node[]> {
    const m = new Map<string, Node[]>();
    for (const n of this.nodes)
      for (const i of n.inputs) {
        if (!i) continue;
        const list = m.get(i);
        if (list) list.push(n);
        else m.set(i, [n]);
      }
    return m;
  }

  /** Orders nodes so every node comes after the producers of its inputs (Kahn's algorithm, stable). */
  toposort(): this {
    const producers = this.producers();
    const indeg = new Map<Node, number>();
    const users = this.consumers();
    for (const n of this.nodes) indeg.set(n, new Set(n.inputs.filter((i) => i && producers.has(i))).size);
    const ready = this.nodes.filter((n) => indeg.get(n) === 0);
    const order: Node[] = [];
    const seenEdge = new Set<string>();
    while (ready.length) {
      const n = ready.shift()!;
      order.push(n);
      for (const o of n.outputs)
        for (const u of users.get(o) ?? []) {
          const key = `${o}->${u.name}`;
          if (seenEdge.has(key)) continue;
          seenEdge.add(key);
          const d = indeg.get(u)! - 1;
          indeg.set(u, d);
          if (d === 0) ready.push(u);
        }
    }
    if (order.length !== this.nodes.length) throw new Error("graph has a cycle");
    this.nodes = order;
    return this;
  }

  /** Removes nodes whose outputs reach no graph output, then initializers and value infos nothing uses. */
  cleanup(): this {
    const needed = new Set(this.outputs.map((o) => o.name));
    const kept: Node[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i];
      if (n.outputs.some((o) => needed.has(o))) {
        kept.push(n);
        for (const inp of n.inputs) if (inp) needed.add(inp);
      }
    }
    this.nodes = kept.reverse();
    for (const k of [...this.initializers.keys()]) if (!needed.has(k)) this.initializers.delete(k);
    for (const k of [...this.valueInfo.keys()]) if (!needed.has(k)) this.valueInfo.delete(k);
    return this;
  }

  /** Deep copy of structure; initializer data is shared (copy-on-write by convention: replace, don't mutate). */
  clone(): Graph {
    const g = new Graph({ name: this.name, opset: this.opset });
    g.extraOpsets = this.extraOpsets.map((o) => ({ ...o }));
    g.nodes = this.nodes.map((n) => ({
      ...n,
      inputs: [...n.inputs],
      outputs: [...n.outputs],
      attrs: { ...n.attrs },
    }));
    g.inputs = this.inputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] }));
    g.outputs = this.outputs.map((v) => ({ ...v, shape: v.shape && [...v.shape] }));
    g.initializers = new Map(this.initializers);
    g.valueInfo = new Map(this.valueInfo);
    g.counter = this.counter;
    return g;
  }

  /** Renames every use of value `from` (node inputs, graph outputs) to `to`. */
  replaceUses(from: string, to: string): void {
    for (const n of this.nodes) n.inputs = n.inputs.map((i) => (i === from ? to : i));
    for (const o of this.outputs) if (o.name === from) o.name = to;
  }

  /** Number of float parameters held in initializers (weights, biases, gains). */
  parameterCount(filter: (name: string, t: Tensor) => boolean = (_, t) => t.dtype === "float32"): number {
    let n = 0;
    for (const [name, t] of this.initializers) if (filter(name, t)) n += t.data.length;
    return n;
  }
}

/** An attribute's value, or undefined when the node does not set it. */
export function attrOf<T extends Attr["value"]>(node: Node, name: string): T | undefined {
  return node.attrs[name]?.value as T | undefined;
}
