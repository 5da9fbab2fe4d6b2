import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildEncoder, type EncoderLayout } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";

const small = {
  vocabSize: 50,
  hidden: 16,
  heads: 2,
  ffn: 32,
  layers: 2,
  maxPositions: 16,
  numLabels: 3,
  initStd: 0.2,
};

function feeds(ids: number[][], lengths: number[]) {
  const seq = ids[0].length;
  const flat = BigInt64Array.from(ids.flat().map(BigInt));
  const mask = BigInt64Array.from(
    ids.flatMap((_, b) => Array.from({ length: seq }, (_, s) => BigInt(s < lengths[b] ? 1 : 0))),
  );
  return {
    input_ids: new ort.Tensor("int64", flat, [ids.length, seq]),
    attention_mask: new ort.Tensor("int64", mask, [ids.length, seq]),
  };
}

describe("buildEncoder", () => {
  for (const layout of ["bert", "distilbert", "roberta", "bert-preln"] as EncoderLayout[]) {
    for (const layerNorm of ["fused", "decomposed"] as const) {
      it(`${layout} (${layerNorm} LayerNorm) runs in onnxruntime and ignores padding`, async () => {
        const session = await ort.InferenceSession.create(
          encodeModel(buildEncoder({ ...small, layout, layerNorm })),
        );
        const short = await session.run(feeds([[2, 7, 9, 3]], [4]));
        const padded = await session.run(feeds([[2, 7, 9, 3, 0, 0, 0]], [4]));
        const a = short.logits.data as Float32Array;
        const b = padded.logits.data as Float32Array;
        expect(short.logits.dims).toEqual([1, 3]);
        expect(a.every(Number.isFinite)).toBe(true);
        for (let i = 0; i < 3; i++) expect(b[i]).toBeCloseTo(a[i], 5);
        // The model does look at the tokens: changing one changes the logits.
        const other = (await session.run(feeds([[2, 8, 9, 3]], [4]))).logits.data as Float32Array;
        expect(Math.max(...a.map((v, i) => Math.abs(v - other[i])))).toBeGreaterThan(1e-4);
      });
    }
  }

  it("has an MLM head tied to the word embeddings", async () => {
    const g = buildEncoder({ ...small, head: "mlm" });
    const session = await ort.InferenceSession.create(encodeModel(g));
    const out = await session.run(feeds([[2, 7, 9, 3]], [4]));
    expect(out.mlm_logits.dims).toEqual([1, 4, 50]);
    expect(g.nodes.find((n) => n.name === "/cls/predictions/decoder/Transpose")?.inputs).toEqual([
      "bert.embeddings.word_embeddings.weight",
    ]);
  });
});
