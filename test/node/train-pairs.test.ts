// A sentence-pair task end to end through the CLI: `sluice train` on premise/hypothesis rows with an HF BERT
// export that takes token_type_ids, then `sluice export` from the checkpoint alone (the fields travel in it),
// checked against the gated model in onnxruntime-node on pairs encoded with their token type ids.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { decodeBitset } from "../../src/core/evidence";
import { parseManifest } from "../../src/core/manifest";
import { encodeModel, Graph } from "../../src/core/onnx";
import { encodeBatch, loadTokenizer } from "../../src/core/tokenizer";
import { loadDataFile } from "../../src/trainer-node/data/tasks";
import { gatedModel } from "../../src/trainer-node/export/export";
import { feedsFor, type TokenBatch } from "../../src/trainer-node/export/run";
import { applyCheckpointParams, GateCheckpoint } from "../../src/trainer-node/gates/checkpoint";
import { loadUserModel } from "../../src/trainer-node/import/load";
import { runSluice } from "./cli-capture";

const FIXTURES = path.join(import.meta.dirname, "../fixtures");
const BASE = path.join(FIXTURES, "hf/bert-seqcls-o14/model.onnx");
const TOKENIZER = path.join(FIXTURES, "hf/bert-seqcls-o14/tokenizer.json");
const DATA = path.join(FIXTURES, "pairs/negation.jsonl");
const SEQ = 32;

const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-pairs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sluice = runSluice;

const trainArgs = (out: string, ...extra: string[]) => [
  "train",
  "--base",
  BASE,
  "--data",
  DATA,
  "--out",
  out,
  "--seq",
  String(SEQ),
  "--threads",
  "1",
  ...extra,
];

async function logits(bytes: Uint8Array, g: Parameters<typeof feedsFor>[0], batch: TokenBatch, extra = {}) {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    return (await session.run(feedsFor(g, batch, extra), ["logits"])).logits.data as Float32Array;
  } finally {
    await session.release();
  }
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

