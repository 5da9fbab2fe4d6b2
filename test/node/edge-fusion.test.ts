/**
 * Contrib fusions for the edge (export/edge-fusion.ts) on exported encoders: every residual Add + LayerNorm
 * becomes SkipLayerNormalization and every attention chain MultiHeadAttention, for even heads, uneven heads in
 * groups and padded heads, and the fused graph computes what the unfused export computes — in onnxruntime-node
 * (the reference, optimisations off so it runs the ops as written) and in onnxruntime-web's wasm build.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { structuredGates } from "../../bench/lib/gates";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import type { Graph } from "../../src/core/onnx/graph";
import { fuseContribOps } from "../../src/trainer-node/export/edge-fusion";
import { exportPrunedModel } from "../../src/trainer-node/export/export";
import { optimizeForEdge, ortFusedGraph, runInWasm } from "../../src/trainer-node/export/optimize";
import { quantizeGraph } from "../../src/trainer-node/export/quantize";
import { feedsFor, syntheticBatch } from "../../src/trainer-node/export/run";

const config = {
  vocabSize: 60,
  hidden: 32,
  heads: 4,
  ffn: 48,
  layers: 2,
  maxPositions: 24,
  numLabels: 2,
  initStd: 0.3,
  seed: 17,
};
const batch = syntheticBatch(60, 4, 20, 3);

async function logits(g: Graph): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(g), { graphOptimizationLevel: "disabled" });
  try {
    return (await s.run(feedsFor(g, batch))).logits.data as Float32Array;
  } finally {
    await s.release();
  }
}
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const count = (g: Graph, op: string) => g.nodes.filter((n) => n.op === op).length;

describe("edge contrib fusions", () => {
  const cases = [
    { name: "dense", target: 0, uneven: false, heads: "grouped" as const },
    { name: "uneven heads, grouped", target: 0.4, uneven: true, heads: "grouped" as const },
    { name: "uneven heads, padded", target: 0.4, uneven: true, heads: "padded" as const },
  ];
  for (const c of cases)
    for (const precision of ["fp32", "int8"] as const)
      it(`${c.name} ${precision}: Skip LayerNorms and MultiHeadAttention, same logits in onnxruntime and wasm`, async () => {
        const base = buildEncoder({ ...config, layout: "bert", layerNorm: "fused" });
        const { graph } = await exportPrunedModel(base, structuredGates(base, c.target, 5, c.uneven), {
          heads: c.heads,
        });
        const plain = precision === "int8" ? quantizeGraph(graph, { form: "standard" }).graph : graph;
        const fused = await ortFusedGraph(plain);
        const chains = count(fused, "Softmax");
        expect(chains).toBeGreaterThanOrEqual(2);
        if (c.heads === "padded" || c.target === 0) expect(chains).toBe(2);
        const report = fuseContribOps(fused);
        // Two residual LayerNorms per layer (the embedding LayerNorm stays); every chain is one op now.
        expect(report).toEqual({ skipLayerNorm: 4, multiHeadAttention: chains });
        expect(count(fused, "Softmax")).toBe(0);
        expect(count(fused, "LayerNormalization")).toBe(1);
        const want = await logits(plain);
        expect(maxDiff(want, await logits(fused))).toBeLessThanOrEqual(1e-4);
        const [wasm] = await runInWasm([{ bytes: encodeModel(fused), level: "disabled" }], [batch]);
        expect(wasm.ok ? maxDiff(want, wasm.output) : wasm.error).toBeLessThanOrEqual(1e-4);
      }, 60_000);

  it("optimizeForEdge applies them only when asked, after its wasm check", async () => {
    const base = buildEncoder({ ...config, layout: "bert", layerNorm: "fused" });
    const { graph } = await exportPrunedModel(base, structuredGates(base, 0.4, 5, true));
    const off = await optimizeForEdge(graph, [batch], "edge");
    const on = await optimizeForEdge(graph, [batch], "edge", undefined, undefined, true);
    expect(off.report.applied && on.report.applied).toBe(true);
    expect(off.report.contrib).toBeUndefined();
    expect(count(off.graph, "MultiHeadAttention")).toBe(0);
    expect(on.report.contrib?.applied).toBe(true);
    expect(count(on.graph, "MultiHeadAttention")).toBe(on.report.contrib?.multiHeadAttention);
    expect(on.report.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  }, 120_000);
});
