import { describe, expect, it } from "vitest";
import { buildEncoder } from "../../src/core/models/encoder";
import { Graph } from "../../src/core/onnx";
import { broadcastShapes, inferShapes, sliceIndices } from "../../src/core/onnx/shape-inference";

describe("static shape inference", () => {
  it("broadcasts numbers and symbols numpy-style", () => {
    expect(broadcastShapes([["batch", 1, "seq"], [4, 1], ["seq"]])).toEqual(["batch", 4, "seq"]);
    expect(broadcastShapes([[], [2, 3]])).toEqual([2, 3]);
    expect(broadcastShapes([[2, 3], undefined])).toBeUndefined();
  });

  it("follows ONNX Slice clamping rules", () => {
    expect(sliceIndices(5, -2, 2 ** 31 - 1, 1)).toEqual([3, 4]);
    expect(sliceIndices(5, 4, 0, -2)).toEqual([4, 2]);
    expect(sliceIndices(5, 7, 9, 1)).toEqual([]);
  });

  it("tiles: repeats of 1 keep the dim, a dim of 1 takes the repeat (a symbol too), numbers multiply", () => {
    const g = new Graph();
    const x = g.addInput("x", "float32", [1, "seq", 3]);
    const batch = g.op("Shape", [g.addInput("ids", "int64", ["batch", "seq"])], { start: 0, end: 1 });
    const repeats = g.op("Concat", [batch, g.constInts([1, 2])], { axis: 0 });
    const y = g.op("Tile", [x, repeats]);
    expect(inferShapes(g).get(y)?.shape).toEqual(["batch", "seq", 6]);
  });

  it("resolves exporter reshape targets (0, -1, Shape/Gather/Concat chains) to symbolic dims", () => {
    const g = new Graph();
    const x = g.addInput("x", "float32", ["batch", "seq", 8]);
    const heads = g.op("Reshape", [x, g.constInts([0, 0, 2, -1])]);
    const t = g.op("Transpose", [heads], { perm: [0, 2, 1, 3] });
    const shape = g.op("Shape", [x]);
    const b = g.op("Gather", [shape, g.constInts([0])], { axis: 0 });
    const merged = g.op("Reshape", [t, g.op("Concat", [b, g.constInts([-1, 8])], { axis: 0 })]);
    const flat = g.op("Reshape", [x, g.constInts([-1, 8])]);
    const info = inferShapes(g);
    expect(info.get(heads)?.shape).toEqual(["batch", "seq", 2, 4]);
    expect(info.get(t)?.shape).toEqual(["batch", 2, "seq", 4]);
    expect(info.get(b)?.value).toEqual(["batch"]);
    expect(info.get(merged)?.shape?.slice(0, 1)).toEqual(["batch"]);
    expect(info.get(merged)?.shape?.[2]).toBe(8);
    expect(info.get(flat)?.shape?.[1]).toBe(8);
  });

  it("gives every value of an HF-layout encoder a dtype and a rank; logits are [batch, labels]", () => {
    const g = buildEncoder({
      layers: 1,
      hidden: 8,
      heads: 2,
      ffn: 16,
      vocabSize: 30,
      maxPositions: 16,
      numLabels: 3,
    });
    const info = inferShapes(g);
    for (const n of g.nodes)
      for (const o of n.outputs) {
        expect(info.get(o)?.dtype, o).toBeDefined();
        expect(info.get(o)?.shape, o).toBeDefined();
      }
    expect(info.get("logits")?.shape).toEqual(["batch", 3]);
  });
});
