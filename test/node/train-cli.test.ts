/** `sluice train` end to end on a JSONL task: train, binarise, export through `sluice export`, manifest. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { parseManifest } from "../../src/core/manifest";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import { Rng } from "../../src/core/random";
import { loadTokenizer } from "../../src/core/tokenizer";
import { main } from "../../src/trainer-node/cli";
import { buildTokenizerJson } from "../../src/trainer-node/data/build-tokenizer";
import { DEFAULT_ADAPTER_GATE_METHOD } from "../../src/trainer-node/gates/methods";

const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-train-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const words = [
  "good",
  "great",
  "fine",
  "bad",
  "awful",
  "poor",
  "movie",
  "food",
  "service",
  "very",
  "the",
  "was",
];
const rng = new Rng(2);
const records = Array.from({ length: 400 }, (_, i) => {
  const text = Array.from({ length: 4 + rng.int(6) }, () => words[3 + rng.int(words.length - 3)]);
  const positive = rng.next() < 0.5;
  if (positive) text[rng.int(text.length)] = words[rng.int(3)];
  return { text: `${text.join(" ")} ${i}`, label: positive ? "pos" : "neg" };
});
writeFileSync(path.join(dir, "reviews.jsonl"), records.map((r) => JSON.stringify(r)).join("\n"));
const tokJson = buildTokenizerJson(
  records.map((r) => r.text),
  600,
);
writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokJson));
const base = buildEncoder({
  vocabSize: loadTokenizer(tokJson).vocabSize,
  hidden: 32,
  heads: 2,
  ffn: 64,
  layers: 2,
  maxPositions: 128, // export measures latency at sequence length 128
  head: "none",
  initStd: 0.1,
});
writeFileSync(path.join(dir, "base.onnx"), encodeModel(base));

const train = (...extra: string[]) =>
  main([
    "train",
    "--base",
    path.join(dir, "base.onnx"),
    "--data",
    path.join(dir, "reviews.jsonl"),
    "--seq",
    "16",
    "--batch",
    "16",
    "--threads",
    "1",
    "--pooling",
    "mean",
    ...extra,
  ]);

/** Runs `sluice train` with console output captured; returns the exit code and what it said on stderr. */
async function trainQuietly(...extra: string[]): Promise<{ code: number; said: string }> {
  const err = vi.spyOn(console, "error").mockImplementation(() => {});
  const log = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    const code = await train(...extra);
    return { code, said: err.mock.calls.map((c) => String(c[0])).join("\n") };
  } finally {
    err.mockRestore();
    log.mockRestore();
  }
}

describe("sluice train", () => {
  it("trains binarised gates to the target and writes a variant directory with a valid manifest", async () => {
    const out = path.join(dir, "out");
    const { code, said } = await trainQuietly(
      "--out",
      out,
      "--steps",
      "200",
      "--lr",
      "1e-2",
      "--target-sparsity",
      "0.3",
      "--gates",
      "finegates-binarized",
      "--recovery-steps",
      "40",
    );
    expect(code, said).toBe(0);
    expect(said).toMatch(/binarised: closed \d+ gates/);
    const manifest = parseManifest(JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")));
    expect(manifest.sparsity.target).toBe(0.3);
    expect(Math.abs(manifest.sparsity.removed - 0.3)).toBeLessThanOrEqual(0.02);
    expect(manifest.training.method).toBe("finegates-binarized");
    expect(manifest.labels).toEqual(["neg", "pos"]);
    const curve = JSON.parse(readFileSync(path.join(out, "curve.json"), "utf8"));
    expect(curve.curve).toHaveLength(240);
  }, 120_000);

  it("by default trains hardconcrete gates to the target; the manifest records the method and its settings", async () => {
    const out = path.join(dir, "out-default");
    const { code, said } = await trainQuietly(
      "--out",
      out,
      "--steps",
      "200",
      "--lr",
      "1e-2",
      "--target-sparsity",
      "0.3",
      "--recovery-steps",
      "40",
    );
    expect(code, said).toBe(0);
    expect(said).toMatch(/hard-concrete: expected removed .*binarised: closed \d+ gates/);
    const manifest = parseManifest(JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")));
    expect(Math.abs(manifest.sparsity.removed - 0.3)).toBeLessThanOrEqual(0.02);
    expect(manifest.training.gateMethod).toBe("hardconcrete");
    expect(manifest.training.hyperparameters).toMatchObject({
      targetSparsity: 0.3,
      beta: 2 / 3,
      gamma: -0.1,
      zeta: 1.1,
    });
  }, 120_000);

  it("with --adapter-rank learns LoRA adapters inside the gates, merges them on export and records them", async () => {
    const out = path.join(dir, "out-adapters");
    const { code, said } = await trainQuietly(
      "--out",
      out,
      "--steps",
      "100",
      "--lr",
      "1e-2",
      "--target-sparsity",
      "0.3",
      "--recovery-steps",
      "20",
      "--adapter-rank",
      "4",
    );
    expect(code, said).toBe(0);
    const manifest = parseManifest(JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")));
    expect(Math.abs(manifest.sparsity.removed - 0.3)).toBeLessThanOrEqual(0.02);
    expect(manifest.training.hyperparameters.adapters).toEqual({ rank: 4, alpha: 8 });
    // Without --gates, adapters get their own default gate method (chosen by bench:quality).
    expect(manifest.training.gateMethod).toBe(DEFAULT_ADAPTER_GATE_METHOD);
    // The merged model has no adapter tensors left: it is smaller than the base, not base + adapters.
    expect(manifest.sparsity.params).toBeLessThan(manifest.sparsity.baseParams);
  }, 120_000);

  it("fails with a clear message when plain finegates misses the target", async () => {
    const { code, said: messages } = await trainQuietly(
      "--out",
      path.join(dir, "short"),
      "--steps",
      "5",
      "--gates",
      "finegates",
    );
    expect(code).toBe(1);
    expect(messages).toMatch(
      /asked for 40\.0% sparsity, reached 0\.00% of the gated weights with --gates finegates/,
    );
  });

  it("rejects bad options with usage errors", async () => {
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(await main(["train", "--task", "spam", "--out", dir])).toBe(2);
    expect(await train("--out", dir, "--method", "prune")).toBe(2);
    expect(await train("--out", dir, "--steps", "3", "--epochs", "1")).toBe(2);
    expect(await train("--out", dir, "--target-sparsity", "1.5")).toBe(2);
    expect(await train("--out", dir, "--gates", "magic")).toBe(2);
    expect(await train("--out", dir, "--method", "lora", "--adapter-rank", "4")).toBe(2);
    const messages = err.mock.calls.map((c) => String(c[0])).join("\n");
    err.mockRestore();
    expect(messages).toMatch(/--base is required/);
    expect(messages).toMatch(/--method must be gates, lora or head/);
    expect(messages).toMatch(/--target-sparsity must be a fraction/);
    expect(messages).toMatch(/--adapter-rank adds adapters inside the gates: it needs --method gates/);
  });
});
