/**
 * Keras Dense via tf.tensordot (tf2onnx): Reshape(x, [-1, H]) → MatMul → Reshape(back) read as one MatMul on
 * the 3-D input, only where the back target provably restores x's leading dims. Graphs run in onnxruntime before
 * and after the rewrite; the fixtures are tf2onnx-structure TF BERT graphs (scripts/fixtures/make_tf2onnx_fixtures.py).
 */
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import { inferShapes } from "../../src/core/onnx/shape-inference";
import { loadUserModel } from "../../src/trainer-node/import/load";
import { collapseTensordotMatMuls, restoresLeadingDims } from "../../src/trainer-node/import/tensordot";

const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/hf");
const H = 4;
const OUT = 3;

/**
 * tf.tensordot's graph as tf2onnx writes it for x [batch, seq, H]: the flatten target from Shape(x) (free dims'
 * product, contracted dim), the back target `back(g, shape)` (int32, cast to int64), then BiasAdd.
 */
function tensordot(back: (g: Graph, shape32: string) => string, seq: number | string = "seq"): Graph {
  const g = new Graph();
  const x = g.addInput("x", "float32", ["batch", seq, H]);
  const shape = g.op("Cast", [g.op("Shape", [x])], { to: 6 });
  const gather = (idx: number[]) =>
    g.op("Gather", [shape, g.constant(tensor("int32", [idx.length], idx))], { axis: 0 });
  const prod = (idx: number[]) =>
    g.op("Unsqueeze", [g.op("ReduceProd", [gather(idx)], { keepdims: 0 }), g.constInts([0])]);
  const flatTarget = g.op("Cast", [g.op("Concat", [prod([0, 1]), prod([2])], { axis: 0 })], { to: 7 });
  const flat = g.op("Reshape", [x, flatTarget]);
  const w = Float32Array.from({ length: H * OUT }, (_, i) => Math.sin(i + 1));
  const mm = g.op(
    "MatMul",
    [flat, g.constant(tensor("float32", [H, OUT], w), "kernel")],
    {},
    { name: "Dense" },
  );
  const y = g.op("Reshape", [mm, back(g, shape)]);
  g.op("Add", [y, g.constant(tensor("float32", [OUT], [0.5, -1, 2]), "bias")], {}, { output: "y" });
  g.addOutput("y");
  return g;
}

/** concat(shape[idx], [OUT]) in int32, cast to int64: tensordot's back target. */
const fromShape = (idx: number[]) => (g: Graph, shape: string) => {
  const free = g.op("Gather", [shape, g.constant(tensor("int32", [idx.length], idx))], { axis: 0 });
  return g.op("Cast", [g.op("Concat", [free, g.constant(tensor("int32", [1], [OUT]))], { axis: 0 })], {
    to: 7,
  });
};
const constant = (target: number[]) => (g: Graph) => g.constInts(target);

async function run(g: Graph, dims: number[]) {
  const n = dims.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor(
    "float32",
    Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.7)),
    dims,
  );
  const session = await ort.InferenceSession.create(encodeModel(g));
  const y = (await session.run({ x })).y;
  return { dims: y.dims, data: Array.from(y.data as Float32Array) };
}

describe("restoresLeadingDims", () => {
  it("accepts x's own dims (symbols or numbers) and one -1, then H'", () => {
    expect(restoresLeadingDims(["batch", "seq", 3], ["batch", "seq"], 3)).toBe(true);
    expect(restoresLeadingDims([-1, 16, 3], ["batch", 16], 3)).toBe(true);
    expect(restoresLeadingDims(["batch", -1, 3], ["batch", "seq"], 3)).toBe(true);
  });

  it("refuses other widths, ranks, two -1s, 0 (copies the MatMul's dim) and permuted or unproven dims", () => {
    expect(restoresLeadingDims(["batch", "seq", 4], ["batch", "seq"], 3)).toBe(false);
    expect(restoresLeadingDims(["batch", 3], ["batch", "seq"], 3)).toBe(false);
    expect(restoresLeadingDims([-1, -1, 3], ["batch", "seq"], 3)).toBe(false);
    expect(restoresLeadingDims([0, "seq", 3], ["batch", "seq"], 3)).toBe(false);
    expect(restoresLeadingDims(["seq", "batch", 3], ["batch", "seq"], 3)).toBe(false);
    expect(restoresLeadingDims([-1, 16, 3], ["batch", "seq"], 3)).toBe(false);
  });
});

describe("collapseTensordotMatMuls", () => {
  it("rewrites the Shape-chain form into MatMul(x, W) → Add, same outputs, the shape chain gone", async () => {
    const g = tensordot(fromShape([0, 1]));
    const before = await run(g, [2, 5, H]);
    expect(collapseTensordotMatMuls(g)).toBe(1);
    expect(g.nodes.map((n) => n.op)).toEqual(["MatMul", "Add"]);
    expect(g.nodes[0].name).toBe("Dense");
    expect(g.nodes[0].inputs[0]).toBe("x");
    const after = await run(g, [2, 5, H]);
    expect(after.dims).toEqual(before.dims);
    expect(after.data).toEqual(before.data);
  });

  it("rewrites a folded constant target when x's other dims are known ([-1, 5, H'] on [batch, 5, H])", async () => {
    const g = tensordot(constant([-1, 5, OUT]), 5);
    const before = await run(g, [3, 5, H]);
    expect(collapseTensordotMatMuls(g)).toBe(1);
    expect(await run(g, [3, 5, H])).toEqual(before);
  });

  it("leaves a back target that permutes or does not provably match x's dims", () => {
    for (const g of [tensordot(fromShape([1, 0])), tensordot(constant([-1, 5, OUT]))]) {
      const ops = g.nodes.map((n) => n.op);
      expect(collapseTensordotMatMuls(g)).toBe(0);
      expect(g.nodes.map((n) => n.op)).toEqual(ops);
    }
  });
});

describe("tf2onnx-structure TF BERT fixtures", () => {
  it.each([
    "tf2onnx-tensordot-bert-seqcls-o13",
    "tf2onnx-tensordot-bert-seqcls-o13-seq16",
    "tf2onnx-tensordot-bert-seqcls3-o11",
    "tf2onnx-tensordot-bert-seqcls-o13-fixed1x16",
    "tf2onnx-tensordot-bert-seqcls-o13-batch1",
  ])("%s: every encoder linear reads the 3-D activation and keeps its bias", (id) => {
    const { recognition: rec, graph, report } = loadUserModel(path.join(FIXTURES, id, "model.onnx"));
    expect(rec.attention).toHaveLength(2);
    expect(rec.ffn).toHaveLength(2);
    expect(rec.encoderLinears).toHaveLength(12);
    expect(rec.headLinears).toHaveLength(2);
    const info = inferShapes(graph);
    for (const l of rec.encoderLinears) {
      expect(l.bias, `${l.node} bias`).toBeDefined();
      expect(info.get(l.input)?.shape, `${l.node} input`).toEqual([
        "batch",
        report.fixedSequenceLength ?? "sequence",
        l.inFeatures,
      ]);
    }
    expect(graph.nodes.some((n) => n.op === "Reshape" && n.name.includes("Tensordot"))).toBe(false);
  });
});
