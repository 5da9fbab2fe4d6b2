/**
 * Freezing attention scales that an exporter computes from tensor shapes.
 *
 * torch ≥ 2.1 exports `F.scaled_dot_product_attention` with its default scale computed at run time from the
 * query's shape, `Cast(Div(1, Sqrt(Cast(Slice(Shape(q), -1)))))`, and multiplies both q and kᵀ by its square
 * root. Export removes Q/K columns, which shrinks exactly the dimension that scale is read from: left as
 * computed, a pruned model would scale by 1/√(kept dims) instead of the trained 1/√d_head. So every operand
 * of a recognised attention path op (q/k/v scaling, score ops) that is computed from shapes is replaced by a
 * constant holding its value in the unpruned model, before training and before export surgery. The shapes come
 * from the recognised block itself (heads and head size, the axes of every value on its paths), so this does
 * not depend on shape inference having followed the head split; batch and sequence length are tried at two
 * values each, and a value that depends on them is refused rather than frozen at one of them.
 */
import { Graph, type Node } from "../../core/onnx/graph";
import { inferShapes, type ShapeMap, sliceIndices } from "../../core/onnx/shape-inference";
import { tensor } from "../../core/onnx/tensor";
import { type AttentionBlock, isShapeDerived, type PathAxis } from "./blocks";
import { ImportError } from "./errors";

/** (batch, sequence) pairs a frozen value is evaluated at; it must come out the same at both. */
const TRIALS: [number, number][] = [
  [2, 3],
  [5, 7],
];

/** Dims of `value` for one trial: from the block's path layouts, else from shape inference (symbols numbered). */
function trialDims(
  value: string,
  block: AttentionBlock,
  info: () => ShapeMap,
  trial: number,
  symbols: Map<string, number>,
): number[] | undefined {
  const [b, s] = TRIALS[trial];
  const axes = block.layouts.get(value);
  if (axes) {
    const size: Record<PathAxis, number> = {
      B: b,
      S: s,
      H: block.heads,
      D: block.headDim,
      HD: block.heads * block.headDim,
    };
    return axes.map((a) => size[a]);
  }
  const shape = info().get(value)?.shape;
  if (!shape) return undefined;
  return shape.map((d) => {
    if (typeof d === "number") return d;
    if (!symbols.has(d)) symbols.set(d, (trial === 0 ? 2 : 5) + 3 * symbols.size);
    return symbols.get(d)!;
  });
}

/**
 * Evaluates a shape-derived value: its producing nodes, with every `Shape` replaced by the dims given, run
 * through the shape/value inference constant folding uses. Undefined when a value cannot be worked out.
 */
function evaluate(
  g: Graph,
  name: string,
  producers: Map<string, Node>,
  dimsOf: (value: string) => number[] | undefined,
): { dtype: string; dims: number[]; values: number[] } | undefined {
  const sub = new Graph({ opset: g.opset });
  const seen = new Set<string>();
  let ok = true;
  const visit = (v: string) => {
    if (!v || seen.has(v) || !ok) return;
    seen.add(v);
    const t = g.initializers.get(v);
    if (t) {
      sub.initializers.set(v, t);
      return;
    }
    const p = producers.get(v);
    if (!p) {
      ok = false;
      return;
    }
    if (p.op === "Shape") {
      const dims = dimsOf(p.inputs[0]);
      if (!dims) {
        ok = false;
        return;
      }
      // Shape-15's optional start/end attributes select a range of the dims.
      const start = (p.attrs.start?.value as number | undefined) ?? 0;
      const end = (p.attrs.end?.value as number | undefined) ?? dims.length;
      const picked = sliceIndices(dims.length, start, end, 1).map((i) => dims[i]);
      sub.initializers.set(v, tensor("int64", [picked.length], picked));
      return;
    }
    for (const i of p.inputs) visit(i);
    sub.nodes.push(p);
  };
  visit(name);
  if (!ok) return undefined;
  const out = inferShapes(sub).get(name);
  const shape = out?.shape;
  if (!out?.dtype || !out.value || !shape?.every((d) => typeof d === "number")) return undefined;
  if (!out.value.every((x) => typeof x === "number" && Number.isFinite(x))) return undefined;
  return { dtype: out.dtype, dims: shape as number[], values: out.value as number[] };
}

/**
 * Replaces every shape-computed operand of the blocks' path ops with a constant holding its value in the
 * unpruned model (mutates `g` and the blocks' nodes); returns how many operands it froze. Masks, which read
 * the attention_mask input's data, are left alone.
 */
export function freezeAttentionScales(g: Graph, blocks: AttentionBlock[]): number {
  const producers = g.producers();
  let shapes: ShapeMap | undefined;
  const info = () => {
    shapes ??= inferShapes(g);
    return shapes;
  };
  const frozen = new Map<string, string>();
  for (const block of blocks) {
    for (const { node, pathInput } of [...block.qOps, ...block.kOps, ...block.vOps, ...block.scoreOps]) {
      node.inputs.forEach((name, k) => {
        if (k === pathInput || !name || g.initializers.has(name)) return;
        const done = frozen.get(name);
        if (done) {
          node.inputs[k] = done;
          return;
        }
        if (!isShapeDerived(g, name, producers)) return;
        const at = TRIALS.map((_, trial) => {
          const symbols = new Map<string, number>();
          return evaluate(g, name, producers, (v) => trialDims(v, block, info, trial, symbols));
        });
        if (!at[0] || !at[1])
          throw new ImportError(
            `${node.name}: its operand ${name} is computed from tensor shapes in a way Sluice cannot evaluate; pruning attention would change it (re-export with a constant attention scale)`,
          );
        if (at[0].values.join() !== at[1].values.join())
          throw new ImportError(
            `${node.name}: its operand ${name} depends on the batch size or sequence length (${at[0].values} vs ${at[1].values}); Sluice cannot freeze it to a constant`,
          );
        if (at[0].values.length !== 1 || !["float32", "float64"].includes(at[0].dtype))
          throw new ImportError(
            `${node.name}: its operand ${name} is a shape-derived ${at[0].dtype} [${at[0].dims}], expected one float`,
          );
        const init = g.constant(tensor("float32", at[0].dims, at[0].values), `${name}/sluice_frozen`);
        frozen.set(name, init);
        node.inputs[k] = init;
      });
    }
  }
  if (frozen.size > 0) g.cleanup();
  return frozen.size;
}
