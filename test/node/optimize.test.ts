/**
 * Export-time graph optimisation on the demo's real model: the committed spam 0.4 checkpoint exported with
 * `--optimize edge` and `--optimize none`, fp32 and int8. The fused graph must load and run in onnxruntime-web's
 * wasm build (own process) with optimisations disabled, and match the unfused graph in onnxruntime-node — a
 * different runtime from the one export's own check uses — on the spam test split.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { type Manifest, manifestGraphOptimization, parseManifest } from "../../src/core/manifest";
import { decodeModel, encodeModel } from "../../src/core/onnx";
import { Graph } from "../../src/core/onnx/graph";
import { main } from "../../src/trainer-node/cli";
import {
  EDGE_CHECK_ROWS,
  EDGE_TOLERANCE,
  nonPortableOps,
  optimizeForEdge,
  runInWasm,
} from "../../src/trainer-node/export/optimize";
import { loadEvalSet } from "../../src/trainer-node/export/pipeline";
import { argmaxRows, feedsFor } from "../../src/trainer-node/export/run";
import type { EvalSet } from "../../src/trainer-node/export/variant";

const root = path.resolve(import.meta.dirname, "../..");
let dir: string;
let evalSet: EvalSet;
const out = (name: string) => path.join(dir, name);
const manifestOf = (d: string): Manifest =>
  parseManifest(JSON.parse(readFileSync(path.join(d, "manifest.json"), "utf8")));
const graphOf = (d: string) => decodeModel(readFileSync(path.join(d, "model.onnx")));

/** Logits of a graph on the eval set in onnxruntime-node at the given optimisation level. */
async function nodeLogits(g: Graph, level: "disabled" | "all"): Promise<number[]> {
  const s = await ort.InferenceSession.create(encodeModel(g), {
    graphOptimizationLevel: level,
    intraOpNumThreads: 1,
  });
  const logits: number[] = [];
  for (const b of evalSet.batches)
    logits.push(...((await s.run(feedsFor(g, b))).logits.data as Float32Array));
  await s.release();
  return logits;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sluice-optimize-"));
  const base = [
    "--base",
    path.join(root, "models/base/model.onnx"),
    "--gates",
    path.join(root, "models/demo/spam-0.4.gates.json"),
    "--runs",
    "2",
  ];
  for (const o of ["none", "edge"]) {
    expect(await main(["export", ...base, "--out", out(`fp32-${o}`), "--optimize", o])).toBe(0);
    expect(
      await main(["quantize", out("fp32-none"), "--out", out(`int8-${o}`), "--optimize", o, "--runs", "2"]),
    ).toBe(0);
  }
  evalSet = await loadEvalSet({
    source: "spam",
    split: "test",
    tokenizerFile: path.join(root, "models/base/tokenizer.json"),
    maxLen: 128,
    labels: manifestOf(out("fp32-none")).labels,
  });
}, 600_000);

