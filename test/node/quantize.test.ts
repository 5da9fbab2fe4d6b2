/**
 * int8 variants of the demo's real model: the committed spam 0.4 checkpoint exported in fp32, then
 * `sluice quantize` — on the spam test split tokenized with the model's tokenizer, real onnxruntime-node.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeBitset } from "../../src/core/evidence";
import { type Manifest, parseManifest } from "../../src/core/manifest";
import { decodeModel, encodeModel } from "../../src/core/onnx";
import type { Graph } from "../../src/core/onnx/graph";
import { main } from "../../src/trainer-node/cli";
import { loadEvalSet } from "../../src/trainer-node/export/pipeline";
import { precisionOf, quantizeGraph, quantizePerColumn } from "../../src/trainer-node/export/quantize";
import { feedsFor, sessionOptions } from "../../src/trainer-node/export/run";
import type { EvalSet } from "../../src/trainer-node/export/variant";

/** Largest |logit(int8) − logit(fp32)| allowed on real texts: the demo's logits span about ±5, so this is
 * under 1% of their range; measured 0.01–0.02 (per-channel weight rounding ≤ scale/2, uint8 activations). */
const LOGIT_TOLERANCE = 0.05;

const root = path.resolve(import.meta.dirname, "../..");
let dir: string;
let fp32Dir: string;
let int8Dir: string;
let evalSet: EvalSet;

async function logits(g: Graph, set: EvalSet): Promise<Float32Array[]> {
  const s = await ort.InferenceSession.create(encodeModel(g), sessionOptions(1));
  const out: Float32Array[] = [];
  for (const b of set.batches) out.push((await s.run(feedsFor(g, b))).logits.data as Float32Array);
  await s.release();
  return out;
}
const manifestOf = (d: string): Manifest =>
  parseManifest(JSON.parse(readFileSync(path.join(d, "manifest.json"), "utf8")));
const graphOf = (d: string) => decodeModel(readFileSync(path.join(d, "model.onnx")));

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sluice-int8-"));
  fp32Dir = path.join(dir, "fp32");
  int8Dir = path.join(dir, "int8");
  const exported = await main([
    "export",
    "--base",
    path.join(root, "models/base/model.onnx"),
    "--gates",
    path.join(root, "models/demo/spam-0.4.gates.json"),
    "--out",
    fp32Dir,
    "--runs",
    "3",
    // The unfused graph, whose ops these tests count (optimize.test.ts covers --optimize edge).
    "--optimize",
    "none",
  ]);
  expect(exported).toBe(0);
  expect(await main(["quantize", fp32Dir, "--out", int8Dir, "--runs", "3"])).toBe(0);
  evalSet = await loadEvalSet({
    source: "spam",
    split: "test",
    tokenizerFile: path.join(fp32Dir, "tokenizer.json"),
    maxLen: 128,
    labels: manifestOf(fp32Dir).labels,
  });
}, 240_000);

