import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseManifest } from "../../src/core/manifest";
import { buildEncoder } from "../../src/core/models/encoder";
import { decodeModel, encodeModel } from "../../src/core/onnx";
import { Rng } from "../../src/core/random";
import { encodeBatch, loadTokenizer } from "../../src/core/tokenizer";
import { main } from "../../src/trainer-node/cli";
import { buildTokenizerJson } from "../../src/trainer-node/data/build-tokenizer";
import { loadDataFile } from "../../src/trainer-node/data/tasks";
import { evaluateAccuracy } from "../../src/trainer-node/export/variant";
import { CHECKPOINT_FORMAT, type GateCheckpoint } from "../../src/trainer-node/gates/checkpoint";
import { selectGatedLayers } from "../../src/trainer-node/import/recognize";

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** A base model, its tokenizer, a JSONL task and a gate checkpoint in a temp directory. */
function fixture() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-export-"));
  const words = ["good", "great", "fine", "bad", "awful", "poor", "movie", "food", "service", "very"];
  const rng = new Rng(2);
  const records = Array.from({ length: 120 }, (_, i) => {
    const text = Array.from({ length: 4 + rng.int(6) }, () => words[rng.int(words.length)]).join(" ");
    return { text: `${text} ${i}`, label: /good|great|fine/.test(text) ? "pos" : "neg" };
  });
  writeFileSync(path.join(dir, "reviews.jsonl"), records.map((r) => JSON.stringify(r)).join("\n"));
  const tokJson = buildTokenizerJson(
    records.map((r) => r.text),
    200,
  );
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokJson));
  const vocabSize = loadTokenizer(tokJson).vocabSize;
  const base = buildEncoder({
    vocabSize,
    hidden: 16,
    heads: 2,
    ffn: 32,
    layers: 2,
    maxPositions: 96,
    numLabels: 2,
    initStd: 0.3,
  });
  const baseBytes = encodeModel(base);
  writeFileSync(path.join(dir, "base.onnx"), baseBytes);
  const ckpt: GateCheckpoint = {
    format: CHECKPOINT_FORMAT,
    base: { name: "tiny-base", sha256: sha(baseBytes) },
    task: { name: "reviews", labels: ["neg", "pos"] },
    head: { kind: "model" },
    method: "finegates",
    settings: { target: 0.3, lambda: 50 },
    seed: 3,
    step: 40,
    layers: selectGatedLayers(base).map((l) => ({
      node: l.node,
      rowGate: Array.from({ length: l.outFeatures }, () => (rng.next() < 0.3 ? 0 : 1)),
      colGate: Array.from({ length: l.inFeatures }, () => (rng.next() < 0.1 ? 0 : 1)),
    })),
    params: {},
  };
  writeFileSync(path.join(dir, "gates.json"), JSON.stringify(ckpt));
  return { dir, ckpt };
}

describe("sluice export", () => {
  it("writes model.onnx, tokenizer.json and a manifest the registry schema accepts", async () => {
    const { dir, ckpt } = fixture();
    const out = path.join(dir, "variant");
    const code = await main([
      "export",
      "--base",
      path.join(dir, "base.onnx"),
      "--gates",
      path.join(dir, "gates.json"),
      "--out",
      out,
      "--eval",
      path.join(dir, "reviews.jsonl"),
      "--split",
      "train",
      "--runs",
      "2",
    ]);
    expect(code).toBe(0);
    const manifest = parseManifest(JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")));
    const model = readFileSync(path.join(out, "model.onnx"));
    expect(manifest.artifact).toEqual({ file: "model.onnx", sha256: sha(model), bytes: model.byteLength });
    expect(manifest.tokenizer?.sha256).toBe(sha(readFileSync(path.join(out, "tokenizer.json"))));
    expect(manifest.base.sha256).toBe(ckpt.base.sha256);
    expect(manifest.labels).toEqual(["neg", "pos"]);
    expect(manifest.sparsity.target).toBe(0.3);
    expect(manifest.sparsity.removed).toBeGreaterThan(0.3);
    expect(manifest.sparsity.params).toBeLessThan(manifest.sparsity.baseParams);
    expect(manifest.sparsity.flopsPerToken).toBeLessThan(manifest.sparsity.baseFlopsPerToken);
    expect(manifest.metrics.evalSet.name).toBe("reviews/train");
    // The model has 96 positions: the 1 × 128 latency cell is timed at its longest sequence.
    expect(manifest.latency).toMatchObject({ batch: 1, seqLen: 96 });
    expect(manifest.training).toMatchObject({ method: "finegates", seed: 3, steps: 40 });
    const report = JSON.parse(readFileSync(path.join(out, "export-report.json"), "utf8"));
    expect(report.latencyGrid).toHaveLength(4);
    expect(report.removedFraction).toBe(manifest.sparsity.removed);
    expect(manifest.io.outputs[0]).toMatchObject({ name: "logits", shape: [-1, 2] });
    // The recorded accuracy is the exported model's own: recomputed here from its file on the same data.
    const data = loadDataFile(path.join(dir, "reviews.jsonl"));
    const tok = loadTokenizer(readFileSync(path.join(out, "tokenizer.json"), "utf8"));
    const texts = data.splits.train.map((e) => e.text);
    const batches = [0, 32, 64, 96]
      .filter((i) => i < texts.length)
      .map((i) => encodeBatch(tok, texts.slice(i, i + 32), 128));
    const accuracy = await evaluateAccuracy(decodeModel(model), {
      name: "reviews/train",
      batches,
      labels: data.splits.train.map((e) => e.label),
    });
    expect(manifest.metrics.accuracy).toBe(accuracy);
    expect(manifest.metrics.evalSet.size).toBe(texts.length);
  });

  it("refuses a base model the gates were not trained on, and a malformed checkpoint", async () => {
    const { dir } = fixture();
    const other = encodeModel(
      buildEncoder({ vocabSize: 50, hidden: 16, heads: 2, ffn: 32, layers: 2, seed: 9 }),
    );
    writeFileSync(path.join(dir, "other.onnx"), other);
    const args = (base: string, gates: string) => [
      "export",
      "--base",
      path.join(dir, base),
      "--gates",
      path.join(dir, gates),
      "--out",
      path.join(dir, "x"),
    ];
    expect(await main(args("other.onnx", "gates.json"))).toBe(2);
    writeFileSync(path.join(dir, "bad.json"), JSON.stringify({ format: "sluice-gates/1", layers: 3 }));
    expect(await main(args("base.onnx", "bad.json"))).toBe(2);
    expect(await main(["export", "--base", path.join(dir, "base.onnx")])).toBe(2);
  });

  it("evaluateAccuracy counts argmax matches of the model's logits", async () => {
    const g = buildEncoder({
      vocabSize: 20,
      hidden: 8,
      heads: 2,
      ffn: 8,
      layers: 1,
      numLabels: 2,
      initStd: 0.5,
    });
    const batch = {
      inputIds: BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n]),
      attentionMask: BigInt64Array.from([1n, 1n, 1n, 1n, 1n, 1n]),
      batch: 2,
      seqLen: 3,
    };
    const a = await evaluateAccuracy(g, { name: "x", batches: [batch], labels: [0, 0] });
    const b = await evaluateAccuracy(g, { name: "x", batches: [batch], labels: [1, 1] });
    // Two labels, two rows: the two labelings' accuracies are complementary.
    expect(a + b).toBeCloseTo(1, 10);
  });
});
