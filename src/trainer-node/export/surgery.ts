/**
 * Graph surgery for export: rewrites each planned block so that only kept rows and columns exist.
 *
 * Each rewritten block produces its original output value name, so everything downstream is untouched; the old
 * nodes become dead and `cleanup()` drops them with their initializers. Three tools cover every case exactly:
 * - read kept inputs only: Gather on the last axis, then a weight holding only the kept input rows;
 * - write back to full width (a residual-stream output whose row gates closed some features): Concat a zero
 *   column and Gather with an index map, a copy instead of a multiply by a selection matrix;
 * - nothing left to read: the layer's output is its bias, Expanded to the activation's shape.
 * Attention is rebuilt per group of heads with equal kept sizes: one group (the common case, and always the
 * case for uniformly pruned heads) is the dense layout with smaller constants; several groups are Split out of
 * one projection and their contexts Concatenated (`grouped`), or every head is padded with zero dims to one
 * group (`padded`, see HeadLayout).
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { tensor } from "../../core/onnx/tensor";
import type { AttentionPlan, ExportPlan, FfnPlan, LinearPlan } from "./plan";

/**
 * A padding feature in a LinearPlan's `read` or `out` (padded heads only): its weight row or column and its bias
 * are zero, so a padded Q/K dim adds 0 to every score and a padded V dim carries 0 into the output layer.
 */
const PAD = -1;

/**
 * How attention with uneven kept heads is rebuilt (equal heads always give the dense layout):
 * - `grouped`: one attention chain per group of heads with equal kept sizes, Split out of one projection and
 *   Concatenated back — no padding, the fewest MACs, but several chains (about 20 nodes each) per layer;
 * - `padded`: every kept head padded with zero dims to the layer's largest kept Q/K and V sizes, so one chain
 *   per layer suffices — fewer nodes (onnxruntime-web pays per node dispatched), a few more MACs.
 */
export type HeadLayout = "grouped" | "padded";
export const HEAD_LAYOUTS: readonly HeadLayout[] = ["grouped", "padded"];

/** Ops that map each element alone, so they commute with Expand. */
const UNARY_ELEMENTWISE = new Set(["Cast", "Not", "Identity", "Neg"]);

class Surgeon {
  private gatherCache = new Map<string, string>();
  private shapeCache = new Map<string, string>();
  /** Pruned weights and biases written so far, by source initializer: a shared weight's uses read one copy. */
  private constCache = new Map<string, { data: Float32Array; name: string }[]>();

  constructor(readonly g: Graph) {}

  /** Slice of Shape(value): dims [start, end) as an int64 vector. */
  private dims(value: string, start: number, end: number): string {
    const key = `${value}|${start}|${end}`;
    let out = this.shapeCache.get(key);
    if (!out) {
      const g = this.g;
      let shape = this.shapeCache.get(value);
      if (!shape) {
        shape = g.op("Shape", [value], {}, { name: g.uniqueName(`${value}/sluice_shape`) });
        this.shapeCache.set(value, shape);
      }
      out = g.op("Slice", [shape, g.constInts([start], "sluice_start"), g.constInts([end], "sluice_end")]);
      this.shapeCache.set(key, out);
    }
    return out;
  }

  /** Shape of `like` with its last dim replaced by `last`. */
  private shapeWithLast(like: string, last: number): string {
    const g = this.g;
    return g.op("Concat", [this.dims(like, 0, -1), g.constInts([last], "sluice_width")], { axis: 0 });
  }

  /** `input` restricted to `positions` on the last axis (shared between layers that read the same slice). */
  private gather(input: string, positions: number[], scope: string): string {
    const key = `${input}|${positions.join(",")}`;
    let out = this.gatherCache.get(key);
    if (!out) {
      const g = this.g;
      const idx = g.constant(tensor("int64", [positions.length], positions), `${scope}/kept_inputs`);
      out = g.op("Gather", [input, idx], { axis: -1 }, { name: g.uniqueName(`${scope}/Gather_kept`) });
      this.gatherCache.set(key, out);
    }
    return out;
  }

  /**
   * An initializer holding `data`, reusing one written before for the same `source` with equal contents (every
   * use of a shared weight folds the same tied gates into it), so export keeps ALBERT's sharing.
   */
  private sharedConstant(source: string, dims: number[], data: Float32Array, prefix: string): string {
    const key = `${source}|${dims.join(",")}`;
    const list = this.constCache.get(key) ?? [];
    const same = list.find(
      (c) => c.data.length === data.length && c.data.every((v, i) => Object.is(v, data[i])),
    );
    if (same) return same.name;
    const name = this.g.constant(tensor("float32", dims, data), prefix);
    list.push({ data, name });
    this.constCache.set(key, list);
    return name;
  }

