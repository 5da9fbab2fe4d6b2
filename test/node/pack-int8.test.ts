/**
 * Packed int8 projections (export/pack-int8.ts) on exported encoders: each block's Q, K and V int8 linears
 * become one DynamicQuantizeMatMul and one Split, and the packed graph computes what the unpacked int8 graph
 * computes — the reference is onnxruntime-node running the unpacked graph with optimisations off, so it runs the
 * ops as onnxruntime fused them; the packed graph is also run in onnxruntime-web's wasm build.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { structuredGates } from "../../bench/lib/gates";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import type { Graph } from "../../src/core/onnx/graph";
import { tensor } from "../../src/core/onnx/tensor";
import { fuseContribOps } from "../../src/trainer-node/export/edge-fusion";
import { exportPrunedModel } from "../../src/trainer-node/export/export";
import { optimizeForEdge, ortFusedGraph, runInWasm } from "../../src/trainer-node/export/optimize";
import { packInt8Linears } from "../../src/trainer-node/export/pack-int8";
import { type QuantOpForm, quantizeGraph } from "../../src/trainer-node/export/quantize";
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
/**
 * Packing keeps every int8 value, scale and bias and quantizes the activation once either way, so only float
 * rounding in the GEMM's dequantisation could differ: measured 0 here; allowed: 1e-5.
 */
const TOLERANCE = 1e-5;

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

/** An exported encoder (uneven heads: several head groups per layer), int8, as onnxruntime fuses it. */
async function int8Fused(form: QuantOpForm, target = 0.4, uneven = true): Promise<Graph> {
  const base = buildEncoder({ ...config, layout: "bert", layerNorm: "fused" });
  const { graph } = await exportPrunedModel(base, structuredGates(base, target, 5, uneven));
  return ortFusedGraph(quantizeGraph(graph, { form }).graph);
}

describe("packed int8 projections", () => {
  for (const form of ["standard", "contrib"] as const)
    for (const contrib of [false, true])
      it(`${form} op form${contrib ? ", after the contrib fusions" : ""}: one GEMM + one Split per block, same logits`, async () => {
        const unpacked = await int8Fused(form);
        if (contrib) fuseContribOps(unpacked);
        const splitsBefore = count(unpacked, "Split");
        const packed = unpacked.clone();
        const report = packInt8Linears(packed);
        // Q, K and V of each of the 2 layers; the FFN and output projections read activations of their own.
        expect(report).toEqual({ groups: 2, linears: 6 });
        expect(count(packed, "MatMulIntegerToFloat")).toBe(0);
        // Per layer: Q/K/V + output + FFN up + FFN down were 6 int8 linears, now 4.
        expect(count(packed, "DynamicQuantizeMatMul")).toBe(8);
        // The per-group Splits of Q, K and V (3 per layer) are absorbed into the one packed Split.
        expect(splitsBefore).toBe(6);
        expect(count(packed, "Split")).toBe(2);
        const want = await logits(unpacked);
        expect(maxDiff(want, await logits(packed))).toBeLessThanOrEqual(TOLERANCE);
        const [wasm] = await runInWasm([{ bytes: encodeModel(packed), level: "disabled" }], [batch]);
        expect(wasm.ok ? maxDiff(want, wasm.output) : wasm.error).toBeLessThanOrEqual(1e-4);
      }, 60_000);

  it("even heads (no per-group Split): the packed Split gives Q, K and V themselves", async () => {
    const unpacked = await int8Fused("standard", 0.25, false);
    expect(count(unpacked, "Split")).toBe(0);
    const packed = unpacked.clone();
    expect(packInt8Linears(packed)).toEqual({ groups: 2, linears: 6 });
    expect(count(packed, "Split")).toBe(2);
    expect(maxDiff(await logits(unpacked), await logits(packed))).toBeLessThanOrEqual(TOLERANCE);
  }, 60_000);

  it("does not pack an fp32 graph, per-tensor scales, or non-zero weight zero points", async () => {
    const base = buildEncoder({ ...config, layout: "bert", layerNorm: "fused" });
    const fp32 = await ortFusedGraph(base);
    expect(packInt8Linears(fp32)).toEqual({ groups: 0, linears: 0 });

    // Per-tensor scales: one scale for a whole weight (this pass concatenates per-column scales only).
    const perTensor = await int8Fused("standard");
    for (const n of perTensor.nodes.filter((x) => x.op === "MatMulIntegerToFloat"))
      n.inputs[3] = perTensor.constant(tensor("float32", [], [0.01]), "per_tensor_scale");
    const nodes = perTensor.nodes.length;
    expect(packInt8Linears(perTensor)).toEqual({ groups: 0, linears: 0 });
    expect(perTensor.nodes.length).toBe(nodes);

    // A weight zero point of 3 (asymmetric weights): their columns could not share one zero-point-free GEMM.
    const asym = await int8Fused("standard");
    for (const n of asym.nodes.filter((x) => x.op === "MatMulIntegerToFloat")) {
      const cols = asym.initializers.get(n.inputs[1])!.dims[1];
      n.inputs[5] = asym.constant(tensor("int8", [cols], new Int8Array(cols).fill(3)), "zp");
    }
    expect(packInt8Linears(asym)).toEqual({ groups: 0, linears: 0 });
  }, 60_000);

  it("optimizeForEdge packs only when asked, after its wasm check", async () => {
    const base = buildEncoder({ ...config, layout: "bert", layerNorm: "fused" });
    const { graph } = await exportPrunedModel(base, structuredGates(base, 0.4, 5, true));
    const int8 = quantizeGraph(graph, { form: "standard" }).graph;
    const off = await optimizeForEdge(int8, [batch], "edge", undefined, undefined, true);
    const on = await optimizeForEdge(int8, [batch], "edge", undefined, undefined, true, true);
    expect(off.report.pack).toBeUndefined();
    expect(count(off.graph, "MatMulIntegerToFloat")).toBe(6);
    expect(on.report.pack).toEqual({ groups: 2, linears: 6, applied: true });
    expect(count(on.graph, "MatMulIntegerToFloat")).toBe(0);
    expect(on.report.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  }, 120_000);
});
