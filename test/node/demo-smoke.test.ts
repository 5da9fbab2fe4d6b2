/**
 * Smoke run of the `npm run demo` pipeline on the tiny profile (a small random encoder, a few training steps,
 * 48 test texts), end to end through the real gateway under wrangler dev: gates trained for the four targets,
 * exported, pushed, activated, the SLA set, the texts classified through the gateway per pinned variant and the
 * router asked. Checks that the gateway's accuracy is the exported models' own accuracy computed here with
 * onnxruntime-node on the same texts, that the removed fractions are the targets, and that the router's choice
 * follows the SLA policy. A second build from the same work dir must reuse every export.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEMO_INT8_TARGETS,
  DEMO_MARGIN,
  DEMO_TARGETS,
  MAX_TOKENS,
  REQUEST_BATCH,
  ROOT,
  TINY_PROFILE,
} from "../../scripts/demo/config";
import { type DemoResult, runDemo } from "../../scripts/demo/pipeline";
import { demoJson, formatDemoTable } from "../../scripts/demo/report";
import { buildVariants, loadDemoBase, loadDemoData } from "../../scripts/demo/variants";
import { encodeBatch, loadTokenizer } from "../../src/core/tokenizer";
import { SPAM_LABELS } from "../../src/trainer-node/data/spam";
import { loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";

/** Predictions of an exported model, tokenized and batched as the gateway's classify does. */
async function localPredictions(modelFile: string, tokenizerFile: string, texts: string[], labels: string[]) {
  const tok = loadTokenizer(readFileSync(tokenizerFile, "utf8"));
  const session = await ort.InferenceSession.create(readFileSync(modelFile), { intraOpNumThreads: 1 });
  const out: { label: string; margin: number }[] = [];
  try {
    for (let i = 0; i < texts.length; i += REQUEST_BATCH) {
      const b = encodeBatch(tok, texts.slice(i, i + REQUEST_BATCH), MAX_TOKENS);
      const dims = [b.batch, b.seqLen];
      const feeds: Record<string, ort.Tensor> = {};
      for (const name of session.inputNames) {
        const data =
          name === "input_ids"
            ? b.inputIds
            : name === "attention_mask"
              ? b.attentionMask
              : new BigInt64Array(b.inputIds.length);
        feeds[name] = new ort.Tensor("int64", data, dims);
      }
      const logits = (await session.run(feeds)).logits.data as Float32Array;
      const k = labels.length;
      for (let r = 0; r < b.batch; r++) {
        const row = Array.from(logits.subarray(r * k, (r + 1) * k));
        const best = row.indexOf(Math.max(...row));
        const second = Math.max(...row.filter((_, j) => j !== best));
        out.push({ label: labels[best], margin: row[best] - second });
      }
    }
  } finally {
    await session.release();
  }
  return out;
}

/** Rows of the demo table: the fp32 variants and the int8 twins. */
const ROWS = DEMO_TARGETS.length + DEMO_INT8_TARGETS.length;

