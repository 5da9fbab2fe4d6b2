/**
 * A fixed batch size made dynamic. `torch.onnx.export` without `dynamic_axes` (its default), tf2onnx with a fixed
 * signature and "static shape" mobile exports declare inputs `[1, S]`, and constant folding then bakes the batch
 * into shape constants: Reshape targets `[1, S, heads, d]`, Expand/ConstantOfShape/Tile shapes, Slice ends.
 * Training needs other batch sizes, so import declares the batch axis symbolic and rewrites each such constant
 * into the batch-copying form:
 *
 * - Reshape whose input carries the batch on axis 0: the leading element becomes 0 (copy that dim), as ONNX
 *   defines for `allowzero=0`;
 * - Reshape whose leading target element is the product of the input's leading dims (a flatten of batch and
 *   sequence, `[B·S, H]`) with the other elements equal to the input's trailing dims: it becomes -1;
 * - Reshape whose leading target element is the batch and whose input's element count, symbolically, is the
 *   batch times the target's other elements (the restore of such a flatten: `[B, S, H']` on `[batch*16, H']`,
 *   tf2onnx's tensordot at a fixed shape): it becomes -1, or the run-time batch when the target already has one;
 * - Expand whose input carries the batch on the expanded axis: the leading element becomes 1 (keep that dim);
 * - otherwise (Reshape/Expand/Tile/ConstantOfShape creating the batch): the leading element becomes the batch
 *   read at run time, `Shape(input_ids)[0:1]`; in a Concat-built shape the constant piece holding it is
 *   replaced the same way;
 * - Slice `[0:B]` along the batch axis: the end becomes "to the end".
 *
 * At the exported batch size every rewrite computes exactly the original value. That the graph is then
 * batch-polymorphic is proven by shape inference (core/onnx/shape-inference.ts) run twice: once at the fixed
 * batch (the original shapes), once with the symbol. Dims are tracked as products of symbols (`batch*16` after a
 * flatten, core/onnx/dim-product.ts), so the batch survives a flatten and is proven again by the restore.
 * Every value computed from the inputs (not only from their shapes) whose leading dim was the fixed batch must
 * carry the symbol there, a dim carrying the symbol must evaluate at the fixed batch to what that dim was, no
 * node may drop it, and every graph output must lead with the symbol itself. A value that cannot be shown so is
 * refused naming the node that produces it.
 */
import { hasFactor, inferredDim, leadsWith, substituteDim } from "../../core/onnx/dim-product";
import { attrOf, type Graph, type Node } from "../../core/onnx/graph";
import { type Dim, inferShapes, type ShapeMap } from "../../core/onnx/shape-inference";
import { type Tensor, tensor, toNumbers } from "../../core/onnx/tensor";
import { ImportError } from "./errors";

export const BATCH = "batch";
const INT64_MAX = 9223372036854775807n;

/** Ops whose input at the given index is a shape whose leading element may be the batch. */
const SHAPE_INPUT: Record<string, number> = { Reshape: 1, Expand: 1, Tile: 1, ConstantOfShape: 0 };

export interface BatchAxisResult {
  /** Nodes whose baked-in batch was rewritten, in graph order. */
  rewritten: string[];
}

/**
 * Makes the batch axis of `g` dynamic. The graph inputs must already be declared with the symbol `batch` on
 * axis 0 (import does so for every input); `fixed` is the batch size the file declared. Throws `ImportError`
 * naming the node where the batch cannot be proven dynamic; `advice` ends that message.
 */