describe("a sentence-pair task", () => {
  const run = path.join(dir, "run");
  const variant = path.join(dir, "variant");

  it("trains on the pairs, exports from the checkpoint, and the variant equals the gated model on pairs", async () => {
    // The label is in the hypothesis only: reading just the first text, as single-text training does, is chance.
    const trained = await sluice(
      ...trainArgs(run, "--steps", "60", "--recovery-steps", "20", "--adapter-rank", "4", "--lr", "1e-2"),
      "--target-sparsity",
      "0.2",
      "--no-export",
    );
    expect(trained.code, trained.said).toBe(0);
    expect(trained.said).toContain(
      "sentence pairs (premise, hypothesis), token type ids from the tokenizer's pair template",
    );
    const ckpt = GateCheckpoint.parse(JSON.parse(readFileSync(path.join(run, "gates.json"), "utf8")));
    expect(ckpt.task.fields).toEqual({ text: "premise", textPair: "hypothesis" });

    // No field flags: export reads the pair fields from the checkpoint.
    const exported = await sluice(
      "export",
      "--base",
      BASE,
      "--gates",
      path.join(run, "gates.json"),
      "--eval",
      DATA,
      "--max-len",
      String(SEQ),
      "--out",
      variant,
      "--runs",
      "2",
      "--optimize",
      "none",
    );
    expect(exported.code, exported.said).toBe(0);
    const manifest = parseManifest(JSON.parse(readFileSync(path.join(variant, "manifest.json"), "utf8")));
    expect(manifest.input).toEqual({ textPairs: true, fields: { text: "premise", textPair: "hypothesis" } });
    expect(manifest.io.inputs.map((i) => i.name)).toContain("token_type_ids");
    expect(manifest.sparsity.removed).toBeGreaterThan(0.18);
    expect(manifest.metrics.others.maxAbsDiffVsGated).toBeLessThanOrEqual(1e-4);
    expect(manifest.metrics.accuracy).toBeGreaterThanOrEqual(0.9);

    // Independently of export's own check: the test split as pairs, through the gated model and the variant.
    const tok = loadTokenizer(readFileSync(TOKENIZER, "utf8"));
    const dataset = loadDataFile(DATA);
    const test = dataset.splits.test;
    const enc = encodeBatch(
      tok,
      test.map((e) => e.text),
      SEQ,
      undefined,
      test.map((e) => e.textPair ?? ""),
    );
    const model = loadUserModel(BASE, {});
    const gated = gatedModel(applyCheckpointParams(model.graph, ckpt), ckpt);
    const exportedBytes = new Uint8Array(readFileSync(path.join(variant, "model.onnx")));
    const exportedGraph = {
      inputs: manifest.io.inputs.map((i) => ({ name: i.name, dtype: i.datatype.toLowerCase() })),
    };
    const want = await logits(encodeModel(gated.graph), gated.graph, enc, gated.gateFeeds);
    const got = await logits(exportedBytes, exportedGraph as never, enc);
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-4);
    // The model reads the token types: zeros move its logits, so the comparison above needs them right.
    const zeros = await logits(exportedBytes, exportedGraph as never, { ...enc, tokenTypeIds: undefined });
    expect(maxAbsDiff(zeros, got)).toBeGreaterThan(1e-3);

    // The manifest's evidence is the variant's answers on those pairs, example by example.
    const correct = decodeBitset(manifest.metrics.evidence!.correct, test.length);
    test.forEach((e, i) => {
      const predicted = got[2 * i + 1] > got[2 * i] ? 1 : 0;
      const label = ckpt.task.labels.indexOf(dataset.labels[e.label]);
      expect(correct[i], `example ${i}`).toBe(predicted === label);
    });
  });

  it("refuses to export a pair checkpoint on single-text data, leaving nothing behind", async () => {
    const out = path.join(dir, "single-eval");
    // The same rows with their premises alone.
    const premises = path.join(dir, "premises.jsonl");
    const rows = readFileSync(DATA, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    writeFileSync(premises, rows.map((r) => JSON.stringify({ text: r.premise, label: r.label })).join("\n"));
    const r = await sluice(
      "export",
      "--base",
      BASE,
      "--gates",
      path.join(run, "gates.json"),
      "--eval",
      premises,
      "--text-field",
      "text",
      "--out",
      out,
    );
    expect(r.code).toBe(2);
    expect(r.said).toMatch(
      /--eval: .*trained on sentence pairs \(fields premise, hypothesis\) but premises\/test holds single texts/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it("refuses field flags without --data, and a tokenizer without a pair template, naming the flag", async () => {
    const out = path.join(dir, "refused");
    const noData = await sluice(
      "train",
      "--base",
      BASE,
      "--task",
      "sentiment",
      "--text-pair-field",
      "hypothesis",
      "--out",
      out,
    );
    expect(noData.code).toBe(2);
    expect(noData.said).toContain("--text-field and --text-pair-field name fields of a --data file");
    const single = JSON.parse(readFileSync(TOKENIZER, "utf8"));
    single.post_processor = {
      type: "TemplateProcessing",
      single: single.post_processor.single,
      pair: null,
      special_tokens: single.post_processor.special_tokens,
    };
    const file = path.join(dir, "single-template.json");
    writeFileSync(file, JSON.stringify(single));
    const noPair = await sluice(...trainArgs(out, "--tokenizer", file, "--steps", "1"));
    expect(noPair.code).toBe(2);
    expect(noPair.said).toMatch(/--tokenizer: .*single-template\.json has no pair template/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("token feeds", () => {
  it("feeds ids, mask and the pair's token types in the dtype each input declares (int32 here)", async () => {
    // logits[b] = [sum of ids, sum of token types] over the row: what the model received, in int32.
    const g = new Graph({ name: "sums", opset: 17 });
    for (const name of ["input_ids", "attention_mask", "token_type_ids"])
      g.addInput(name, "int32", ["b", "s"]);
    const sum = (x: string) =>
      g.op("ReduceSum", [g.op("Cast", [x], { to: 1 }), g.constInts([1])], { keepdims: 1 });
    g.op("Concat", [sum("input_ids"), sum("token_type_ids")], { axis: 1 }, { output: "logits" });
    g.addOutput("logits", "float32", ["b", 2]);
    const tok = loadTokenizer(readFileSync(TOKENIZER, "utf8"));
    const enc = encodeBatch(tok, ["the food is good", "bad"], 16, undefined, [
      "the food is not good",
      "fine",
    ]);
    const out = await logits(encodeModel(g), g, enc);
    for (let b = 0; b < enc.batch; b++) {
      const row = (a: BigInt64Array) => Array.from(a.subarray(b * enc.seqLen, (b + 1) * enc.seqLen), Number);
      expect(out[2 * b]).toBe(row(enc.inputIds).reduce((x, y) => x + y, 0));
      // The second text's tokens (and its closing [SEP]) have type 1.
      expect(out[2 * b + 1]).toBe(row(enc.tokenTypeIds).reduce((x, y) => x + y, 0));
      expect(out[2 * b + 1]).toBeGreaterThan(1);
    }
  });
});
