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
  PAIR_ENCODER,
  PAIR_MAX_TOKENS,
  PAIR_TOKENIZER,
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
  // Sentence pairs: the reference ids and token type ids come from the Python tokenizer (make_pair_fixtures.py),
  // not from the gateway's tokenizer code; padding with the file's pad id, masked.
  const pairModel = encodeModel(buildEncoder(PAIR_ENCODER));
  const pairSession = await ort.InferenceSession.create(pairModel);
  const cases = pairCases();
  const pairSeq = Math.max(...cases.map((c) => c.ids.length));
  const pad = loadTokenizer(
    readFileSync(path.join(import.meta.dirname, `../fixtures/hf/${PAIR_TOKENIZER}/tokenizer.json`), "utf8"),
  ).specialIds.pad;
  const grid = (f: (c: PairCase, t: number) => number) =>
    BigInt64Array.from(cases.flatMap((c) => Array.from({ length: pairSeq }, (_, t) => BigInt(f(c, t)))));
  const pairFeeds = (types: boolean) => ({
    input_ids: new ort.Tensor(
      "int64",
      grid((c, t) => c.ids[t] ?? pad),
      [cases.length, pairSeq],
    ),
    attention_mask: new ort.Tensor(
      "int64",
      grid((c, t) => (t < c.ids.length ? 1 : 0)),
      [cases.length, pairSeq],
    ),
    token_type_ids: new ort.Tensor(
      "int64",
      grid((c, t) => (types ? (c.typeIds[t] ?? 0) : 0)),
      [cases.length, pairSeq],
    ),
  });
  const pairOut = await pairSession.run(pairFeeds(true));
  const pairZeroTypes = await pairSession.run(pairFeeds(false));
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
    pairs: {
      modelSha256: await sha256(pairModel),
      logits: { shape: [...pairOut.logits.dims], data: Array.from(pairOut.logits.data as Float32Array) },
      /** The same pairs with every token type 0: what a gateway that ignored the pair template would answer. */
      zeroTypeLogits: Array.from(pairZeroTypes.logits.data as Float32Array),
    },
  };
}

interface PairCase {
  text: string;
  textPair: string;
  maxLen: number;
  ids: number[];
  typeIds: number[];
}

function pairCases(): PairCase[] {
  const all = JSON.parse(
    readFileSync(path.join(import.meta.dirname, "../fixtures/tokenizer-pairs.json"), "utf8"),
  );
  return (all[PAIR_TOKENIZER].cases as PairCase[]).filter((c) => c.maxLen === PAIR_MAX_TOKENS);
}

it("gateway-expected.json holds onnxruntime-node's outputs for the gateway test models", async () => {
  const fresh = await expected();
  if (process.env.UPDATE_FIXTURES || !existsSync(FIXTURE)) {
    writeFileSync(FIXTURE, `${JSON.stringify(fresh, null, 1)}\n`);
  }
  const stored = JSON.parse(readFileSync(FIXTURE, "utf8"));
  expect(stored.infer.modelSha256).toBe(fresh.infer.modelSha256);
  expect(stored.classify.modelSha256).toBe(fresh.classify.modelSha256);
  expect(stored.pairs.modelSha256).toBe(fresh.pairs.modelSha256);
  expect(stored.pairs.logits.shape).toEqual([pairCases().length, 3]);
  // The token type ids move the logits, so the workerd test can tell whether the gateway fed them.
  const moved = Math.max(
    ...stored.pairs.logits.data.map((x: number, i: number) => Math.abs(x - stored.pairs.zeroTypeLogits[i])),
  );
  expect(moved).toBeGreaterThan(1e-2);
  expect(stored.infer.logits.shape).toEqual([3, 3]);
  expect(stored.classify.logits.shape).toEqual([CLASSIFY_TEXTS.length, 2]);
  // Same library and bytes; another CPU may pick other kernels (AVX2 vs AVX-512), so allow float noise.
  for (const key of ["infer", "classify", "pairs"] as const) {
    stored[key].logits.data.forEach((x: number, i: number) => {
      expect(Math.abs(x - fresh[key].logits.data[i])).toBeLessThanOrEqual(1e-5);
    });
  }
});
