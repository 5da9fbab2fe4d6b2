/**
 * The dynamo exporter's restated ops (src/core/onnx/canonical.ts): CastLike becomes the Cast it is, inference
 * Dropouts go, torch_lib's Reshape → Transpose → Reshape Kᵀ becomes one Transpose and its alpha Mul by 1 goes,
 * and onnxruntime gives the same outputs before and after; a Dropout that trains, a chain that is not a swap
 * of the last two axes and a Mul by 1 that broadcasts stay.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import {
  CanonicalError,
  castLikeToCast,
  removeInferenceDropouts,
  removeMulByOne,
  swapLastAxesToTranspose,
} from "../../src/core/onnx/canonical";
import { foldConstants } from "../../src/core/onnx/fold";
import { inferShapes } from "../../src/core/onnx/shape-inference";

async function run(g: Graph, x: Float32Array) {
  const s = await ort.InferenceSession.create(encodeModel(g));
  return (await s.run({ x: new ort.Tensor("float32", x, [2, 4]) })).y.data as Float32Array;
}
const X = Float32Array.from([1, 4, 9, 16, 0.5, 2, 8, 3]);

/** torch_lib's SDPA scale: 1 / Sqrt(CastLike(Shape(q, start=-1), q)), with CastLike(1.0, ·) for the numerator. */
function sdpaScale(): Graph {
  const g = new Graph({ opset: 18 });
  const x = g.addInput("x", "float32", ["batch", 4]);
  const last = g.op("Shape", [x], { start: -1 });
  const size = g.op("CastLike", [last, x]);
  const one = g.op("CastLike", [g.constant(tensor("int64", [], [1])), size]);
  const scale = g.op("Div", [one, g.op("Sqrt", [size])]);
  const [dropped] = g.addNode(
    "Dropout",
    [x, g.constFloat(0.1), g.constant(tensor("bool", [], [0]))],
    {},
    { outputs: 2 },
  );
  g.op("Mul", [dropped, scale], {}, { output: "y" });
  g.addOutput("y");
  return g;
}

describe("canonical forms of restated ops", () => {
  it("reads CastLike as Cast to the target's type (shape inference knows it too)", async () => {
    const g = sdpaScale();
    const info = inferShapes(g);
    const casts = g.nodes.filter((n) => n.op === "CastLike");
    expect(casts.map((n) => info.get(n.outputs[0])?.dtype)).toEqual(["float32", "float32"]);
    expect(info.get(casts[0].outputs[0])?.value).toEqual([4]);
    const ref = await run(g, X);
    expect(castLikeToCast(g)).toBe(2);
    expect(g.nodes.filter((n) => n.op === "Cast").map((n) => n.attrs.to?.value)).toEqual([1, 1]);
    expect(await run(g, X)).toEqual(ref);
    foldConstants(g); // the whole scale is shape arithmetic now
    expect(g.nodes.map((n) => n.op).sort()).toEqual(["Dropout", "Mul"]);
    expect(await run(g, X)).toEqual(ref);
  });

  it("removes inference Dropouts and keeps a training one", async () => {
    const g = sdpaScale();
    const ref = await run(g, X);
    expect(removeInferenceDropouts(g)).toBe(1);
    expect(g.nodes.some((n) => n.op === "Dropout")).toBe(false);
    expect(await run(g, X)).toEqual(ref);
    const training = sdpaScale();
    const drop = training.nodes.find((n) => n.op === "Dropout")!;
    drop.inputs[2] = training.constant(tensor("bool", [], [1]));
    expect(removeInferenceDropouts(training)).toBe(0);
  });

  it("names a CastLike whose target type is unknown", () => {
    const g = new Graph({ opset: 18 });
    const x = g.addInput("x", "float32", [2]);
    g.addNode("CastLike", [x, "nowhere"], {}, { name: "/model/CastLike_3", outputs: ["y"] });
    g.addOutput("y");
    expect(() => castLikeToCast(g)).toThrow(CanonicalError);
    expect(() => castLikeToCast(g)).toThrow(/\/model\/CastLike_3/);
  });

  /** torch_lib's key transpose of a [B, H, S, E] value, its dims read at run time as the exporter writes them. */
  function keyTranspose(swap = true): Graph {
    const g = new Graph({ opset: 18 });
    const x = g.addInput("x", "float32", ["batch", 2, "seq", 3]);
    const seq = g.op("Shape", [x], { start: -2, end: -1 });
    const first = g.op("Shape", [x], { end: -2 });
    const e = g.constInts([3]);
    const flat = g.op("Reshape", [x, g.op("Concat", [g.constInts([-1]), seq, e], { axis: 0 })]);
    const tr = g.op("Transpose", [flat], { perm: [0, 2, 1] });
    // Not a swap: the unflatten keeps the flattened order [E, S] as [S, E].
    const back = swap ? [first, e, seq] : [first, seq, e];
    g.op("Reshape", [tr, g.op("Concat", back, { axis: 0 })], {}, { output: "y" });
    g.addOutput("y");
    return g;
  }
  const X4 = Float32Array.from({ length: 2 * 2 * 5 * 3 }, (_, i) => Math.sin(i));
  async function run4(g: Graph) {
    const s = await ort.InferenceSession.create(encodeModel(g));
    return (await s.run({ x: new ort.Tensor("float32", X4, [2, 2, 5, 3]) })).y;
  }

  it("reads the Reshape → Transpose → Reshape swap of the last two axes as one Transpose", async () => {
    const g = keyTranspose();
    const ref = await run4(g);
    expect(ref.dims).toEqual([2, 2, 3, 5]);
    expect(swapLastAxesToTranspose(g)).toBe(1);
    expect(g.nodes.map((n) => n.op)).toEqual(["Transpose"]);
    expect(g.nodes[0].attrs.perm?.value).toEqual([0, 1, 3, 2]);
    const got = await run4(g);
    expect(got.dims).toEqual(ref.dims);
    expect(got.data).toEqual(ref.data);
    const other = keyTranspose(false);
    expect(swapLastAxesToTranspose(other)).toBe(0);
  });

  it("drops torch_lib's Mul by alpha = 1, but not one that broadcasts x up", async () => {
    const g = new Graph({ opset: 18 });
    const x = g.addInput("x", "float32", ["batch", 4]);
    const one = g.op("Mul", [x, g.constFloat(1)]);
    g.op("Add", [one, x], {}, { output: "y" });
    g.addOutput("y");
    const ref = await run(g, X);
    expect(removeMulByOne(g)).toBe(1);
    expect(g.nodes.map((n) => n.op)).toEqual(["Add"]);
    expect(await run(g, X)).toEqual(ref);
    const up = new Graph({ opset: 18 });
    const v = up.addInput("x", "float32", [4]);
    up.op("Mul", [v, up.constant(tensor("float32", [1, 1], [1]))], {}, { output: "y" });
    up.addOutput("y");
    expect(removeMulByOne(up)).toBe(0);
  });
});
