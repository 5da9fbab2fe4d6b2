/**
 * SDPA-style exports (transformers ≥ 4.36 attn_implementation="sdpa", torch ≥ 2.1's symbolic): the scale is
 * computed from the query's shape and multiplied, as its square root, into both q and kᵀ. Export shrinks the
 * very dims that shape is read from, so the scale must be frozen at the trained head size: these tests build
 * that dynamic scale into a real fixture's graph, export with shrunk heads, and show both that the export
 * equals the gated model and that a scale recomputed from the pruned shape would not.
 */
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { structuredGates } from "../../bench/lib/gates";
import { encodeModel } from "../../src/core/onnx/codec";
import type { Graph } from "../../src/core/onnx/graph";
import { tensor } from "../../src/core/onnx/tensor";
import { exportPrunedModel } from "../../src/trainer-node/export/export";
import { feedsFor, syntheticBatch } from "../../src/trainer-node/export/run";
import { type AttentionBlock, analyzeEncoder } from "../../src/trainer-node/import/blocks";
import { ImportError } from "../../src/trainer-node/import/errors";
import { loadUserModel } from "../../src/trainer-node/import/load";
import { freezeAttentionScales } from "../../src/trainer-node/import/scale";

const fixture = (id: string) => path.resolve(import.meta.dirname, "../fixtures/hf", id, "model.onnx");
const HEAD_DIM = 8;
// What torch's _attention_scale computes, then the square root the symbolic applies to each operand.
const SQRT_SCALE = Math.sqrt(1 / Math.sqrt(HEAD_DIM));

/** The Mul ops scaling q and kᵀ, with the index of their scale operand. */
function scaleMuls(block: AttentionBlock) {
  return [...block.qOps, ...block.kOps]
    .filter((op) => op.node.op === "Mul")
    .map((op) => ({ node: op.node, operand: 1 - op.pathInput, path: op.node.inputs[op.pathInput] }));
}

/**
 * torch ≥ 2.1's `_attention_scale` + `Sqrt`, built on `g` from Shape(`from`) with the Slice picking `axis`
 * (-1: the head size, as the symbolic does; -2: the sequence length, for the refusal case).
 */
function dynamicSqrtScale(g: Graph, from: string, axis = -1): string {
  const shape = g.op("Shape", [from]);
  const last = g.op("Slice", [shape, g.constInts([axis]), g.constInts([axis === -1 ? 2 ** 62 : axis + 1])]);
  const size = g.op("Cast", [last], { to: 1 });
  const one = g.constant(tensor("float32", [1], [1]));
  const scale = g.op("Cast", [g.op("Div", [one, g.op("Sqrt", [size])])], { to: 1 });
  return g.op("Sqrt", [scale]);
}

/** The imported graph with every q/kᵀ scale computed from the query's shape again, as the file had it. */
function unfrozen(graph: Graph, axis = -1): Graph {
  const g = graph.clone();
  for (const block of analyzeEncoder(g).attention) {
    const [q] = scaleMuls(block);
    // torch reads the shape of the query after its head split and transpose: the q Mul's path input.
    const s = dynamicSqrtScale(g, q.path, axis);
    for (const m of scaleMuls(block)) m.node.inputs[m.operand] = s;
  }
  return g.toposort();
}

async function logits(g: Graph, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(encodeModel(g));
  return (await session.run(feeds)).logits.data as Float32Array;
}