describe.each(["fp32", "int8"])("sluice export/quantize --optimize edge (%s, spam 0.4)", (precision) => {
  it("records it in the manifest and export report; --optimize none writes the unfused graph", () => {
    const [edge, none] = [manifestOf(out(`${precision}-edge`)), manifestOf(out(`${precision}-none`))];
    expect(edge.graphOptimization).toBe("edge");
    expect(none.graphOptimization).toBe("none");
    expect(edge.precision).toBe(precision);
    const report = JSON.parse(
      readFileSync(path.join(out(`${precision}-edge`), "export-report.json"), "utf8"),
    );
    expect(report.optimization.applied).toBe(true);
    expect(report.optimization.predictionsChanged).toBe(0);
    expect(report.optimization.maxAbsDiff).toBeLessThanOrEqual(EDGE_TOLERANCE);
    // The wasm check runs on whole leading batches holding EDGE_CHECK_ROWS rows.
    expect(report.optimization.rows).toBeGreaterThanOrEqual(Math.min(EDGE_CHECK_ROWS, evalSet.labels.length));
    expect(report.optimization.rows).toBeLessThan(evalSet.labels.length);
    // Old manifests (no field) read as none.
    expect(manifestGraphOptimization({})).toBe("none");
  });

  it("writes onnxruntime's fused ops, none of them CPU-EP layout ops", () => {
    const fused = graphOf(out(`${precision}-edge`));
    const unfused = graphOf(out(`${precision}-none`));
    expect(fused.nodes.length).toBeLessThan(unfused.nodes.length);
    const ops = new Set(fused.nodes.map((n) => `${n.domain}:${n.op}`));
    expect(ops.has("com.microsoft:FusedMatMul")).toBe(true);
    if (precision === "int8") {
      expect(ops.has("com.microsoft:MatMulIntegerToFloat")).toBe(true);
      expect(ops.has(":MatMulInteger")).toBe(false);
    } else expect(ops.has("com.microsoft:BiasGelu")).toBe(true);
    expect(ops.has(":Erf")).toBe(false); // GELU is one node now
    expect(fused.nodes.every((n) => n.domain === "" || n.domain === "com.microsoft")).toBe(true);
    expect(nonPortableOps(fused)).toEqual([]);
  });

  it("runs in onnxruntime-web's wasm build with optimisations disabled, as the unfused graph does", async () => {
    const fused = graphOf(out(`${precision}-edge`));
    const [wasm] = await runInWasm(
      [{ bytes: encodeModel(fused), level: "disabled" }],
      evalSet.batches.slice(0, 2),
    );
    expect(wasm.ok ? wasm.output.length : wasm.error).toBe(2 * evalSet.batches[0].batch * 2);
  }, 60_000);

  it(`matches the unfused graph in onnxruntime-node within ${EDGE_TOLERANCE}, every prediction the same`, async () => {
    const fused = await nodeLogits(graphOf(out(`${precision}-edge`)), "disabled");
    const unfused = await nodeLogits(graphOf(out(`${precision}-none`)), "all");
    expect(fused.length).toBe(2 * evalSet.labels.length);
    let max = 0;
    for (let i = 0; i < fused.length; i++) max = Math.max(max, Math.abs(fused[i] - unfused[i]));
    expect(max).toBeLessThanOrEqual(EDGE_TOLERANCE);
    expect(argmaxRows(Float32Array.from(fused), 2)).toEqual(argmaxRows(Float32Array.from(unfused), 2));
    // The fused graph really is what node runs without its own optimiser: the file differs from the unfused one.
    expect(manifestOf(out(`${precision}-edge`)).artifact.sha256).not.toBe(
      manifestOf(out(`${precision}-none`)).artifact.sha256,
    );
  });
});

describe("optimizeForEdge refusals", () => {
  it("flags nodes outside the ONNX and com.microsoft domains and CPU-EP layout ops", () => {
    const g = new Graph();
    g.addInput("x", "float32", [1, 4, 8, 8]);
    g.addNode("ReorderInput", ["x"], {}, { name: "r", outputs: ["a"], domain: "com.microsoft.nchwc" });
    g.addNode("NhwcMaxPool", ["a"], {}, { name: "p", outputs: ["b"], domain: "com.microsoft" });
    g.addNode("Relu", ["b"], {}, { name: "relu", outputs: ["y"] });
    g.addOutput("y", "float32");
    expect(nonPortableOps(g).sort()).toEqual([
      "com.microsoft.nchwc:ReorderInput",
      "com.microsoft:NhwcMaxPool",
    ]);
  });

  it("keeps the unfused graph, with the reason, when the fused one is out of tolerance", async () => {
    const unfused = graphOf(out("fp32-none"));
    const r = await optimizeForEdge(unfused, evalSet.batches.slice(0, 1), "edge", -1);
    expect(r.graph).toBe(unfused);
    expect(r.report.applied).toBe(false);
    expect(r.report.reason).toMatch(/differs from the unfused one in onnxruntime-web.*tolerance -1/);
  }, 60_000);

  it("does nothing for none", async () => {
    const unfused = graphOf(out("fp32-none"));
    const r = await optimizeForEdge(unfused, evalSet.batches, "none");
    expect(r.graph).toBe(unfused);
    expect(r.report).toMatchObject({ requested: "none", applied: false });
  });
});
