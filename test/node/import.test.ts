/**
 * The import module on graphs whose reference outputs come from onnxruntime running the ORIGINAL graph: int32
 * ids, aliased input names, a kept classification head, a QA-style head that is cut off, and the refusals
 * (decoder, CNN, missing tokenizer) through the CLI, which must exit 2 and leave nothing on disk.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it, vi } from "vitest";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import { Graph } from "../../src/core/onnx/graph";
import { tensor } from "../../src/core/onnx/tensor";
import { main } from "../../src/trainer-node/cli";
import { ImportError } from "../../src/trainer-node/import/errors";
import { importEncoder } from "../../src/trainer-node/import/import";
import { maxSequenceLength } from "../../src/trainer-node/import/limits";
import { runSluice } from "./cli-capture";

const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-import-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cfg = {
  vocabSize: 60,
  hidden: 16,
  heads: 2,
  layers: 2,
  ffn: 32,
  maxPositions: 16,
  numLabels: 3,
  initStd: 0.3,
};
const ids = [2, 5, 7, 9, 3, 0, 4, 8, 11, 3, 0, 0];
const mask = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0];

async function run(g: Graph, feeds: Record<string, ort.Tensor>, output: string) {
  const s = await ort.InferenceSession.create(encodeModel(g));
  const out = (await s.run(feeds, [output]))[output];
  await s.release();
  return Array.from(out.data as Float32Array);
}
const i64 = (v: number[]) => new ort.Tensor("int64", BigInt64Array.from(v.map(BigInt)), [2, 6]);
const i32 = (v: number[]) => new ort.Tensor("int32", Int32Array.from(v), [2, 6]);

/** The builder's graph with int32 inputs named like a TF export (a Cast back to int64 where ops need it). */
function tfStyle(): Graph {
  const g = buildEncoder({ ...cfg, layout: "bert" });
  const renames: Record<string, string> = { input_ids: "input_word_ids:0", attention_mask: "input_mask:0" };
  for (const input of g.inputs) {
    const to = renames[input.name] ?? input.name;
    const cast = `${to}/cast64`;
    g.replaceUses(input.name, cast);
    g.nodes.unshift({
      name: `${to}/Cast`,
      op: "Cast",
      domain: "",
      inputs: [to],
      outputs: [cast],
      attrs: { to: { type: "int", value: 7 } },
    });
    input.name = to;
    input.dtype = "int32";
  }
  return g;
}

describe("importEncoder", () => {
  it("renames aliased int32 inputs to int64 input_ids/attention_mask and computes the same logits", async () => {
    const original = tfStyle();
    const ref = await run(original, { "input_word_ids:0": i32(ids), "input_mask:0": i32(mask) }, "logits");
    const { graph, report } = importEncoder(original.clone());
    expect(graph.inputs.map((i) => [i.name, i.dtype])).toEqual([
      ["input_ids", "int64"],
      ["attention_mask", "int64"],
    ]);
    expect(report.inputs.map((i) => i.original)).toEqual(["input_word_ids:0", "input_mask:0"]);
    expect(report.head).toMatchObject({ kind: "sequence-classification", numLabels: 3 });
    const got = await run(graph, { input_ids: i64(ids), attention_mask: i64(mask) }, "logits");
    for (const [i, v] of got.entries()) expect(Math.abs(v - ref[i])).toBeLessThan(1e-5);
  });

  it("finds every encoder linear and leaves the pooler and classifier out of the gate set", () => {
    const { recognition, report } = importEncoder(buildEncoder({ ...cfg, layout: "distilbert" }));
    expect(recognition.attention).toHaveLength(2);
    expect(recognition.ffn).toHaveLength(2);
    expect(recognition.encoderLinears).toHaveLength(12);
    expect(recognition.headLinears.length).toBeGreaterThan(0);
    expect(report.layers).toBe(2);
  });

  it("cuts a per-token (QA-style) head off at the encoder output, which equals the model's hidden state", async () => {
    const g = buildEncoder({ ...cfg, layout: "bert", head: "none" });
    const refHidden = await run(g, { input_ids: i64(ids), attention_mask: i64(mask) }, "last_hidden_state");
    // qa_outputs: [hidden, 2] linear on every token, split into start/end logits.
    const w = g.addInitializer(
      "qa_outputs.weight",
      tensor(
        "float32",
        [cfg.hidden, 2],
        Float32Array.from({ length: 2 * cfg.hidden }, (_, i) => Math.sin(i)),
      ),
    );
    const mm = g.op("MatMul", ["last_hidden_state", w], {}, { name: "/qa_outputs/MatMul" });
    const [start, end] = g.addNode(
      "Split",
      [mm, g.constInts([1, 1], "split")],
      { axis: -1 },
      { outputs: ["s3", "e3"] },
    );
    g.op("Squeeze", [start, g.constInts([-1], "ax")], {}, { output: "start_logits" });
    g.op("Squeeze", [end, g.constInts([-1], "ax2")], {}, { output: "end_logits" });
    g.outputs = [
      { name: "start_logits", dtype: "float32", shape: ["batch", "sequence"] },
      { name: "end_logits", dtype: "float32", shape: ["batch", "sequence"] },
    ];
    const { graph, report } = importEncoder(g);
    expect(report.head.kind).toBe("question-answering");
    expect(report.head.linears).toEqual(["/qa_outputs/MatMul"]);
    expect(graph.outputs.map((o) => o.name)).toEqual(["last_hidden_state"]);
    const hidden = await run(graph, { input_ids: i64(ids), attention_mask: i64(mask) }, "last_hidden_state");
    for (const [i, v] of hidden.entries()) expect(Math.abs(v - refHidden[i])).toBeLessThan(1e-6);
  });

  it("refuses a decoder by its causal mask and a CNN by its Conv, naming them", () => {
    const dec = buildEncoder({ ...cfg, layout: "bert" });
    const tril = Float32Array.from({ length: 16 }, (_, k) => (k % 4 <= Math.floor(k / 4) ? 1 : 0));
    dec.addInitializer("h.0.attn.bias", tensor("float32", [1, 1, 4, 4], tril));
    expect(() => importEncoder(dec)).toThrow(/h\.0\.attn\.bias .*causal.*decoder/);
    const cnn = new Graph({ opset: 13 });
    cnn.addInput("pixels", "float32", ["batch", 3, 8, 8]);
    const k = cnn.addInitializer("conv.weight", tensor("float32", [4, 3, 3, 3]));
    cnn.op("Conv", ["pixels", k], {}, { name: "/conv/Conv", output: "y" });
    cnn.outputs = [{ name: "y", dtype: "float32" }];
    expect(() => importEncoder(cnn)).toThrow(ImportError);
    expect(() => importEncoder(cnn)).toThrow(/\/conv\/Conv: a convolutional network/);
  });
});

