import { expect, it } from "vitest";
import { encodeModel, f32, Graph } from "../../src/core/onnx";
import { loadOrt } from "../../src/gateway/ort-wasm";

it("runs a model with onnxruntime-web inside workerd", async () => {
  const g = new Graph({ name: "t" });
  const x = g.addInput("x", "float32", ["batch", 3]);
  const w = g.addInitializer("w", f32([3, 2], [1, 0, 0, 1, 1, 1]));
  g.op("MatMul", [x, w], {}, { output: "y" });
  g.addOutput("y", "float32", ["batch", 2]);
  const ort = loadOrt();
  const s = await ort.InferenceSession.create(encodeModel(g));
  const out = await s.run({ x: new ort.Tensor("float32", Float32Array.from([1, 2, 3]), [1, 3]) });
  expect(Array.from(out.y.data as Float32Array)).toEqual([4, 5]);
});
