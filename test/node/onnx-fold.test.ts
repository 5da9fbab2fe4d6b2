import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import { foldConstants } from "../../src/core/onnx/fold";
import { inferShapes } from "../../src/core/onnx/shape-inference";

async function run(g: Graph, feeds: Record<string, ort.Tensor>) {
  return (await ort.InferenceSession.create(encodeModel(g))).run(feeds);
}

/** Reshape target built the way the PyTorch exporter writes it: Shape -> Gather -> Unsqueeze -> Concat. */
function headsReshape(batch: number | string): Graph {
  const g = new Graph();
  const x = g.addInput("x", "float32", [batch, 3, 4]);
  const shape = g.op("Shape", [x]);
  const dims = [0, 1].map((i) =>
    g.op("Unsqueeze", [
      g.op("Gather", [shape, g.constant(tensor("int64", [], [i]))], { axis: 0 }),
      g.constInts([0]),
    ]),
  );
  const heads = g.addNode("Constant", [], { value: tensor("int64", [1], [2]) })[0];
  const hd = g.op("Cast", [g.op("Div", [g.op("Cast", [g.constInts([4])], { to: 1 }), g.constFloat(2)])], {
    to: 7,
  });
  const target = g.op("Concat", [...dims, heads, hd], { axis: 0 });
  g.op("Reshape", [x, target], {}, { output: "y" });
  g.addOutput("y");
  return g;
}

describe("constant folding of shape arithmetic", () => {
  it("folds a whole reshape-target chain when the input shape is static", async () => {
    const g = headsReshape(2);
    const before = g.nodes.length;
    const report = foldConstants(g);
    expect(g.nodes.map((n) => n.op)).toEqual(["Reshape"]);
    expect(report.removed).toBe(before - 1);
    expect(report.constants).toBe(1);
    const target = g.initializers.get(g.nodes[0].inputs[1])!;
    expect(Array.from(target.data, Number)).toEqual([2, 3, 2, 2]);
    const x = new ort.Tensor(
      "float32",
      Float32Array.from({ length: 24 }, (_, i) => i),
      [2, 3, 4],
    );
    expect((await run(g, { x })).y.dims).toEqual([2, 3, 2, 2]);
  });

  it("keeps the run-time part when the batch is symbolic, folds the rest, same results", async () => {
    const g = headsReshape("batch");
    const ref = await run(headsReshape("batch"), {
      x: new ort.Tensor("float32", new Float32Array(36), [3, 3, 4]),
    });
    foldConstants(g);
    // dim 1 (static 3) and head arithmetic fold; Shape -> Gather(0) -> Unsqueeze stays for the batch.
    expect(g.nodes.map((n) => n.op).sort()).toEqual(
      ["Concat", "Gather", "Reshape", "Shape", "Unsqueeze"].sort(),
    );
    const out = await run(g, { x: new ort.Tensor("float32", new Float32Array(36), [3, 3, 4]) });
    expect(out.y.dims).toEqual(ref.y.dims);
    expect(inferShapes(g).get("y")?.shape).toEqual(["batch", 3, 2, 2]);
  });

  it("shrinks an HF-layout encoder exported with static shapes without changing its outputs", async () => {
    const g = buildEncoder({ layers: 2, hidden: 8, heads: 2, ffn: 16, vocabSize: 30, maxPositions: 16 });
    for (const input of g.inputs) input.shape = [2, 3];
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from([1n, 5n, 7n, 2n, 3n, 9n]), [2, 3]),
      attention_mask: new ort.Tensor("int64", BigInt64Array.from([1n, 1n, 1n, 1n, 1n, 0n]), [2, 3]),
    };
    const ref = (await run(g, feeds)).logits.data as Float32Array;
    const folded = g.clone();
    const report = foldConstants(folded);
    expect(report.folded).toBeGreaterThan(0);
    expect(folded.nodes.filter((n) => n.op === "Shape")).toEqual([]);
    const out = (await run(folded, feeds)).logits.data as Float32Array;
    out.forEach((v, i) => {
      expect(v).toBeCloseTo(ref[i], 6);
    });
  });

  it("keeps an INT64_MAX Slice end (9223372036854775807) from wrapping to INT64_MIN when it is folded", async () => {
    // torch_lib / the dynamo exporter write `x[..., a:]` as Slice(x, [a], [INT64_MAX]); the end is 2^63 as a
    // JS number, which a BigInt64Array would store as INT64_MIN ("slice nothing").
    const g = new Graph({ opset: 18 });
    const x = g.addInput("x", "float32", ["batch", 6]);
    const end = g.addNode("Constant", [], { value: tensor("int64", [1], [9223372036854775807n]) })[0];
    const ends = g.op("Identity", [g.op("Concat", [end], { axis: 0 })]);
    g.op("Slice", [x, g.constInts([2]), ends, g.constInts([1])], {}, { output: "y" });
    g.addOutput("y");
    const feeds = {
      x: new ort.Tensor(
        "float32",
        Float32Array.from({ length: 12 }, (_, i) => i),
        [2, 6],
      ),
    };
    const ref = await run(g, feeds);
    foldConstants(g);
    expect(g.nodes.map((n) => n.op)).toEqual(["Slice"]);
    expect(g.initializers.get(g.nodes[0].inputs[2])?.data).toEqual(
      BigInt64Array.from([9223372036854775807n]),
    );
    const out = await run(g, feeds);
    expect(out.y.dims).toEqual([2, 4]);
    expect(out.y.data).toEqual(ref.y.data);
  });
});
