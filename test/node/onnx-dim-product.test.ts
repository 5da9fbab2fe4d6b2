/**
 * Products of dim symbols (core/onnx/dim-product.ts) and what shape inference does with them: a flatten of
 * [batch, 16, H] and the Reshape that restores it keep `batch` exactly. The inferred shapes are checked against
 * the shapes onnxruntime computes for the same graph at a concrete batch.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import { hasFactor, productDim, quotientDim, substituteDim } from "../../src/core/onnx/dim-product";
import { type Dim, inferShapes } from "../../src/core/onnx/shape-inference";

describe("dim products", () => {
  it("writes one canonical monomial: coefficient first, factors sorted, 1 omitted", () => {
    expect(productDim(["batch", 16])).toBe("16*batch");
    expect(productDim([16, "batch"])).toBe("16*batch");
    expect(productDim(["sequence", "batch"])).toBe("batch*sequence");
    expect(productDim(["16*batch", 2, "sequence"])).toBe("32*batch*sequence");
    expect(productDim([3, 4])).toBe(12);
    expect(productDim(["batch", 1])).toBe("batch");
    expect(productDim(["batch", 0])).toBe(0);
    expect(productDim([])).toBe(1);
  });

  it("divides exactly or not at all", () => {
    expect(quotientDim(["16*batch", 96], [16, 96])).toBe("batch");
    expect(quotientDim(["batch", "sequence", 32], ["batch", 32])).toBe("sequence");
    expect(quotientDim(["batch", 16, 32], [32])).toBe("16*batch");
    expect(quotientDim([12], [4])).toBe(3);
    expect(quotientDim(["16*batch"], [3])).toBeUndefined();
    expect(quotientDim(["batch", 16], ["sequence"])).toBeUndefined();
    expect(quotientDim([16], [0])).toBeUndefined();
  });

  it("never writes a fresh symbol into a product, only alone", () => {
    expect(productDim(["?3", 16])).toBeUndefined();
    expect(productDim(["?3", "batch"])).toBeUndefined();
    expect(productDim(["?3", 1])).toBe("?3");
    expect(quotientDim(["?3", 16, 32], [16, 32])).toBe("?3");
    expect(quotientDim(["?3", 16, 32], [32])).toBeUndefined();
  });

  it("finds and substitutes a factor", () => {
    expect(hasFactor("batch", "batch")).toBe(true);
    expect(hasFactor("16*batch", "batch")).toBe(true);
    expect(hasFactor("batch*sequence", "batch")).toBe(true);
    expect(hasFactor("batch_size", "batch")).toBe(false);
    expect(hasFactor(16, "batch")).toBe(false);
    expect(substituteDim("16*batch", "batch", 2)).toBe(32);
    expect(substituteDim("batch*sequence", "batch", 1)).toBe("sequence");
    expect(substituteDim("batch*batch", "batch", 3)).toBe(9);
    expect(substituteDim("sequence", "batch", 3)).toBe("sequence");
  });
});

/** x [batch, 16, H] → Reshape target → MatMul [H, OUT] → Reshape target: tf.tensordot as tf2onnx folds it. */
function flattenRestore(flat: number[], back: number[]): { g: Graph; values: string[] } {
  const g = new Graph();
  const x = g.addInput("x", "float32", ["batch", 16, 4]);
  const f = g.op("Reshape", [x, g.constInts(flat)]);
  const w = tensor(
    "float32",
    [4, 3],
    Array.from({ length: 12 }, (_, i) => i / 10),
  );
  const mm = g.op("MatMul", [f, g.constant(w, "w")]);
  const y = g.op("Reshape", [mm, g.constInts(back)], {}, { output: "y" });
  g.addOutput("y");
  return { g, values: [f, mm, y] };
}

async function ortShapes(g: Graph, values: string[], batch: number): Promise<number[][]> {
  const probe = g.clone();
  probe.outputs = values.map((name) => ({ name, dtype: "float32" }));
  const session = await ort.InferenceSession.create(encodeModel(probe));
  const x = new ort.Tensor("float32", new Float32Array(batch * 16 * 4), [batch, 16, 4]);
  const out = await session.run({ x });
  await session.release();
  return values.map((v) => [...out[v].dims]);
}

const at = (shape: Dim[] | undefined, batch: number) =>
  shape?.map((d) => (typeof d === "number" ? d : substituteDim(d, "batch", batch)));

describe("shape inference with dim products", () => {
  it.each([
    [
      [-1, 4],
      [-1, 16, 3],
      ["batch", 16, 3],
    ],
    [
      [-1, 4],
      [2, -1, 3],
      [2, "8*batch", 3],
    ],
    [
      [-1, 4],
      [-1, 3],
      ["16*batch", 3],
    ],
  ])("flatten %j, restore %j: %j, as onnxruntime computes", async (flat, back, want) => {
    const { g, values } = flattenRestore(flat, back);
    const info = inferShapes(g);
    expect(info.get(values[0])?.shape).toEqual(["16*batch", 4]);
    expect(info.get(values[1])?.shape).toEqual(["16*batch", 3]);
    expect(info.get("y")?.shape).toEqual(want);
    const shapes = await ortShapes(g, values, 3);
    expect(shapes).toEqual(values.map((v) => at(info.get(v)?.shape, 3)));
  });

  it("tracks tensordot's flatten size ReduceProd(Shape[0:2]) and a Mul of dims as products", () => {
    const g = new Graph();
    const x = g.addInput("x", "float32", ["batch", "sequence", 4]);
    const shape = g.op("Shape", [x]);
    const free = g.op("Slice", [shape, g.constInts([0]), g.constInts([2]), g.constInts([0])]);
    const prod = g.op("ReduceProd", [free], { keepdims: 0 });
    const b = g.op("Gather", [shape, g.constant(tensor("int64", [], [0]))], { axis: 0 });
    const s = g.op("Gather", [shape, g.constant(tensor("int64", [], [1]))], { axis: 0 });
    const bs = g.op("Mul", [b, s]);
    const flat = g.op("Flatten", [x], { axis: 2 });
    const info = inferShapes(g);
    expect(info.get(prod)?.value).toEqual(["batch*sequence"]);
    expect(info.get(bs)?.value).toEqual(["batch*sequence"]);
    expect(info.get(flat)?.shape).toEqual(["batch*sequence", 4]);
  });
});