describe("SDPA exports: attention scale computed from the query's shape", () => {
  const model = loadUserModel(fixture("bert-sdpa-seqcls-o14"));

  it("import recognises both scaled operands and freezes the scale at 1/√d_head", () => {
    const attention = analyzeEncoder(model.graph).attention;
    expect(attention.map((a) => [a.heads, a.headDim])).toEqual([
      [4, HEAD_DIM],
      [4, HEAD_DIM],
    ]);
    for (const block of attention) {
      const muls = scaleMuls(block);
      expect(muls.length, "q and kᵀ are each scaled").toBe(2);
      for (const m of muls) {
        const t = model.graph.initializers.get(m.node.inputs[m.operand]);
        expect(t, `${m.node.name}: scale is a constant`).toBeDefined();
        expect(Array.from(t!.data as Float32Array)).toEqual([expect.closeTo(SQRT_SCALE, 7)]);
      }
    }
  });

  it("recognition takes a scale still computed from the shape; freezing makes it the constant", () => {
    const g = unfrozen(model.graph);
    const blocks = analyzeEncoder(g).attention;
    expect(blocks).toHaveLength(2);
    for (const m of blocks.flatMap(scaleMuls))
      expect(g.initializers.has(m.node.inputs[m.operand]), "computed, not constant").toBe(false);
    expect(freezeAttentionScales(g, blocks)).toBe(2); // one chain per layer, shared by q and kᵀ
    for (const m of blocks.flatMap(scaleMuls)) {
      const t = g.initializers.get(m.node.inputs[m.operand]);
      expect(Array.from(t!.data as Float32Array)).toEqual([expect.closeTo(SQRT_SCALE, 7)]);
    }
    expect(g.nodes.some((n) => n.op === "Shape" && n.outputs.some((o) => o.includes("Slice")))).toBe(false);
  });

  it("export with shrunk heads keeps the original scale: equal to the gated model, no unpruned path left", async () => {
    const g = unfrozen(model.graph);
    const gates = structuredGates(g, 0.4, 3, true);
    const { graph: exported, report } = await exportPrunedModel(g, gates);
    expect(report.unrecognised).toEqual([]);
    expect(report.attention.every((a) => a.qkDims.some((d) => d < HEAD_DIM))).toBe(true);
    expect(report.equivalence.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    // The parameter count of exporting the already-frozen import (whose q and kᵀ scales are separate
    // one-element constants, two per layer against one shared here): no unpruned projection (1,056 weights)
    // kept alive for a Shape to read.
    const frozen = await exportPrunedModel(model.graph, gates);
    expect(frozen.report.params.after - report.params.after).toBe(2);
    expect(exported.nodes.filter((n) => n.op === "Sqrt").length).toBe(
      frozen.graph.nodes.filter((n) => n.op === "Sqrt").length,
    );

    // Negative control: the scale recomputed from the *pruned* query's shape is not the gated model.
    // (Surgery applies the scale to the compact projection, before the per-head-group split.)
    const broken = exported.clone();
    const isScale = (name: string) => {
      const t = broken.initializers.get(name);
      return t?.data.length === 1 && Math.abs(Number(t.data[0]) - SQRT_SCALE) < 1e-7;
    };
    let rescaled = 0;
    for (const n of [...broken.nodes]) {
      const k = n.op === "Mul" ? n.inputs.findIndex(isScale) : -1;
      if (k < 0) continue;
      n.inputs[k] = dynamicSqrtScale(broken, n.inputs[1 - k]);
      rescaled++;
    }
    expect(rescaled, "q and kᵀ of both layers").toBe(4);
    const feeds = feedsFor(exported, syntheticBatch(500, 4, 12));
    const [a, b] = [await logits(exported, feeds), await logits(broken.toposort(), feeds)];
    const diff = Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i])));
    expect(diff, "a pruned-shape scale changes the logits").toBeGreaterThan(1e-3);
  });

  it("refuses to freeze a scale that depends on the sequence length", () => {
    const g = unfrozen(model.graph, -2);
    const blocks = analyzeEncoder(g).attention;
    expect(blocks).toHaveLength(2);
    expect(() => freezeAttentionScales(g, blocks)).toThrow(ImportError);
    expect(() => freezeAttentionScales(g, blocks)).toThrow(/batch size or sequence length/);
  });
});

describe("SDPA fixtures: every exporter layout recognised", () => {
  it.each(["bert-sdpa-seqcls-o14", "distilbert-sdpa-seqcls-o14", "roberta-sdpa-seqcls-o17-nofold"])(
    "%s: 2 attention blocks, 4 heads × 8, mask added to the scores",
    (id) => {
      const m = loadUserModel(fixture(id));
      expect(m.report.attention.map((a) => [a.heads, a.headDim])).toEqual([
        [4, 8],
        [4, 8],
      ]);
      for (const block of m.recognition.attention) {
        expect(scaleMuls(block)).toHaveLength(2);
        expect(block.scoreOps.map((o) => o.node.op)).toEqual(["Add"]);
      }
    },
  );
});