export function makeBatchDynamic(g: Graph, fixed: number, advice: string): BatchAxisResult {
  const batchInput = g.inputs.find((i) => i.name === "input_ids") ?? g.inputs[0];
  const seeded: ShapeMap = new Map(
    g.inputs.map((i) => [i.name, { dtype: i.dtype, shape: [fixed, ...(i.shape ?? []).slice(1)] }]),
  );
  const atFixed = inferShapes(g, seeded);
  const data = dataDependent(g);
  const refuse = (node: Node, why: string) =>
    new ImportError(
      `input ${batchInput.name} has a fixed batch size ${fixed} that cannot be made dynamic: ${node.name} (${node.op}) ${why}; ${advice}`,
    );
  const rewritten: string[] = [];
  const tried = new Set<Node>();
  let runtimeBatch: string | undefined;
  const batchVector = () => {
    runtimeBatch ??= g.op(
      "Shape",
      [batchInput.name],
      { start: 0, end: 1 },
      { name: g.uniqueName("/sluice_import/batch/Shape") },
    );
    return runtimeBatch;
  };

  for (;;) {
    const sym = inferShapes(g);
    const culprit = firstUnproven(g, data, atFixed, sym, fixed);
    if (!culprit) break;
    const { node, why } = culprit;
    if (tried.has(node)) throw refuse(node, why);
    tried.add(node);
    const fixedHere = rewriteNode(g, node, sym, atFixed, fixed, batchVector);
    if (fixedHere.length === 0) throw refuse(node, why);
    rewritten.push(...fixedHere);
    g.toposort();
  }
  // Shapes torch recorded for intermediate values name the fixed batch; onnxruntime would check them.
  for (const [name, v] of g.valueInfo) if (data.has(name) && v.shape?.[0] === fixed) v.shape[0] = BATCH;
  return { rewritten };
}

/** Values computed from the graph inputs' contents, not only from their shapes (Shape/Size cut the flow). */
function dataDependent(g: Graph): Set<string> {
  const data = new Set(g.inputs.map((i) => i.name));
  for (const n of g.nodes) {
    if (n.op === "Shape" || n.op === "Size") continue;
    const shapeAt = SHAPE_INPUT[n.op];
    const from = n.inputs.filter((i, k) => i && data.has(i) && (n.op === "Slice" ? k === 0 : k !== shapeAt));
    if (from.length > 0) for (const o of n.outputs) if (o) data.add(o);
  }
  return data;
}

const dims = (s: Dim[] | undefined) => `[${(s ?? []).join(", ")}]`;

/** The first node (graph order) with a data-dependent output that is not proven to carry the batch. */
function firstUnproven(
  g: Graph,
  data: Set<string>,
  atFixed: ShapeMap,
  sym: ShapeMap,
  fixed: number,
): { node: Node; why: string } | undefined {
  const outputs = new Set(g.outputs.map((o) => o.name));
  const carries = (v: string) => !!sym.get(v)?.shape?.some((d) => hasFactor(d, BATCH));
  for (const node of g.nodes) {
    const fromBatch = node.inputs.find((i) => i && data.has(i) && carries(i));
    const dropped = node.outputs.find(
      (o) => o && data.has(o) && atFixed.has(o) && sym.get(o)?.shape && !carries(o),
    );
    // Concat needs equal dims off its axis; shape inference takes them from the first input only.
    if (node.op === "Concat" && node.outputs.some((o) => data.has(o))) {
      const rank = sym.get(node.inputs[0])?.shape?.length ?? 0;
      const axis =
        (attrOf<number>(node, "axis") ?? 0) < 0
          ? (attrOf<number>(node, "axis") ?? 0) + rank
          : (attrOf<number>(node, "axis") ?? 0);
      const leads = node.inputs.map((i) => sym.get(i)?.shape?.[0]);
      if (axis !== 0 && leads.some((d) => hasFactor(d, BATCH)) && leads.some((d) => d !== leads[0]))
        return { node, why: `concatenates inputs that disagree on the batch axis (${dims(leads as Dim[])})` };
    }
    if (fromBatch && dropped)
      return {
        node,
        why: `drops the batch axis: ${fromBatch} is ${dims(sym.get(fromBatch)?.shape)} but ${dropped} is ${dims(sym.get(dropped)?.shape)}`,
      };
    for (const o of node.outputs) {
      if (!o || !data.has(o)) continue;
      const f = atFixed.get(o)?.shape;
      const s = sym.get(o)?.shape;
      // Values added by the rewrites are not in the fixed-batch map; the originals all are.
      if (!atFixed.has(o)) continue;
      if (!f) return { node, why: `has an output whose shape inference cannot follow (${o})` };
      if (!s || s.length !== f.length)
        return {
          node,
          why: `output ${o} is ${dims(f)} at batch ${fixed} but ${dims(s)} with a dynamic batch`,
        };
      // A dim carrying the batch (alone or in a product) must be what that dim was at the fixed batch.
      const wrongAxis = s.findIndex((d, i) => hasFactor(d, BATCH) && substituteDim(d, BATCH, fixed) !== f[i]);
      if (wrongAxis >= 0)
        return {
          node,
          why: `output ${o} puts the batch on axis ${wrongAxis} as ${s[wrongAxis]}, which is ${f[wrongAxis]} at batch ${fixed}`,
        };
      if ((f[0] === fixed && !hasFactor(s[0], BATCH)) || (outputs.has(o) && s[0] !== BATCH))
        return {
          node,
          why: `output ${o} is ${dims(f)} at batch ${fixed} but ${dims(s)} with a dynamic batch (the batch is baked into the graph)`,
        };
    }
  }
  return undefined;
}

