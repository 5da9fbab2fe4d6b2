import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx/codec";
import { encodeText } from "../../src/core/tokenizer";
import { loadPretrainingCorpus } from "../../src/trainer-node/data/corpus";
import { loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import { prepareTaskGraph } from "../../src/trainer-node/gates/checkpoint";
import {
  deserialiseIds,
  packSequences,
  sequenceAt,
  serialiseIds,
} from "../../src/trainer-node/pretrain/corpus-ids";
import { encoderWithoutHead } from "../../src/trainer-node/pretrain/graphs";
import { learningRate, noDecay, type PretrainOptions, pretrain } from "../../src/trainer-node/pretrain/loop";

const tok = loadTokenizerFile();
const corpus = loadPretrainingCorpus();
const SEQ = 48;
// A small slice of the real corpus, tokenized here (the full corpus takes ~18 s).
const train = packSequences(corpus.train.slice(0, 320).map((t) => encodeText(tok, t, SEQ)));
const validation = packSequences(corpus.validation.slice(0, 48).map((t) => encodeText(tok, t, SEQ)));
const base = buildEncoder({
  layers: 2,
  hidden: 32,
  heads: 2,
  ffn: 64,
  maxPositions: 64,
  vocabSize: tok.vocabSize,
  head: "mlm",
  seed: 3,
});
const common: PretrainOptions = {
  base,
  train,
  validation,
  padId: tok.specialIds.pad,
  maskId: tok.specialIds.mask!,
  specialIds: [...tok.allSpecialIds],
  vocabSize: tok.vocabSize,
  steps: 30,
  batchSize: 16,
  lr: 3e-3,
  warmup: 3,
  evalEvery: 10,
  evalSequences: 48,
  threads: 1,
  seed: 5,
  progress: null,
};
const tmp = mkdtempSync(path.join(os.tmpdir(), "sluice-pretrain-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("pretrain", () => {
  it("a short MLM run on a tiny encoder lowers training and validation loss; the encoder is saved without its head", async () => {
    const r = await pretrain(common);
    expect(r.steps).toBe(30);
    expect(r.curve).toHaveLength(30);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(r.curve.slice(0, 5).map((p) => p.loss));
    const last = mean(r.curve.slice(-5).map((p) => p.loss));
    expect(first).toBeGreaterThan(Math.log(tok.vocabSize) - 0.5); // starts near uniform over the vocabulary
    expect(last).toBeLessThan(first - 0.7);
    expect(r.evals.map((e) => e.step)).toEqual([0, 10, 20, 30]);
    expect(r.evals[3].loss).toBeLessThan(r.evals[0].loss - 0.7);
    // Every weight was trained, including the tied word embeddings and the MLM head.
    const embedding = "bert.embeddings.word_embeddings.weight";
    expect(r.weights.get(embedding)).not.toEqual(base.initializers.get(embedding)!.data);
    expect(r.weights.get("cls.predictions.bias")!.some((x) => x !== 0)).toBe(true);

    const encoder = encoderWithoutHead(base, r.weights);
    expect(encoder.outputs.map((o) => o.name)).toEqual(["last_hidden_state"]);
    expect([...encoder.initializers.keys()].some((n) => n.startsWith("cls."))).toBe(false);
    expect(encoder.initializers.get(embedding)!.data).toEqual(r.weights.get(embedding));
    const session = await ort.InferenceSession.create(encodeModel(encoder));
    const ids = new BigInt64Array([2n, 100n, 200n, 3n]);
    const out = await session.run({
      input_ids: new ort.Tensor("int64", ids, [1, 4]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(4).fill(1n), [1, 4]),
    });
    expect(out.last_hidden_state.dims).toEqual([1, 4, 32]);
    await session.release();
    // The trainer's task graph (classifier on top) accepts it.
    expect(prepareTaskGraph(encoder, 2).head.kind).toBe("linear");
  });

  it("resuming from a checkpoint continues exactly as the uninterrupted run", async () => {
    const opts = { ...common, steps: 12, evalEvery: 4, evalSequences: 16 };
    const whole = await pretrain({ ...opts, checkpointDir: path.join(tmp, "whole") });
    const dir = path.join(tmp, "split");
    const part = await pretrain({ ...opts, checkpointDir: dir, stopAfter: 5 });
    expect(part.interrupted).toBe(true);
    expect(part.steps).toBe(5);
    const resumed = await pretrain({ ...opts, checkpointDir: dir, resume: true });
    expect(resumed.steps).toBe(12);
    expect(resumed.curve).toEqual(whole.curve);
    expect(resumed.evals).toEqual(whole.evals);
    for (const [name, w] of whole.weights) expect(resumed.weights.get(name), name).toEqual(w);
    await expect(pretrain({ ...opts, lr: 1e-2, checkpointDir: dir, resume: true })).rejects.toThrow(
      /different settings/,
    );
  });

  it("round-trips tokenized corpus ids through the cache format and rejects a truncated file", () => {
    const buf = serialiseIds(train, validation);
    const back = deserialiseIds(buf);
    expect(back.train.offsets).toEqual(train.offsets);
    expect(back.train.ids).toEqual(train.ids);
    expect(back.validation.ids).toEqual(validation.ids);
    expect(Array.from(sequenceAt(back.validation, 3))).toEqual(encodeText(tok, corpus.validation[3], SEQ));
    expect(() => deserialiseIds(buf.subarray(0, buf.length - 4))).toThrow();
  });

  it("schedules warmup then linear decay, and exempts LayerNorm and biases from weight decay", () => {
    const c = { lr: 1e-3, warmup: 10, steps: 110 };
    expect(learningRate(0, c)).toBeCloseTo(1e-4);
    expect(learningRate(9, c)).toBeCloseTo(1e-3);
    expect(learningRate(60, c)).toBeCloseTo(0.5e-3);
    expect(learningRate(109, c)).toBeCloseTo(1e-5);
    expect(noDecay("bert.encoder.layer.0.attention.output.LayerNorm.weight")).toBe(true);
    expect(noDecay("bert.encoder.layer.0.intermediate.dense.bias")).toBe(true);
    expect(noDecay("onnx::MatMul_1003")).toBe(false);
    expect(noDecay("bert.embeddings.word_embeddings.weight")).toBe(false);
  });
});
