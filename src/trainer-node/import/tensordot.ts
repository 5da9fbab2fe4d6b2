/**
 * Keras `Dense` on a [batch, seq, H] input is `tf.tensordot(x, kernel, [[2], [0]])`, and tf2onnx writes it as
 * `Reshape(x, [-1, H]) → MatMul(kernel [H, H']) → Reshape(back to [batch, seq, H'])` followed by the bias Add.
 * The back target is either computed from Shape(x) (Gather/Slice of the free dims, Concat with H', int32 casts)
 * or a constant with -1 where tf2onnx's folding knew the rest.
 *
 * That triple is exactly `MatMul(x, kernel)` on the 3-D input whenever the back target is x's own leading dims
 * followed by H', so it is rewritten into that one MatMul (keeping the MatMul's name and the back Reshape's
 * output value): the linear then reads x, its bias Add follows it directly, and gates, LoRA and export surgery
 * (which writes its own shapes) need nothing tf-specific. The proof is by value: shape inference tracks the
 * target's elements as numbers or dim symbols, and each must be the matching dim of x, or the single -1.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { type Dim, inferShapes } from "../../core/onnx/shape-inference";

/** True when Reshape target `target` applied to the [N, out] MatMul result restores x's leading dims `lead`. */
export function restoresLeadingDims(target: Dim[], lead: Dim[], out: number): boolean {
  if (target.length !== lead.length + 1 || target.at(-1) !== out) return false;
  let wildcards = 0;
  for (let i = 0; i < lead.length; i++) {
    const t = target[i];
    // 0 would copy the MatMul result's dim i (N or H'), not x's: never the same tensor in general.
    if (t === 0) return false;
    if (t === lead[i]) continue;
    // One -1 is the element count over the other dims, i.e. lead[i] once the others match.
    if (t === -1 && ++wildcards === 1) continue;
    return false;
  }
  return true;
}

/**
 * Rewrites every Reshape → MatMul(2-D weight) → Reshape that is a matrix product on the last axis of a rank ≥ 3
 * input into a single MatMul; returns how many. Leaves the graph unchanged where the proof fails.
 */
export function collapseTensordotMatMuls(g: Graph): number {
  // Repeated: a folded constant target ([-1, 16, H']) leaves its output's batch dim a fresh symbol, so the
  // next layer's input is only known to be [batch, 16, H] once this one reads as the MatMul it is.
  let total = 0;
  for (let n = collapseOnce(g); n > 0; n = collapseOnce(g)) total += n;
  return total;
}

function collapseOnce(g: Graph): number {
  const info = inferShapes(g);
  const producers = g.producers();
  const consumers = g.consumers();
  const dead = new Set<Node>();
  let collapsed = 0;
  for (const mm of g.nodes) {
    if (mm.op !== "MatMul") continue;
    const w = g.initializers.get(mm.inputs[1]);
    if (w?.dtype !== "float32" || w.dims.length !== 2) continue;
    const [inF, outF] = w.dims;
    const flatten = producers.get(mm.inputs[0]);
    if (flatten?.op !== "Reshape" || consumers.get(flatten.outputs[0])?.length !== 1) continue;
    const x = flatten.inputs[0];
    const xShape = info.get(x)?.shape;
    if (!xShape || xShape.length < 3 || xShape.at(-1) !== inF) continue;
    // A 2-element target whose product is x's element count and whose last entry must be inF for the MatMul
    // to run: x's leading dims flattened, row-major, whatever arithmetic computed the first entry.
    const flatTarget = info.get(flatten.inputs[1]);
    if (flatTarget?.shape?.length !== 1 || flatTarget.shape[0] !== 2) continue;
    const back = consumers.get(mm.outputs[0]);
    if (back?.length !== 1 || back[0].op !== "Reshape" || back[0].inputs[0] !== mm.outputs[0]) continue;
    const target = info.get(back[0].inputs[1])?.value;
    if (!target || !restoresLeadingDims(target, xShape.slice(0, -1), outF)) continue;
    mm.inputs[0] = x;
    mm.outputs[0] = back[0].outputs[0];
    dead.add(back[0]);
    dead.add(flatten);
    collapsed++;
  }
  if (collapsed > 0) {
    g.nodes = g.nodes.filter((n) => !dead.has(n));
    // The shape chains that computed both targets are now unused.
    g.cleanup();
  }
  return collapsed;
}