/** Rewrites what bakes the batch into `node` (or into the shape constants feeding it); names what changed. */
function rewriteNode(
  g: Graph,
  node: Node,
  sym: ShapeMap,
  atFixed: ShapeMap,
  fixed: number,
  batchVector: () => string,
): string[] {
  const x = sym.get(node.inputs[0])?.shape;
  if (node.op === "Slice") return rewriteSliceEnd(g, node, x, atFixed, fixed) ? [node.name] : [];
  const at = SHAPE_INPUT[node.op];
  if (at !== undefined) {
    const lead = leadingReplacement(node, x, atFixed, fixed);
    return lead !== undefined && replaceLeading(g, node, at, fixed, lead, batchVector) ? [node.name] : [];
  }
  // A node combining data with a constant-shaped operand that should carry the batch (a Concat of a
  // ConstantOfShape with the hidden states): rewrite that operand's producer.
  const producers = g.producers();
  const done: string[] = [];
  for (const input of node.inputs) {
    const p = producers.get(input);
    if (!p || SHAPE_INPUT[p.op] === undefined) continue;
    if (atFixed.get(input)?.shape?.[0] !== fixed || sym.get(input)?.shape?.[0] === BATCH) continue;
    const lead = leadingReplacement(p, sym.get(p.inputs[0])?.shape, atFixed, fixed);
    if (lead !== undefined && replaceLeading(g, p, SHAPE_INPUT[p.op], fixed, lead, batchVector))
      done.push(p.name);
  }
  return done;
}

/**
 * What the leading shape element becomes: a literal (0 copy, -1 infer, 1 keep) or the run-time batch;
 * undefined when no rewrite is sound.
 */
function leadingReplacement(
  node: Node,
  x: Dim[] | undefined,
  atFixed: ShapeMap,
  fixed: number,
): number | "runtime" | undefined {
  const xFixed = atFixed.get(node.inputs[0])?.shape;
  if (node.op === "Reshape") {
    const target = atFixed.get(node.inputs[1])?.value;
    // A flatten of [batch, d1.., dk, rest..] to [batch·d1·..·dk, rest..]: the leading element is inferred.
    if (x?.[0] === BATCH && xFixed && target && !target.includes(-1) && target.slice(1).every(isNum)) {
      const rest = target.slice(1) as number[];
      const k = xFixed.length - rest.length;
      const tail = xFixed.slice(k);
      const head = xFixed.slice(0, k);
      if (k >= 1 && tail.every((d, i) => d === rest[i]) && head.every(isNum)) {
        const product = (head as number[]).reduce((a, b) => a * b, 1);
        if (product === target[0]) return -1;
      }
    }
    if (x?.[0] === BATCH && target?.[0] === fixed && (attrOf<number>(node, "allowzero") ?? 0) === 0) return 0;
    // The restore of a flatten ([1, 16, H'] on [batch*16, H']): the input's layout is the batch, then the
    // target's other elements, so -1 infers the batch. A target with a -1 of its own ([1, -1, H']) gets the
    // run-time batch below.
    const rest = target?.slice(1);
    if (
      target?.[0] === fixed &&
      x &&
      rest?.every((d) => isNum(d) && d > 0) &&
      inferredDim(x, [], rest) === BATCH
    )
      return -1;
    // Shape inference takes a literal run-time batch as it stands, so on an input that already carries the
    // batch it is sound only where the batch is that input's outermost factor: each of the B leading slices
    // is then one input's rows. A sequence-first flatten ([16*batch, H]) restored batch-first is not.
    if (x?.some((d) => hasFactor(d, BATCH)) && !leadsWith(x, BATCH)) return undefined;
    return "runtime";
  }
  if (node.op === "Expand") {
    const target = atFixed.get(node.inputs[1])?.value;
    const r = x?.length ?? 0;
    const axis = r - (target?.length ?? 0); // the input axis aligned with the target's first element
    if (axis === 0 && x?.[0] === BATCH) return 1;
    return "runtime";
  }
  return "runtime"; // Tile repeats / ConstantOfShape: the batch is created here
}