describe("npm run demo (tiny profile) through the real gateway", () => {
  let work: string;
  let result: DemoResult;
  const lines: string[] = [];

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "sluice-demo-smoke-"));
    ({ result } = await runDemo({
      profile: TINY_PROFILE,
      workDir: work,
      retrain: false,
      saveCheckpoints: false,
      keepRunning: false,
      log: (l) => lines.push(l),
    }));
  }, 150_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("builds, registers and measures every variant, saying what it does", () => {
    expect(result.rows.map((r) => r.target)).toEqual([...DEMO_TARGETS, ...DEMO_INT8_TARGETS]);
    expect(result.rows.map((r) => r.precision)).toEqual([
      ...DEMO_TARGETS.map(() => "fp32"),
      ...DEMO_INT8_TARGETS.map(() => "int8"),
    ]);
    expect(new Set(result.rows.map((r) => r.version)).size).toBe(ROWS);
    for (const [i, label] of [
      "loading",
      "building",
      "starting the gateway",
      "registering",
      "classifying",
      "router",
    ].entries())
      expect(lines.some((l) => l.startsWith(`[${i + 1}/6]`) && l.includes(label))).toBe(true);
    expect(result.steps).toHaveLength(6);
    // auth is on: the demo minted a key, printed it, and every classify/route request above used it
    expect(lines.some((l) => /API key .*sk_sluice_[A-Za-z0-9_-]{43}/.test(l))).toBe(true);
    for (const row of result.rows) {
      // Sparsity delivered is the target (±2 points, as sluice train demands); dense removes nothing.
      expect(Math.abs(row.removed - row.target)).toBeLessThanOrEqual(0.02);
      expect(row.gateway.total).toBe(TINY_PROFILE.testLimit);
      expect(row.gateway.requests).toBe(Math.ceil(TINY_PROFILE.testLimit! / REQUEST_BATCH));
      expect(row.gateway.p50RequestMs).toBeGreaterThan(0);
      // The variants carry adapters merged into their weights (the profile's gates + LoRA), and say so.
      const manifest = JSON.parse(readFileSync(path.join(ROOT, row.dir, "manifest.json"), "utf8"));
      expect(manifest.training.hyperparameters.adapters).toEqual({
        rank: TINY_PROFILE.budget.adapterRank,
        alpha: 16,
      });
    }
    // The int8 twin: the same pruned model (same parameters), in fewer bytes, its predictions counted vs fp32.
    for (const t of DEMO_INT8_TARGETS) {
      const fp32 = result.rows.find((r) => r.target === t && r.precision === "fp32")!;
      const int8 = result.rows.find((r) => r.target === t && r.precision === "int8")!;
      expect(int8.params).toBe(fp32.params);
      expect(int8.bytes).toBeLessThan(fp32.bytes); // embeddings stay fp32 (most of the tiny model)
      const manifest = JSON.parse(readFileSync(path.join(ROOT, int8.dir, "manifest.json"), "utf8"));
      expect(manifest.precision).toBe("int8");
      expect(manifest.metrics.evidence.correct).toBeTypeOf("string");
      expect(manifest.metrics.others.predictionsChangedVsFp32).toBeTypeOf("number");
    }
    const params = result.rows.filter((r) => r.precision === "fp32").map((r) => r.params);
    expect(params[0]).toBe(result.rows[0].baseParams);
    for (let i = 1; i < params.length; i++) expect(params[i]).toBeLessThan(params[i - 1]);
    const table = formatDemoTable(result);
    expect(table.split("\n")).toHaveLength(2 + ROWS);
    expect(table).toContain("<- chosen");
    const json = JSON.parse(demoJson(result));
    expect(json.rows).toHaveLength(ROWS);
    expect(json.test).toBeUndefined();
  });

  it("accuracy through the gateway equals the exported models' accuracy computed locally on the same texts", async () => {
    const tokenizerFile = path.join(ROOT, result.base.tokenizer);
    const labels = SPAM_LABELS;
    for (const row of result.rows) {
      const local = await localPredictions(
        path.join(ROOT, row.dir, "model.onnx"),
        tokenizerFile,
        result.test.texts,
        labels,
      );
      const correct = local.filter((p, i) => p.label === result.test.labels[i]).length;
      expect(row.gateway.correct, `${row.variant}: correct through the gateway vs locally`).toBe(correct);
      expect(row.gateway.accuracy).toBe(correct / local.length);
      expect(row.registered.accuracy).toBe(correct / local.length);
      // Text by text too, except where the two runtimes could legitimately disagree (a near tie).
      const gateway = result.test.predictions[row.version];
      local.forEach((p, i) => {
        if (p.margin > 1e-4) expect(gateway[i], `${row.variant} text ${i}`).toBe(p.label);
      });
    }
  });

  it("the router's choice follows the margin SLA on paired evidence: the fastest variant proven within it", () => {
    expect(result.sla.margin).toBe(DEMO_MARGIN);
    // The edge (onnxruntime-web wasm) p50 when every variant has one, else onnxruntime-node's for all.
    const edge = result.rows.every((r) => r.registered.edgeLatencyP50Ms !== null);
    const p50 = (r: DemoResult["rows"][number]) =>
      edge ? r.registered.edgeLatencyP50Ms! : r.registered.latencyP50Ms;
    const cost = (a: DemoResult["rows"][number], b: DemoResult["rows"][number]) =>
      p50(a) - p50(b) || a.params - b.params || b.version - a.version;
    const best = [...result.rows].sort(
      (a, b) => b.registered.accuracy - a.registered.accuracy || cost(a, b),
    )[0];
    expect(best.margin).toBeUndefined();
    const proven = result.rows.filter((r) => r === best || r.margin!.interval[0] > -DEMO_MARGIN);
    for (const r of result.rows) {
      if (r === best) continue;
      // Every variant is compared on the same test split, example by example.
      expect(r.margin!.paired).toBe(true);
      expect(r.margin!.interval[0]).toBeLessThanOrEqual(r.registered.accuracy - best.registered.accuracy);
    }
    const expected = [...proven].sort(cost)[0];
    expect(result.router.chosen).toBe(expected.version);
    expect(result.router.outcome).toBe("met");
    expect(result.rows.filter((r) => r.chosen).map((r) => r.version)).toEqual([expected.version]);
    for (const r of result.rows)
      expect(r.verdict).toBe(r.chosen ? "chosen" : proven.includes(r) ? "eligible" : "below_margin");
    expect(result.router.servedRoutedRequest).toBe(`spam@${expected.version}`);
  });

  it("a second build reuses the cached exports", async () => {
    const base = loadDemoBase(TINY_PROFILE);
    const tokenizer = loadTokenizerFile(base.tokenizerFile);
    const again = await buildVariants({
      profile: TINY_PROFILE,
      base,
      data: loadDemoData(TINY_PROFILE, tokenizer),
      tokenizer,
      workDir: work,
      retrain: false,
      saveCheckpoints: false,
      log: () => {},
    });
    expect(again.map((v) => v.cached)).toEqual(result.rows.map(() => true));
    expect(again.map((v) => v.checkpoint.source)).toEqual(result.rows.map(() => "work"));
    expect(again.map((v) => path.relative(ROOT, v.dir))).toEqual(result.rows.map((r) => r.dir));
  });
});
