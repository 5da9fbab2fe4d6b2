// Writes (first run, or UPDATE_FIXTURES=1) and otherwise checks test/fixtures/gateway-expected.json: the outputs
// onnxruntime-node gives for the gateway test models, which the workerd tests compare the gateway against.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { expect, it } from "vitest";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import { encodeBatch, loadTokenizer } from "../../src/core/tokenizer";
import {
  CLASSIFY_ENCODER,
  CLASSIFY_MAX_TOKENS,
  CLASSIFY_TEXTS,
  INFER_ENCODER,
  INFER_INPUTS,
} from "../fixtures/gateway-models";

const FIXTURE = path.join(import.meta.dirname, "../fixtures/gateway-expected.json");
const sha256 = async (bytes: Uint8Array) =>
  Buffer.from(await crypto.subtle.digest("SHA-256", bytes)).toString("hex");

async function expected() {
  const inferModel = encodeModel(buildEncoder(INFER_ENCODER));
  const inferSession = await ort.InferenceSession.create(inferModel);
  const [batch, seq] = INFER_INPUTS.shape;
  const ids = BigInt64Array.from(INFER_INPUTS.inputIds.flat().map(BigInt));
  const mask = BigInt64Array.from(INFER_INPUTS.attentionMask.flat().map(BigInt));
  const inferOut = await inferSession.run({
    input_ids: new ort.Tensor("int64", ids, [batch, seq]),
    attention_mask: new ort.Tensor("int64", mask, [batch, seq]),
  });

  const classifyModel = encodeModel(buildEncoder(CLASSIFY_ENCODER));
  const classifySession = await ort.InferenceSession.create(classifyModel);
  const tokenizer = loadTokenizer(
    readFileSync(path.join(import.meta.dirname, "../../models/tokenizer.json"), "utf8"),
  );
  const enc = encodeBatch(tokenizer, CLASSIFY_TEXTS, CLASSIFY_MAX_TOKENS);
  const classifyOut = await classifySession.run({
    input_ids: new ort.Tensor("int64", enc.inputIds, [enc.batch, enc.seqLen]),
    attention_mask: new ort.Tensor("int64", enc.attentionMask, [enc.batch, enc.seqLen]),
  });
  return {
    runtime: `onnxruntime-node ${ort.env.versions.node ?? ""}`.trim(),
    infer: {
      modelSha256: await sha256(inferModel),
      logits: { shape: [...inferOut.logits.dims], data: Array.from(inferOut.logits.data as Float32Array) },
    },
    classify: {
      modelSha256: await sha256(classifyModel),
      seqLen: enc.seqLen,
      logits: {
        shape: [...classifyOut.logits.dims],
        data: Array.from(classifyOut.logits.data as Float32Array),
      },
    },
  };
}

it("gateway-expected.json holds onnxruntime-node's outputs for the gateway test models", async () => {
  const fresh = await expected();
  if (process.env.UPDATE_FIXTURES || !existsSync(FIXTURE)) {
    writeFileSync(FIXTURE, `${JSON.stringify(fresh, null, 1)}\n`);
  }
  const stored = JSON.parse(readFileSync(FIXTURE, "utf8"));
  expect(stored.infer.modelSha256).toBe(fresh.infer.modelSha256);
  expect(stored.classify.modelSha256).toBe(fresh.classify.modelSha256);
  expect(stored.infer.logits.shape).toEqual([3, 3]);
  expect(stored.classify.logits.shape).toEqual([CLASSIFY_TEXTS.length, 2]);
  // Same library and bytes; another CPU may pick other kernels (AVX2 vs AVX-512), so allow float noise.
  for (const key of ["infer", "classify"] as const) {
    stored[key].logits.data.forEach((x: number, i: number) => {
      expect(Math.abs(x - fresh[key].logits.data[i])).toBeLessThanOrEqual(1e-5);
    });
  }
});