const isNum = (d: Dim): d is number => typeof d === "number";

/**
 * Replaces the leading element (the fixed batch) of `node.inputs[at]`: an initializer, or a Concat (possibly
 * through one Cast) whose first piece is an initializer starting with it. New values, never an edited shared
 * one. False when the shape is neither.
 */
function replaceLeading(
  g: Graph,
  node: Node,
  at: number,
  fixed: number,
  lead: number | "runtime",
  batchVector: () => string,
): boolean {
  const src = node.inputs[at];
  const t = g.initializers.get(src);
  if (t) {
    const v = replacedShape(g, t, fixed, lead, batchVector, `${node.name}/batch_shape`);
    if (!v) return false;
    node.inputs[at] = v;
    return true;
  }
  const producers = g.producers();
  let p = producers.get(src);
  let cast: Node | undefined;
  if (p?.op === "Cast") {
    cast = p;
    p = producers.get(p.inputs[0]);
  }
  if (p?.op !== "Concat" || (attrOf<number>(p, "axis") ?? 0) !== 0) return false;
  const first = g.initializers.get(p.inputs[0]);
  if (!first) return false;
  const piece = replacedShape(g, first, fixed, lead, batchVector, `${p.name}/batch_piece`);
  if (!piece) return false;
  const concat = g.op("Concat", [piece, ...p.inputs.slice(1)], { axis: 0 }, { name: g.uniqueName(p.name) });
  node.inputs[at] = cast
    ? g.op("Cast", [concat], { to: attrOf<number>(cast, "to") ?? 7 }, { name: g.uniqueName(cast.name) })
    : concat;
  return true;
}

/** A 1-D integer initializer starting with the fixed batch, with that element replaced; undefined otherwise. */
function replacedShape(
  g: Graph,
  t: Tensor,
  fixed: number,
  lead: number | "runtime",
  batchVector: () => string,
  prefix: string,
): string | undefined {
  if (t.dims.length !== 1 || (t.dtype !== "int64" && t.dtype !== "int32")) return undefined;
  const values = toNumbers(t);
  // -1 replaces a flattened batch·seq (checked by the caller), everything else the batch itself.
  if (values[0] !== fixed && lead !== -1) return undefined;
  if (lead !== "runtime")
    return g.constant(tensor(t.dtype, [values.length], [lead, ...values.slice(1)]), prefix);
  let batch = batchVector();
  if (t.dtype === "int32") batch = g.op("Cast", [batch], { to: 6 }, { name: g.uniqueName(`${prefix}/Cast`) });
  if (values.length === 1) return batch;
  const rest = g.constant(tensor(t.dtype, [values.length - 1], values.slice(1)), `${prefix}/rest`);
  return g.op("Concat", [batch, rest], { axis: 0 }, { name: g.uniqueName(`${prefix}/Concat`) });
}

/** Slice [0:fixed] (step 1) along an axis that carries the batch: the end becomes "to the end". */
function rewriteSliceEnd(
  g: Graph,
  node: Node,
  x: Dim[] | undefined,
  atFixed: ShapeMap,
  fixed: number,
): boolean {
  const [, startsName, endsName, axesName, stepsName] = node.inputs;
  const ends = g.initializers.get(endsName);
  const starts = atFixed.get(startsName)?.value;
  if (!ends || !starts || !x) return false;
  const endValues = toNumbers(ends);
  const axes = axesName ? atFixed.get(axesName)?.value : endValues.map((_, i) => i);
  const steps = stepsName ? atFixed.get(stepsName)?.value : undefined;
  if (!axes) return false;
  let changed = false;
  const out: bigint[] = endValues.map(BigInt);
  for (let k = 0; k < endValues.length; k++) {
    const a = axes[k];
    if (typeof a !== "number") continue;
    const axis = a < 0 ? a + x.length : a;
    if (x[axis] === BATCH && starts[k] === 0 && (steps?.[k] ?? 1) === 1 && endValues[k] === fixed) {
      out[k] = INT64_MAX;
      changed = true;
    }
  }
  if (!changed || ends.dtype !== "int64") return false;
  node.inputs[2] = g.constant(
    { dtype: "int64", dims: [...ends.dims], data: BigInt64Array.from(out) },
    `${node.name}/ends`,
  );
  return true;
}