  /**
   * Emits a planned linear. `input` holds the features `inputFeatures` (original indices) on its last axis;
   * the result holds `p.out` (compact) or, with `writeBack`, all outputs with zeros where removed.
   * Returns undefined only when a compact result would be empty.
   */
  linear(
    p: LinearPlan,
    input: string,
    inputFeatures: number[] | null,
    opts: { writeBack: boolean; shapeSource: string; extraBias?: Float32Array },
  ): string | undefined {
    const g = this.g;
    const { layer, weight, bias } = p.folded;
    const scope = `${layer.node}/sluice`;
    const nOut = layer.outFeatures;
    const fullBias = new Float32Array(nOut);
    for (const o of p.out) if (o !== PAD) fullBias[o] = bias[o] + (opts.extraBias?.[o] ?? 0);
    if (p.out.length === 0) {
      if (!opts.writeBack) return undefined;
      // Every output closed: zeros of the full width (no float initializer needed).
      return g.op(
        "ConstantOfShape",
        [this.shapeWithLast(opts.shapeSource, nOut)],
        { value: tensor("float32", [1], [0]) },
        { name: g.uniqueName(`${scope}/zeros`) },
      );
    }
    const keptBias = this.sharedConstant(
      `bias:${layer.bias ?? layer.node}`,
      [p.out.length],
      Float32Array.from(p.out, (o) => (o === PAD ? 0 : fullBias[o])),
      `${layer.node}.bias_pruned`,
    );
    let y: string;
    if (p.read.length === 0) {
      // Nothing to read: every token gets the (gated) bias.
      y = g.op(
        "Expand",
        [keptBias, this.shapeWithLast(opts.shapeSource, p.out.length)],
        {},
        { name: `${scope}/Expand` },
      );
    } else {
      const have = inputFeatures ?? Array.from({ length: layer.inFeatures }, (_, i) => i);
      let x = input;
      const same = have.length === p.read.length && have.every((f, i) => f === p.read[i]);
      if (!same) {
        const pos = new Map(have.map((f, i) => [f, i]));
        x = this.gather(
          input,
          p.read.map((f) => {
            const at = pos.get(f);
            if (at === undefined) throw new Error(`${layer.node}: input feature ${f} is not available`);
            return at;
          }),
          scope,
        );
      }
      // A layer that keeps every row and column in order takes the folded weight itself: a copy would be
      // another 0.34 GB on a barely pruned BERT-base (initializers are replaced, never mutated, so sharing is safe).
      const whole = (idx: number[], n: number) => idx.length === n && idx.every((v, k) => v === k);
      let w = weight;
      if (!whole(p.read, layer.inFeatures) || !whole(p.out, nOut)) {
        w = new Float32Array(p.read.length * p.out.length);
        p.read.forEach((i, r) => {
          if (i === PAD) return; // a padding row reads a zero input: its weights stay 0
          p.out.forEach((o, c) => {
            if (o !== PAD) w[r * p.out.length + c] = weight[i * nOut + o];
          });
        });
      }
      const wName = this.sharedConstant(
        `weight:${layer.weight}`,
        [p.read.length, p.out.length],
        w,
        `${layer.node}.weight_pruned`,
      );
      const mm = g.op("MatMul", [x, wName], {}, { name: g.uniqueName(`${scope}/MatMul`) });
      y = g.op("Add", [mm, keptBias], {}, { name: g.uniqueName(`${scope}/Add`) });
    }
    if (!opts.writeBack || p.out.length === nOut) return y;
    // Write back into full width: [y, 0] gathered with an index map (removed outputs read the zero column).
    const zero = g.op(
      "ConstantOfShape",
      [this.shapeWithLast(y, 1)],
      { value: tensor("float32", [1], [0]) },
      { name: g.uniqueName(`${scope}/zero_column`) },
    );
    const padded = g.op("Concat", [y, zero], { axis: -1 }, { name: g.uniqueName(`${scope}/Concat_zero`) });
    const pos = new Map(p.out.map((o, i) => [o, i]));
    const map = Array.from({ length: nOut }, (_, o) => pos.get(o) ?? p.out.length);
    const idx = g.constant(tensor("int64", [nOut], map), `${scope}/write_back`);
    return g.op("Gather", [padded, idx], { axis: -1 }, { name: g.uniqueName(`${scope}/Gather_write_back`) });
  }

