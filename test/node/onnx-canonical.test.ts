/**
 * The dynamo exporter's restated ops (src/core/onnx/canonical.ts): CastLike becomes the Cast it is, inference
 * Dropouts go, and onnxruntime gives the same outputs before and after; a Dropout that trains stays.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import { CanonicalError, castLikeToCast, removeInferenceDropouts } from "../../src/core/onnx/canonical";
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
});
