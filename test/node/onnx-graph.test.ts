import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { decodeModel, encodeModel, f32, float, Graph, ioSignatureOf } from "../../src/core/onnx";

function tinyClassifier(): Graph {
  const g = new Graph({ name: "tiny" });
  const x = g.addInput("x", "float32", ["batch", 3]);
  const w = g.addInitializer("w", f32([3, 2], [1, 0, 0, 1, 1, 1]));
  const b = g.addInitializer("b", f32([2], [0.5, -0.5]));
  const y = g.op("Gemm", [x, w, b], { alpha: float(1), transB: 0 });
  g.op("Softmax", [y], { axis: -1 }, { output: "probs" });
  g.addOutput("probs", "float32", ["batch", 2]);
  return g;
}

describe("ONNX codec and graph API", () => {
  it("encodes a graph that onnxruntime runs, with the expected numbers", async () => {
    const bytes = encodeModel(tinyClassifier());
    const session = await ort.InferenceSession.create(bytes);
    const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1, 2, 3]), [1, 3]) });
    const logits = [1 + 3 + 0.5, 2 + 3 - 0.5];
    const z = Math.exp(logits[0]) + Math.exp(logits[1]);
    const probs = out.probs.data as Float32Array;
    expect(probs[0]).toBeCloseTo(Math.exp(logits[0]) / z, 6);
    expect(probs[1]).toBeCloseTo(Math.exp(logits[1]) / z, 6);
  });

  it("round-trips through decode/encode with attributes, initializers and signature intact", () => {
    const g = decodeModel(encodeModel(tinyClassifier()));
    expect(g.nodes.map((n) => n.op)).toEqual(["Gemm", "Softmax"]);
    expect(g.nodes[0].attrs.alpha).toEqual({ type: "float", value: 1 });
    expect(g.nodes[1].attrs.axis).toEqual({ type: "int", value: -1 });
    expect(Array.from(g.initializers.get("w")!.data as Float32Array)).toEqual([1, 0, 0, 1, 1, 1]);
    expect(ioSignatureOf(g)).toEqual({
      inputs: [{ name: "x", datatype: "FP32", shape: [-1, 3] }],
      outputs: [{ name: "probs", datatype: "FP32", shape: [-1, 2] }],
    });
    expect(g.parameterCount()).toBe(8);
  });

  it("rejects bytes that are not a model", () => {
    expect(() => decodeModel(new TextEncoder().encode("hello, not a model"))).toThrow(/not an ONNX model/);
  });

  it("toposorts shuffled nodes and cleans up dead ones", () => {
    const g = tinyClassifier();
    g.op("Relu", ["x"]); // dead: reaches no output
    g.nodes.reverse();
    g.toposort().cleanup();
    expect(g.nodes.map((n) => n.op)).toEqual(["Gemm", "Softmax"]);
  });
});