  /**
   * Re-applies a path op (scalar scale, mask) to a new value. With `unexpand`, an operand made by Expand (HF
   * exports expand the mask to the scores' shape, i.e. to the original head count) is replaced by the Expand's
   * source: the op broadcasts it to the new, smaller scores exactly as Expand did to the old ones.
   */
  replay(node: Node, pathInput: number, value: string, unexpand = false): string {
    const producers = unexpand ? this.g.producers() : undefined;
    const inputs = node.inputs.map((i, k) =>
      k !== pathInput && producers ? this.unexpanded(i, producers) : i,
    );
    inputs[pathInput] = value;
    const attrs = Object.fromEntries(Object.entries(node.attrs));
    return this.g.addNode(node.op, inputs, attrs, { name: this.g.uniqueName(`${node.name}/sluice`) })[0];
  }

  /**
   * `value` without the Expand that made it, re-applying the elementwise unary ops in between (DistilBERT's
   * `(mask == 0).view(...).expand_as(scores)` reaches its `Where` through a Cast); `value` itself otherwise.
   */
  private unexpanded(value: string, producers: Map<string, Node>): string {
    const p = producers.get(value);
    if (p?.op === "Expand") return p.inputs[0];
    if (p && UNARY_ELEMENTWISE.has(p.op)) {
      const source = this.unexpanded(p.inputs[0], producers);
      if (source !== p.inputs[0])
        return this.g.addNode(
          p.op,
          [source],
          { ...p.attrs },
          { name: this.g.uniqueName(`${p.name}/sluice`) },
        )[0];
    }
    return value;
  }

  attention(a: AttentionPlan, layout: HeadLayout): string {
    const g = this.g;
    const { block } = a;
    const scope = `${block.o.node}/sluice_attention`;
    const kept = Array.from({ length: block.heads }, (_, h) => h).filter((h) => a.vDims[h].length > 0);
    // Group kept heads by (qk size, v size); heads in a group run batched as in the dense model. Padded: one
    // group, every head at the largest kept sizes.
    const groups: { heads: number[]; qk: number; v: number }[] = [];
    if (layout === "padded" && kept.length > 0) {
      groups.push({
        heads: kept,
        qk: Math.max(...kept.map((h) => a.qk[h].length)),
        v: Math.max(...kept.map((h) => a.vDims[h].length)),
      });
    } else
      for (const h of kept) {
        const key = { qk: a.qk[h].length, v: a.vDims[h].length };
        const group = groups.find((x) => x.qk === key.qk && x.v === key.v);
        if (group) group.heads.push(h);
        else groups.push({ heads: [h], ...key });
      }
    const padTo = (dims: number[], n: number) => [...dims, ...Array<number>(n - dims.length).fill(PAD)];
    // Projection columns ordered group by group, head by head (each padded to its group's size).
    const qkOrder = groups.flatMap((gr) => gr.heads.flatMap((h) => padTo(a.qk[h], gr.qk)));
    const vOrder = groups.flatMap((gr) => gr.heads.flatMap((h) => padTo(a.vDims[h], gr.v)));
    const shapeSource = block.q.input;
    const project = (p: LinearPlan, order: number[], ops: AttentionPlan["block"]["qOps"]) => {
      let y = this.linear({ ...p, out: order }, p.folded.layer.input, null, {
        writeBack: false,
        shapeSource,
      });
      if (y) for (const op of ops) y = this.replay(op.node, op.pathInput, y);
      return y;
    };
    const q = project(a.q, qkOrder, block.qOps);
    const k = project(a.k, qkOrder, block.kOps);
    const v = project(a.v, vOrder, block.vOps);
    const split = (value: string | undefined, sizes: number[]) => {
      if (!value) return sizes.map(() => undefined);
      const nonEmpty = sizes.filter((s) => s > 0);
      if (nonEmpty.length === 1) return sizes.map((s) => (s > 0 ? value : undefined));
      const outs = g.addNode(
        "Split",
        [value, g.constInts(nonEmpty, `${scope}/split`)],
        { axis: -1 },
        { outputs: nonEmpty.length, name: g.uniqueName(`${scope}/Split`) },
      );
      let i = 0;
      return sizes.map((s) => (s > 0 ? outs[i++] : undefined));
    };
    const qParts = split(
      q,
      groups.map((gr) => gr.heads.length * gr.qk),
    );
    const kParts = split(
      k,
      groups.map((gr) => gr.heads.length * gr.qk),
    );
    const vParts = split(
      v,
      groups.map((gr) => gr.heads.length * gr.v),
    );
    const contexts: string[] = [];
    groups.forEach((gr, i) => {
      const n = gr.heads.length;
      const heads = (value: string, size: number, perm: number[]) =>
        g.op("Transpose", [g.op("Reshape", [value, g.constInts([0, 0, n, size], `${scope}/heads_shape`)])], {
          perm,
        });
      let scores: string;
      if (gr.qk > 0) {
        scores = g.op(
          "MatMul",
          [heads(qParts[i]!, gr.qk, [0, 2, 1, 3]), heads(kParts[i]!, gr.qk, [0, 2, 3, 1])],
          {},
          { name: g.uniqueName(`${scope}/MatMul_qk`) },
        );
      } else {
        // No Q/K dimension left: every score is 0 before scaling and masking, [B, 1, S, S].
        const b = this.dims(shapeSource, 0, 1);
        const s = this.dims(shapeSource, 1, 2);
        const shape = g.op("Concat", [b, g.constInts([1], `${scope}/one`), s, s], { axis: 0 });
        scores = g.op("ConstantOfShape", [shape], { value: tensor("float32", [1], [0]) });
      }
      // The scale stays the trained model's 1/sqrt(dh): it is replayed with its original constant.
      for (const op of block.scoreOps) scores = this.replay(op.node, op.pathInput, scores, true);
      const probs = g.addNode(
        "Softmax",
        [scores],
        { ...block.softmax.attrs },
        { name: g.uniqueName(`${scope}/Softmax`) },
      )[0];
      const ctx = g.op(
        "MatMul",
        [probs, heads(vParts[i]!, gr.v, [0, 2, 1, 3])],
        {},
        { name: g.uniqueName(`${scope}/MatMul_pv`) },
      );
      const merged = g.op("Reshape", [
        g.op("Transpose", [ctx], { perm: [0, 2, 1, 3] }),
        g.constInts([0, 0, n * gr.v], `${scope}/merge_shape`),
      ]);
      contexts.push(merged);
    });
    const context =
      contexts.length === 0
        ? block.q.input
        : contexts.length === 1
          ? contexts[0]
          : g.op("Concat", contexts, { axis: -1 }, { name: g.uniqueName(`${scope}/Concat_heads`) });
    return this.linear({ ...a.o, read: vOrder }, context, contexts.length ? vOrder : [], {
      writeBack: true,
      shapeSource,
    })!;
  }