describe("sluice quantize (spam 0.4, real texts)", () => {
  it(`keeps logits within ${LOGIT_TOLERANCE} of the fp32 variant's`, async () => {
    const [a, b] = [await logits(graphOf(fp32Dir), evalSet), await logits(graphOf(int8Dir), evalSet)];
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++)
      for (let j = 0; j < a[i].length; j++) maxDiff = Math.max(maxDiff, Math.abs(a[i][j] - b[i][j]));
    expect(maxDiff).toBeGreaterThan(0); // it really is a different model
    expect(maxDiff).toBeLessThanOrEqual(LOGIT_TOLERANCE);
  });

  it("writes a smaller file that predicts the same on ≥ 99% of the test split, with evidence", () => {
    const [fp32, int8] = [manifestOf(fp32Dir), manifestOf(int8Dir)];
    expect(fp32.precision).toBe("fp32");
    expect(int8.precision).toBe("int8");
    expect(precisionOf(graphOf(int8Dir))).toBe("int8");
    expect(int8.artifact.bytes).toBeLessThan(0.75 * fp32.artifact.bytes);
    expect(readFileSync(path.join(int8Dir, "model.onnx")).byteLength).toBe(int8.artifact.bytes);
    const n = int8.metrics.evalSet.size;
    expect(int8.metrics.evalSet).toEqual(fp32.metrics.evalSet); // same split: the evidence pairs
    expect(int8.metrics.others.predictionsChangedVsFp32).toBeLessThanOrEqual(0.01 * n);
    const correct = decodeBitset(int8.metrics.evidence!.correct, n);
    expect(correct.filter(Boolean).length / n).toBeCloseTo(int8.metrics.accuracy, 12);
    // Unchanged coordinates: same sparsity, same head and labels.
    expect(int8.sparsity).toEqual(fp32.sparsity);
    expect(int8.labels).toEqual(fp32.labels);
    expect(int8.training.hyperparameters.quantization).toMatchObject({ fromSha256: fp32.artifact.sha256 });
  });

  it("export and quantize record the edge runtime's latency beside onnxruntime-node's, each timed beside its reference", () => {
    for (const d of [fp32Dir, int8Dir]) {
      const { latency } = manifestOf(d);
      expect(latency.runtime).toMatch(/^onnxruntime-node /);
      expect(latency.edge).toMatchObject({
        batch: 1,
        seqLen: latency.seqLen,
        runtime: "onnxruntime-web 1.30.0 wasm, 1 thread",
      });
      expect(latency.edge!.p50Ms).toBeGreaterThan(0);
      expect(latency.edge!.p95Ms).toBeGreaterThanOrEqual(latency.edge!.p50Ms);
      // export-report.json keeps the model it was interleaved with (dense, or the fp32 source), at least 15 runs
      const report = JSON.parse(readFileSync(path.join(d, "export-report.json"), "utf8"));
      expect(report.edgeLatency.variant.p50Ms).toBe(latency.edge!.p50Ms);
      expect(report.edgeLatency.reference.runs).toBeGreaterThanOrEqual(15);
      expect(report.edgeLatency.variant.runs).toBeGreaterThanOrEqual(15);
    }
  });

  it("quantizes every linear layer but the head; attention products, LayerNorm and embeddings stay fp32", () => {
    const fp32 = graphOf(fp32Dir);
    const { report, graph } = quantizeGraph(fp32);
    expect(report.keptFp32).toEqual([
      { node: "/sluice_head/classifier/Gemm", reason: "classification head" },
    ]);
    const linear = fp32.nodes.filter((n) => n.op === "MatMul" && fp32.initializers.has(n.inputs[1]));
    expect(report.quantized.length).toBe(linear.length);
    const ops = (g: Graph, op: string) => g.nodes.filter((n) => n.op === op).length;
    expect(ops(graph, "MatMulInteger")).toBe(linear.length);
    expect(ops(graph, "MatMul")).toBe(ops(fp32, "MatMul") - linear.length); // Q·Kᵀ and ·V
    expect(ops(graph, "LayerNormalization")).toBe(ops(fp32, "LayerNormalization"));
    expect(ops(graph, "Gemm")).toBe(1);
    expect(() => quantizeGraph(graph)).toThrow(/already quantized/);
  });

  it("the contrib form and int8 embeddings agree with the standard form", async () => {
    const fp32 = graphOf(fp32Dir);
    const small: EvalSet = { ...evalSet, batches: evalSet.batches.slice(0, 2) };
    const ref = await logits(fp32, small);
    for (const opts of [{ form: "contrib" as const }, { embeddings: true }]) {
      const { graph, report } = quantizeGraph(fp32, opts);
      if (opts.embeddings) expect(report.embeddings.length).toBe(3);
      const out = await logits(graph, small);
      for (let i = 0; i < out.length; i++)
        for (let j = 0; j < out[i].length; j++)
          expect(Math.abs(out[i][j] - ref[i][j])).toBeLessThanOrEqual(LOGIT_TOLERANCE);
    }
  });

  it("onnxruntime fuses the standard form at session creation (the reason it is the default)", async () => {
    const { graph } = quantizeGraph(graphOf(fp32Dir), { form: "standard" });
    const optimized = path.join(dir, "optimized.onnx");
    const s = await ort.InferenceSession.create(encodeModel(graph), {
      ...sessionOptions(1),
      optimizedModelFilePath: optimized,
    });
    await s.release();
    const ops = decodeModel(readFileSync(optimized)).nodes.map((n) => n.op);
    expect(ops).not.toContain("MatMulInteger");
    const fused = ops.filter((op) => op === "MatMulIntegerToFloat" || op === "DynamicQuantizeMatMul");
    expect(fused.length).toBe(graph.nodes.filter((n) => n.op === "MatMulInteger").length);
  });

  it("per-channel scales reproduce each column within half a step", () => {
    const w = new Float32Array([1, -0.01, 0, -2, 0.005, 0, 0.5, 0.02, 0]);
    const { q, scales } = quantizePerColumn(w, 3, 3);
    expect(Array.from(scales)).toEqual([Math.fround(2 / 127), Math.fround(0.02 / 127), 1]);
    for (let i = 0; i < w.length; i++)
      expect(Math.abs(q[i] * scales[i % 3] - w[i])).toBeLessThanOrEqual(scales[i % 3] / 2 + 1e-9);
    expect(Math.max(...q)).toBeLessThanOrEqual(127);
    expect(Math.min(...q)).toBeGreaterThanOrEqual(-127);
  });
});

describe("sluice quantize refuses bad input (exit 2, nothing written)", () => {
  it("a directory that is not a variant", async () => {
    const out = path.join(dir, "out-a");
    expect(await main(["quantize", dir, "--out", out])).toBe(2);
    expect(existsSync(out)).toBe(false);
  });
  it("a variant that is already int8", async () => {
    const out = path.join(dir, "out-b");
    expect(await main(["quantize", int8Dir, "--out", out])).toBe(2);
    expect(existsSync(out)).toBe(false);
  });
  it("a missing --out, a bad --op-form, the input directory as --out", async () => {
    expect(await main(["quantize", fp32Dir])).toBe(2);
    expect(await main(["quantize", fp32Dir, "--out", path.join(dir, "out-c"), "--op-form", "qdq"])).toBe(2);
    expect(existsSync(path.join(dir, "out-c"))).toBe(false);
    expect(await main(["quantize", fp32Dir, "--out", fp32Dir])).toBe(2);
  });
  it("an existing --out keeps only what it had", async () => {
    const out = path.join(dir, "out-d");
    mkdirSync(out);
    writeFileSync(path.join(out, "keep.txt"), "x");
    expect(await main(["quantize", int8Dir, "--out", out])).toBe(2);
    expect(readdirSync(out)).toEqual(["keep.txt"]);
  });
  it("sluice export --op-form without --precision int8", async () => {
    const out = path.join(dir, "out-e");
    const code = await main([
      "export",
      ...["--base", path.join(root, "models/base/model.onnx")],
      ...["--gates", path.join(root, "models/demo/spam-0.4.gates.json")],
      ...["--out", out, "--op-form", "contrib"],
    ]);
    expect(code).toBe(2);
    expect(existsSync(out)).toBe(false);
  });
});
