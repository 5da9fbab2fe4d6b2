/**
 * Raises a graph's default-domain opset to 17 by rewriting the ops whose signature changed on the way for the
 * ops transformer exports use (onnx's C++ version converter is not available from JS). Autodiff works in
 * opset >= 17 only: axes as inputs (ReduceSum/Squeeze/Unsqueeze/Split), opset-13 Softmax semantics, and
 * ScatterND with reduction (16) for embedding gradients. Every other op used here kept its semantics.
 *
 * A graph at 18..20 is left at its own opset: what changed there is read in its new form where it is used
 * (ReduceMean/ReduceMax/... axes as an input at 18, Split's `num_outputs` at 18, `Gelu` at 20; autodiff's rules
 * and emitters, shape inference and recognition take both forms), and 19/20 only widened types.
 */
import { attrOf, type Graph, type Node } from "./graph";
import { inferShapes, normAxis } from "./shape-inference";

/**
 * Default-domain opsets at which an op's existing inputs/attributes started to mean something else (ONNX
 * `docs/Changelog.md`): an attribute became an input, an axis rule or an attribute's values changed, outputs
 * changed. Versions that only added types or attributes whose defaults keep the old behaviour are not listed
 * (e.g. Reshape-14 `allowzero`, Shape-15 `start`/`end`, Cast/Constant/Reshape/Shape-19 and -21 types,
 * Pad-19 `wrap`, ReduceMax/Min-20 bool; 22 only added bfloat16 to ops that lacked it, and 23 the 4-bit float
 * types, besides new ops: Attention, RMSNormalization, RotaryEmbedding). Known up to `NEWEST_CHECKED_OPSET`.
 */
export const MEANING_CHANGED_AT: Record<string, number[]> = {
  Slice: [10],
  TopK: [10, 11],
  Upsample: [10],
  Resize: [11],
  Pad: [11],
  Clip: [11],
  Dropout: [12],
  Softmax: [13],
  LogSoftmax: [13],
  Hardmax: [13],
  ReduceSum: [13],
  Squeeze: [13],
  Unsqueeze: [13],
  Split: [13],
  BatchNormalization: [14, 15],
  ReduceMax: [18],
  ReduceMean: [18],
  ReduceMin: [18],
  ReduceProd: [18],
  ReduceL1: [18],
  ReduceL2: [18],
  ReduceLogSum: [18],
  ReduceLogSumExp: [18],
  ReduceSumSquare: [18],
  DFT: [20],
  GridSample: [20],
  GroupNormalization: [21],
};
export const NEWEST_CHECKED_OPSET = 23;

/** The opset in (from, to] at which `op` (default domain) changed meaning, or undefined. */
export function meaningChangedBetween(op: string, from: number, to: number): number | undefined {
  return (MEANING_CHANGED_AT[op] ?? []).find((v) => v > from && v <= to);
}

/**
 * The newest opset whose forms the graph code here reads (shape inference, recognition, autodiff, the export
 * checks): the 18 forms, and 19/20's type-only changes. A model at a later opset is read as it is where none of
 * its ops changed meaning after this one.
 */
export const READ_AS_OPSET = 20;

const AXES_TO_INPUT_AT_13 = new Set(["ReduceSum", "Squeeze", "Unsqueeze"]);

export function upgradeOpset(graph: Graph, target = 17): Graph {
  if (graph.opset >= target) return graph;
  if (target < 17) throw new Error("upgradeOpset only targets opset 17 or later");
  const from = graph.opset;
  const rewritten: Node[] = [];
  const info = from < 13 ? inferShapes(graph.toposort()) : undefined;
  for (const n of [...graph.nodes]) {
    if (n.domain) {
      rewritten.push(n);
      continue;
    }
    if (from < 13 && AXES_TO_INPUT_AT_13.has(n.op) && n.attrs.axes) {
      const { axes, ...rest } = n.attrs;
      n.inputs = [n.inputs[0], graph.constInts(axes.value as number[], "axes")];
      n.attrs = rest;
    }
    if (from < 13 && n.op === "Split" && n.attrs.split) {
      const { split, ...rest } = n.attrs;
      n.inputs = [n.inputs[0], graph.constInts(split.value as number[], "split")];
      n.attrs = rest;
    }
    if (from < 12 && n.op === "Dropout") {
      // Inference graphs: ratio attribute -> input; the op is identity at inference either way.
      const { ratio: _ratio, is_test: _isTest, ...rest } = n.attrs;
      n.attrs = rest;
    }
    if (from < 11 && n.op === "Clip" && (n.attrs.min || n.attrs.max)) {
      const { min, max, ...rest } = n.attrs;
      n.inputs = [
        n.inputs[0],
        min ? graph.constFloat(min.value as number, "clip_min") : "",
        max ? graph.constFloat(max.value as number, "clip_max") : "",
      ];
      n.attrs = rest;
    }
    if (from < 13 && (n.op === "Softmax" || n.op === "LogSoftmax")) {
      // Before 13 the op flattened to 2-D at `axis` and normalised over everything after it.
      const rank = info!.get(n.inputs[0])?.shape?.length;
      const axis = attrOf<number>(n, "axis") ?? 1;
      // axis -1 flattens to [rest, last] and normalises the last axis: the opset-13 meaning at any rank.
      if (rank === undefined && axis !== -1)
        throw new Error(`${n.name}: cannot upgrade ${n.op} (axis ${axis}) of unknown rank`);
      if (rank !== undefined && normAxis(axis, rank) !== rank - 1) {
        const flat = graph.op("Flatten", [n.inputs[0]], { axis });
        const soft = graph.op(n.op, [flat], { axis: -1 });
        const shape = graph.op("Shape", [n.inputs[0]]);
        rewritten.push(...graph.nodes.slice(-3));
        graph.nodes.splice(-3, 3);
        rewritten.push({ ...n, op: "Reshape", inputs: [soft, shape], attrs: {} });
        continue;
      }
      n.attrs = { ...n.attrs, axis: { type: "int", value: -1 } };
    }
    rewritten.push(n);
  }
  graph.nodes = rewritten;
  graph.opset = target;
  return graph;
}