  ffn(f: FfnPlan): string {
    const shapeSource = f.block.up.input;
    let hidden = this.linear(f.up, f.block.up.input, null, { writeBack: false, shapeSource });
    if (hidden) {
      const renamed = new Map([[f.block.up.output, hidden]]);
      for (const { node } of f.block.chain) {
        const inputs = node.inputs.map((i) => renamed.get(i) ?? i);
        const out = this.g.addNode(
          node.op,
          inputs,
          { ...node.attrs },
          { name: this.g.uniqueName(`${node.name}/sluice`) },
        )[0];
        renamed.set(node.outputs[0], out);
      }
      hidden = renamed.get(f.block.down.input);
      if (!hidden) throw new Error(`${f.block.down.node}: FFN chain does not reach the down projection`);
    }
    return this.linear(f.down, hidden ?? shapeSource, hidden ? f.neurons : [], {
      writeBack: true,
      shapeSource,
      extraBias: f.extraBias,
    })!;
  }

  generic(p: LinearPlan): string {
    const layer = p.folded.layer;
    return this.linear(p, layer.input, null, { writeBack: true, shapeSource: layer.input })!;
  }

  /** Makes `value` (a fresh value of ours) carry the name `original`, retiring the old producer's output. */
  takeOver(original: string, value: string): void {
    const producers = this.g.producers();
    const old = producers.get(original);
    if (old)
      old.outputs = old.outputs.map((o) => (o === original ? this.g.uniqueName(`${original}_unpruned`) : o));
    const mine = producers.get(value);
    if (!mine || this.g.inputs.some((i) => i.name === value) || this.g.initializers.has(value)) {
      this.g.op("Identity", [value], {}, { output: original });
      return;
    }
    mine.outputs = mine.outputs.map((o) => (o === value ? original : o));
  }
}

/** Applies the plan to `g` (mutated): rebuilt blocks, dead nodes and unused initializers removed. */
export function applyPlan(g: Graph, plan: ExportPlan, heads: HeadLayout = "grouped"): Graph {
  const s = new Surgeon(g);
  const rewrites: [string, () => string][] = [
    ...plan.attention.map((a) => [a.block.o.output, () => s.attention(a, heads)] as [string, () => string]),
    ...plan.ffn.map((f) => [f.block.down.output, () => s.ffn(f)] as [string, () => string]),
    ...plan.generic.map((p) => [p.folded.layer.output, () => s.generic(p)] as [string, () => string]),
  ];
  for (const [original, emit] of rewrites) s.takeOver(original, emit());
  g.toposort();
  g.cleanup();
  return g;
}
