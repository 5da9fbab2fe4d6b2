import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { decodeModel } from "../../src/core/onnx";
import { main } from "../../src/trainer-node/cli";
import { loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import { buildMlmGraphs } from "../../src/trainer-node/pretrain/graphs";

const quiet = () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  return vi.spyOn(console, "error").mockImplementation(() => {});
};

describe("sluice base init", () => {
  it("writes a BertForMaskedLM-layout encoder sized by flags, vocabulary from the tokenizer", async () => {
    quiet();
    const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-base-"));
    const out = path.join(dir, "init.onnx");
    const args = [
      "base",
      "init",
      "--out",
      out,
      "--layers",
      "2",
      "--hidden",
      "48",
      "--heads",
      "3",
      "--ffn",
      "96",
    ];
    expect(await main(args)).toBe(0);
    const g = decodeModel(readFileSync(out));
    const vocab = loadTokenizerFile().vocabSize;
    expect(g.outputs.map((o) => o.name)).toEqual(["mlm_logits"]);
    expect(g.initializers.get("bert.embeddings.word_embeddings.weight")!.dims).toEqual([vocab, 48]);
    expect(g.initializers.get("bert.embeddings.position_embeddings.weight")!.dims).toEqual([128, 48]);
    expect(g.initializers.has("bert.encoder.layer.1.output.LayerNorm.weight")).toBe(true);
    expect(g.initializers.has("bert.encoder.layer.2.output.LayerNorm.weight")).toBe(false);
    expect(g.nodes.some((n) => n.name === "/bert/encoder/layer.0/attention/self/query/MatMul")).toBe(true);
    const arch = JSON.parse(readFileSync(path.join(dir, "init.json"), "utf8"));
    expect(arch).toMatchObject({
      layout: "bert",
      layers: 2,
      hidden: 48,
      heads: 3,
      ffn: 96,
      vocabSize: vocab,
    });
    // Pretraining's graphs build from it: every float weight trainable, the head on selected positions.
    const graphs = buildMlmGraphs(g);
    expect(graphs.trainable.has("cls.predictions.bias")).toBe(true);
    expect(graphs.forward.inputs.map((i) => i.name)).toContain("mlm_positions");
  });

  it("rejects bad flags and a base without an MLM head with clear messages", async () => {
    const err = quiet();
    const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-base-"));
    expect(
      await main(["base", "init", "--out", path.join(dir, "a.onnx"), "--hidden", "50", "--heads", "4"]),
    ).toBe(2);
    expect(err.mock.calls.flat().join("\n")).toMatch(/--hidden 50 is not divisible by --heads 4/);
    expect(await main(["base", "make", "--out", path.join(dir, "a.onnx")])).toBe(2);
    expect(existsSync(path.join(dir, "a.onnx"))).toBe(false);
    const bare = path.join(dir, "bare.onnx");
    expect(
      await main([
        "base",
        "init",
        "--out",
        bare,
        "--layers",
        "1",
        "--hidden",
        "16",
        "--heads",
        "2",
        "--head",
        "none",
      ]),
    ).toBe(0);
    expect(await main(["pretrain", "--base", bare, "--out", path.join(dir, "p"), "--steps", "1"])).toBe(1);
    expect(err.mock.calls.flat().join("\n")).toMatch(/no masked-language-model head/);
    expect(await main(["pretrain", "--base", bare, "--out", path.join(dir, "p"), "--steps", "0"])).toBe(2);
  });
});
