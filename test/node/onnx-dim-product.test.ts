/**
 * Products of dim symbols (core/onnx/dim-product.ts) and what shape inference does with them: a flatten of
 * [batch, 16, H] and the Reshape that restores it keep `batch` exactly. The inferred shapes are checked against
 * the shapes onnxruntime computes for the same graph at a concrete batch.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import {
  hasFactor,
  inferredDim,
  leadsWith,
  productDim,
  substituteDim,
} from "../../src/core/onnx/dim-product";
import { type Dim, inferShapes } from "../../src/core/onnx/shape-inference";

describe("dim products", () => {
  it("writes products in layout order, outermost first: adjacent numbers merged, 1s dropped", () => {
    expect(productDim(["batch", 16])).toBe("batch*16");
    expect(productDim([16, "batch"])).toBe("16*batch");
    expect(productDim(["batch", "sequence"])).toBe("batch*sequence");
    expect(productDim(["batch*16", 2, "sequence"])).toBe("batch*32*sequence");
    expect(productDim(["batch", 4, 8])).toBe("batch*32");
    expect(productDim([3, 4])).toBe(12);
    expect(productDim(["batch", 1])).toBe("batch");
    expect(productDim(["batch", 0])).toBe(0);
    expect(productDim([])).toBe(1);
  });

  it("infers a Reshape's -1 by peeling the other dims off the front and back, in order", () => {
    // [batch, 16, H] flattened to [batch*16, H'] and restored as [-1, 16, H'] or [batch, -1, H'].
    expect(inferredDim(["batch*16", 96], [], [16, 96])).toBe("batch");
    expect(inferredDim(["batch*16", 96], ["batch"], [96])).toBe(16);
    expect(inferredDim(["batch", "sequence", 32], ["batch"], [32])).toBe("sequence");
    expect(inferredDim(["batch", "sequence", 32], ["batch"], [4, 8])).toBe("sequence");
    expect(inferredDim(["batch", "sequence", 32], ["batch", "sequence", 4], [])).toBe(8);
    expect(inferredDim(["batch", 16, 32], [], [32])).toBe("batch*16");
    expect(inferredDim(["batch", 4, 8], ["batch", 2], [])).toBe(16);
    expect(inferredDim([12], [], [4])).toBe(3);
  });

  it("finds no -1 where the layout does not split that way, even when the sizes divide", () => {
    // Flattened sequence-first ([16, batch]): restoring batch-first would mix the rows of batch items.
    expect(inferredDim(["16*batch", 96], [], [16, 96])).toBeUndefined();
    // [2, batch, 3] as rows of 6 spans two batch items.
    expect(inferredDim([2, "batch", 3], [], [6])).toBeUndefined();
    expect(inferredDim(["batch*16"], [], [3])).toBeUndefined();
    expect(inferredDim(["batch", 16], [], ["sequence"])).toBeUndefined();
    expect(inferredDim([16], [], [0])).toBeUndefined();
  });

  it("never writes a fresh symbol into a product, only alone", () => {
    expect(productDim(["?3", 16])).toBeUndefined();
    expect(productDim(["?3", "batch"])).toBeUndefined();
    expect(productDim(["?3", 1])).toBe("?3");
    expect(inferredDim(["?3", 16, 32], [], [16, 32])).toBe("?3");
    expect(inferredDim(["?3", 16, 32], ["?3"], [])).toBe(512);
    expect(inferredDim(["?3", 16, 32], [], [32])).toBeUndefined();
  });

  it("tells whether a symbol is the outermost factor of a layout", () => {
    expect(leadsWith(["batch*16", 32], "batch")).toBe(true);
    expect(leadsWith([1, "batch*16", 32], "batch")).toBe(true);
    expect(leadsWith(["16*batch", 32], "batch")).toBe(false);
    expect(leadsWith([16, "batch", 32], "batch")).toBe(false);
  });

  it("finds and substitutes a factor", () => {
    expect(hasFactor("batch", "batch")).toBe(true);
    expect(hasFactor("batch*16", "batch")).toBe(true);
    expect(hasFactor("sequence*batch", "batch")).toBe(true);
    expect(hasFactor("batch_size", "batch")).toBe(false);
    expect(hasFactor(16, "batch")).toBe(false);
    expect(substituteDim("batch*16", "batch", 2)).toBe(32);
    expect(substituteDim("batch*sequence", "batch", 1)).toBe("sequence");
    expect(substituteDim("batch*4*batch", "batch", 3)).toBe(36);
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
      [-1, 4, 3],
      ["batch*4", 4, 3],
    ],
    [
      [-1, 4],
      [-1, 3],
      ["batch*16", 3],
    ],
  ])("flatten %j, restore %j: %j, as onnxruntime computes", async (flat, back, want) => {
    const { g, values } = flattenRestore(flat, back);
    const info = inferShapes(g);
    expect(info.get(values[0])?.shape).toEqual(["batch*16", 4]);
    expect(info.get(values[1])?.shape).toEqual(["batch*16", 3]);
    expect(info.get("y")?.shape).toEqual(want);
    const shapes = await ortShapes(g, values, 3);
    expect(shapes).toEqual(values.map((v) => at(info.get(v)?.shape, 3)));
  });

  it("gives a restore that would split the batch's rows a fresh dim ([2, -1, 3] on [batch*16, 3])", () => {
    const { g } = flattenRestore([-1, 4], [2, -1, 3]);
    const y = inferShapes(g).get("y")?.shape;
    expect(y?.[0]).toBe(2);
    expect(String(y?.[1])).toMatch(/^\?/);
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
