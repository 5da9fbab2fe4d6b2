import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import { colGateInput, insertGates, rowGateInput } from "../../src/trainer-node/gates/insert";
import { findLinearLayers } from "../../src/trainer-node/import/linears";
import { selectGatedLayers } from "../../src/trainer-node/import/recognize";

const cfg = {
  vocabSize: 40,
  hidden: 16,
  heads: 2,
  ffn: 24,
  layers: 2,
  maxPositions: 16,
  numLabels: 2,
  initStd: 0.3,
};
const ids = new ort.Tensor("int64", BigInt64Array.from([2n, 5n, 7n, 9n, 3n]), [1, 5]);
const mask = new ort.Tensor("int64", BigInt64Array.from([1n, 1n, 1n, 1n, 1n]), [1, 5]);

describe("gated layers", () => {
  for (const layout of ["bert", "distilbert", "roberta", "bert-preln"] as const) {
    it(`finds the six encoder linears per layer of ${layout}, not the head`, () => {
      const g = buildEncoder({ ...cfg, layout });
      const gated = selectGatedLayers(g);
      expect(gated).toHaveLength(12);
      expect(gated.every((l) => l.op === "MatMul" && l.bias)).toBe(true);
      expect(gated.filter((l) => l.inFeatures === 24)).toHaveLength(2); // FFN out
      expect(findLinearLayers(g).length).toBeGreaterThan(12); // heads are Gemms
    });
  }

  it("open gates leave the model unchanged; a closed gate changes it", async () => {
    const base = buildEncoder(cfg);
    const baseOut = (
      await (
        await ort.InferenceSession.create(encodeModel(base))
      ).run({ input_ids: ids, attention_mask: mask })
    ).logits.data as Float32Array;
    const layers = selectGatedLayers(base);
    const gated = insertGates(base.clone(), layers);
    const session = await ort.InferenceSession.create(encodeModel(gated));
    const gateFeeds = (closeFirst: boolean) => {
      const f: Record<string, ort.Tensor> = { input_ids: ids, attention_mask: mask };
      for (const [i, l] of layers.entries()) {
        const c = new Float32Array(l.inFeatures).fill(1);
        if (closeFirst && i === 0) c.fill(0, 0, 8);
        f[colGateInput(l.node)] = new ort.Tensor("float32", c, [l.inFeatures]);
        f[rowGateInput(l.node)] = new ort.Tensor("float32", new Float32Array(l.outFeatures).fill(1), [
          l.outFeatures,
        ]);
      }
      return f;
    };
    const open = (await session.run(gateFeeds(false))).logits.data as Float32Array;
    for (let i = 0; i < 2; i++) expect(open[i]).toBeCloseTo(baseOut[i], 6);
    const closed = (await session.run(gateFeeds(true))).logits.data as Float32Array;
    expect(Math.abs(closed[0] - open[0]) + Math.abs(closed[1] - open[1])).toBeGreaterThan(1e-5);
  });
});