describe("CLI refusals exit 2 and leave nothing behind", () => {
  const quiet = runSluice;

  it("a CNN: exit 2, message names the node, no output directory", async () => {
    const cnn = new Graph({ opset: 13 });
    cnn.addInput("pixels", "float32", ["batch", 3, 8, 8]);
    cnn.op(
      "Conv",
      ["pixels", cnn.addInitializer("w", tensor("float32", [4, 3, 3, 3]))],
      {},
      { name: "/conv/Conv", output: "y" },
    );
    cnn.outputs = [{ name: "y", dtype: "float32" }];
    const file = path.join(dir, "cnn.onnx");
    writeFileSync(file, encodeModel(cnn));
    const out = path.join(dir, "cnn-out");
    const { code, said } = await quiet("train", "--base", file, "--task", "spam", "--out", out);
    expect(code).toBe(2);
    expect(said).toMatch(/\/conv\/Conv: a convolutional network/);
    expect(existsSync(out)).toBe(false);
    expect((await quiet("inspect", file)).code).toBe(2);
  });

  it("no tokenizer: exit 2 naming --tokenizer, never a fallback tokenizer, no output directory", async () => {
    const file = path.join(dir, "encoder.onnx");
    writeFileSync(file, encodeModel(buildEncoder({ ...cfg, layout: "bert" })));
    const out = path.join(dir, "no-tok-out");
    const { code, said } = await quiet("train", "--base", file, "--task", "spam", "--out", out);
    expect(code).toBe(2);
    expect(said).toMatch(/--tokenizer: no tokenizer for .*sluice tokenizer from-vocab/);
    expect(existsSync(out)).toBe(false);
  });

  it("a tokenizer larger than the embedding table: exit 2 naming both sizes", async () => {
    const file = path.join(dir, "encoder.onnx");
    const out = path.join(dir, "big-tok-out");
    const { code, said } = await quiet(
      "train",
      "--base",
      file,
      "--task",
      "spam",
      "--out",
      out,
      "--tokenizer",
      "models/tokenizer.json",
    );
    expect(code).toBe(2);
    expect(said).toMatch(/4096 tokens, the model's embedding table 60 rows/);
    expect(existsSync(out)).toBe(false);
  });

  it("inspect prints the recognised layers and the gate set", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const code = await main(["inspect", path.join(dir, "encoder.onnx"), "--labels", "2"]);
    const text = log.mock.calls.map((c) => String(c[0])).join("\n");
    log.mockRestore();
    expect(code).toBe(0);
    expect(text).toMatch(/encoder: 2 layers, hidden 16, vocabulary 60/);
    expect(text).toMatch(/gated: 12 linear layers/);
    expect(text).toMatch(/classification head has 3 labels, the task 2: a new head is trained/);
  });
});

describe("maxSequenceLength: what the position table takes, from running the graph's own index computation", () => {
  it.each([
    ["bert", 48],
    ["roberta", 48],
    ["distilbert", 40],
  ] as const)("%s layout with maxPositions %i", async (layout, maxPositions) => {
    const g = buildEncoder({
      layout,
      maxPositions,
      vocabSize: 64,
      hidden: 16,
      heads: 2,
      ffn: 32,
      layers: 1,
      numLabels: 2,
    });
    expect(await maxSequenceLength(g)).toBe(maxPositions);
  });
});
