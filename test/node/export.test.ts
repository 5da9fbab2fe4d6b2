import { createHash } from "node:crypto";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildEncoder, type EncoderLayout } from "../../src/core/models/encoder";
import { encodeModel } from "../../src/core/onnx";
import type { Graph } from "../../src/core/onnx/graph";
import { tensor } from "../../src/core/onnx/tensor";
import { Rng } from "../../src/core/random";
import {
  checkEquivalence,
  countParameters,
  ExportEquivalenceError,
  exportPrunedModel,
  gatedModel,
} from "../../src/trainer-node/export/export";
import { feedsFor, syntheticBatch } from "../../src/trainer-node/export/run";
import {
  CHECKPOINT_FORMAT,
  type GateCheckpoint,
  HEAD_WEIGHT,
  tensorToJson,
} from "../../src/trainer-node/gates/checkpoint";
import { analyzeEncoder } from "../../src/trainer-node/import/blocks";
import { findLinearLayers, type LinearLayer } from "../../src/trainer-node/import/linears";
import { selectGatedLayers } from "../../src/trainer-node/import/recognize";

const HIDDEN = 16;
const HEADS = 2;
const DH = HIDDEN / HEADS;
const small = {
  vocabSize: 40,
  hidden: HIDDEN,
  heads: HEADS,
  ffn: 24,
  layers: 2,
  maxPositions: 16,
  numLabels: 3,
  initStd: 0.3,
};

type Gates = { row: number[]; col: number[] };
type Role = "q" | "k" | "v" | "o" | "up" | "down";
const ROLES: Role[] = ["q", "k", "v", "o", "up", "down"];

/** A gate pattern: for (encoder layer, role, rng) returns row/col gates; open gates get values in [0.5, 1]. */
type Pattern = (layer: number, role: Role, l: LinearLayer, rng: Rng) => Gates;

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const open = (n: number, rng: Rng) => Array.from({ length: n }, () => 0.5 + rng.next() / 2);
const random = (n: number, rng: Rng, p: number) =>
  Array.from({ length: n }, () => (rng.next() < p ? 0 : 0.5 + rng.next() / 2));
const headDims = (h: number) => Array.from({ length: DH }, (_, j) => h * DH + j);
const closing = (gates: number[], idx: number[]) => {
  for (const i of idx) gates[i] = 0;
  return gates;
};

const PATTERNS: Record<string, Pattern> = {
  "nothing closed": (_i, _r, l, rng) => ({ row: open(l.outFeatures, rng), col: open(l.inFeatures, rng) }),
  "rows only": (_i, _r, l, rng) => ({ row: random(l.outFeatures, rng, 0.3), col: open(l.inFeatures, rng) }),
  "columns only": (_i, _r, l, rng) => ({
    row: open(l.outFeatures, rng),
    col: random(l.inFeatures, rng, 0.3),
  }),
  "rows and columns": (_i, _r, l, rng) => ({
    row: random(l.outFeatures, rng, 0.3),
    col: random(l.inFeatures, rng, 0.3),
  }),
  // Layer 0: head 0 loses every V dim (the head goes). Layer 1: head 1 loses every Q row but keeps V, so its
  // scores are all zero (uniform attention over unmasked tokens), and head 0 loses half its K rows.
  "whole heads": (i, role, l, rng) => {
    const g = { row: open(l.outFeatures, rng), col: open(l.inFeatures, rng) };
    if (i === 0 && role === "v") closing(g.row, headDims(0));
    if (i === 1 && role === "q") closing(g.row, headDims(1));
    if (i === 1 && role === "k") closing(g.row, headDims(0).slice(0, DH / 2));
    return g;
  },
  // Layer 0: every FFN neuron closed (the FFN is its bias) and every attention output row closed (zeros).
  // Layer 1: every V row closed (attention is its output bias) and every Q input column closed (Q = bias).
  "everything closed in a layer": (i, role, l, rng) => {
    const g = { row: open(l.outFeatures, rng), col: open(l.inFeatures, rng) };
    if (i === 0 && role === "up") g.row.fill(0);
    if (i === 0 && role === "o") g.row.fill(0);
    if (i === 1 && role === "v") g.row.fill(0);
    if (i === 1 && role === "q") g.col.fill(0);
    return g;
  },
};

function checkpoint(base: Graph, pattern: Pattern, seed: number): { ckpt: GateCheckpoint; gates: Gates[] } {
  const rng = new Rng(seed);
  const layers = selectGatedLayers(base);
  const gates = layers.map((l, n) => pattern(Math.floor(n / 6), ROLES[n % 6], l, rng));
  const ckpt: GateCheckpoint = {
    format: CHECKPOINT_FORMAT,
    base: { name: "test-base", sha256: "0".repeat(64) },
    task: { name: "test", labels: ["a", "b", "c"] },
    head: { kind: "model" },
    method: "test",
    settings: {},
    seed,
    step: 0,
    layers: layers.map((l, n) => ({ node: l.node, rowGate: gates[n].row, colGate: gates[n].col })),
    params: {},
  };
  return { ckpt, gates };
}

/**
 * The parameter count export must reach, worked out from the removal rules directly (not from export's plan):
 * FFN neuron j stays iff up-row j and down-column j are open; a V dim stays iff its V row and output column are
 * open, a head stays iff it keeps a V dim, and its Q/K dims stay iff both their Q and K rows are open; nothing
 * stays before an output/down layer whose rows are all closed; a layer keeps its open input columns (when it
 * computes anything) and a weight + bias per kept output.
 */
function expectedCounts(
  base: Graph,
  layers: LinearLayer[],
  gates: Gates[],
  residual: "gather" | "zeros" = "gather",
) {
  const nz = (a: number[]) => a.filter((x) => x !== 0).length;
  // Residual-stream sides (Q/K/V/FFN-in inputs, output/FFN-out outputs): `gather` keeps only open features,
  // `zeros` keeps the full width as zero rows/columns unless every feature is closed.
  const side = (a: number[]) => (residual === "gather" || nz(a) === 0 ? nz(a) : a.length);
  let total = countParameters(base);
  let weights = 0;
  const linear = (read: number, out: number) => {
    if (out === 0) return 0;
    weights += read * out;
    return read * out + out;
  };
  for (let b = 0; b < layers.length / 6; b++) {
    const [q, k, v, o, up, down] = gates.slice(b * 6, b * 6 + 6);
    for (const l of layers.slice(b * 6, b * 6 + 6)) total -= l.inFeatures * l.outFeatures + l.outFeatures;
    let qk = 0;
    let vd = 0;
    for (let h = 0; h < HEADS; h++) {
      const dims = headDims(h);
      const keptV = nz(o.row) === 0 ? 0 : dims.filter((j) => v.row[j] !== 0 && o.col[j] !== 0).length;
      vd += keptV;
      if (keptV > 0) qk += dims.filter((j) => q.row[j] !== 0 && k.row[j] !== 0).length;
    }
    total +=
      linear(side(q.col), qk) + linear(side(k.col), qk) + linear(side(v.col), vd) + linear(vd, side(o.row));
    const neurons = nz(down.row) === 0 ? 0 : up.row.filter((r, j) => r !== 0 && down.col[j] !== 0).length;
    total += linear(side(up.col), neurons) + linear(neurons, side(down.row));
  }
  return { total, weights };
}

const LAYOUTS: EncoderLayout[] = ["bert", "distilbert", "roberta", "bert-preln"];

/**
 * Rewrites a built encoder's shape plumbing the way recent torch.onnx exports write it: Reshape targets from
 * `x.size()[:-1] + (H, dh)` / `ctx.size()[:-2] + (H·dh,)` (Shape → Slice of the tensor itself, so the Q/K/V
 * outputs and the context also feed Shape nodes), and DistilBERT's mask expanded to the scores' shape.
 */
function torchShapePlumbing(g: Graph): Graph {
  const producers = g.producers();
  for (const reshape of g.nodes.filter((n) => n.op === "Reshape")) {
    const concat = producers.get(reshape.inputs[1]);
    if (concat?.op !== "Concat") continue;
    const x = reshape.inputs[0];
    const drop = concat.inputs.length === 4 ? -1 : -2;
    const lead = g.op("Slice", [g.op("Shape", [x]), g.constInts([0]), g.constInts([drop])]);
    reshape.inputs[1] = g.op("Concat", [lead, ...concat.inputs.slice(2)], { axis: 0 });
  }
  for (const where of g.nodes.filter((n) => n.op === "Where")) {
    where.inputs[0] = g.op("Expand", [where.inputs[0], g.op("Shape", [where.inputs[2]])]);
  }
  return g.toposort().cleanup();
}

describe("exportPrunedModel", () => {
  for (const layout of LAYOUTS) {
    for (const layerNorm of ["fused", "decomposed"] as const) {
      it(`${layout} (${layerNorm} LayerNorm): every gate pattern exports exactly, to the expected size`, async () => {
        const base = buildEncoder({ ...small, layout, layerNorm, seed: 11 });
        const layers = selectGatedLayers(base);
        const analysis = analyzeEncoder(base);
        expect(analysis.attention).toHaveLength(2);
        // Two encoder FFNs (the pooler/pre-classifier → activation → classifier pair is found too, ungated).
        const gatedNodes = new Set(layers.map((l) => l.node));
        expect(
          analysis.ffn.filter((f) => gatedNodes.has(f.up.node) && gatedNodes.has(f.down.node)),
        ).toHaveLength(2);
        const batch = syntheticBatch(40, 3, 9, 5);
        for (const [patternName, pattern] of Object.entries(PATTERNS))
          for (const residual of ["gather", "zeros"] as const) {
            const name = `${patternName} (${residual})`;
            const { ckpt, gates } = checkpoint(
              base,
              pattern,
              100 + Object.keys(PATTERNS).indexOf(patternName),
            );
            const { graph, report } = await exportPrunedModel(base, ckpt, { batches: [batch], residual });
            const expected = expectedCounts(base, layers, gates, residual);
            expect(report.unrecognised, name).toEqual([]);
            expect(countParameters(graph), name).toBe(expected.total);
            expect(report.params.after, name).toBe(expected.total);
            expect(report.gatedWeights.after, name).toBe(expected.weights);
            expect(report.equivalence.maxAbsDiff, name).toBeLessThanOrEqual(1e-4);
            if (patternName === "nothing closed") expect(report.removedFraction).toBe(0);
            else expect(report.removedFraction, name).toBeGreaterThan(0.05);
            // No dead weight left behind: every initializer is used.
            const used = new Set(graph.nodes.flatMap((n) => n.inputs));
            expect(
              [...graph.initializers.keys()].filter((k) => !used.has(k)),
              name,
            ).toEqual([]);
          }
      });
    }
  }

  for (const layout of LAYOUTS) {
    it(`${layout} with torch.onnx shape plumbing (Shape→Slice targets, expanded masks) is recognised and exact`, async () => {
      const base = torchShapePlumbing(buildEncoder({ ...small, layout, seed: 13 }));
      const layers = selectGatedLayers(base);
      const consumers = base.consumers();
      expect(layers.filter((l) => consumers.get(l.output)?.some((n) => n.op === "Shape"))).toHaveLength(6);
      for (const name of ["rows and columns", "whole heads"]) {
        const { ckpt, gates } = checkpoint(base, PATTERNS[name], 31);
        const { graph, report } = await exportPrunedModel(base, ckpt, { residual: "gather" });
        expect(report.unrecognised, name).toEqual([]);
        expect(report.attention, name).toHaveLength(2);
        expect(countParameters(graph), name).toBe(expectedCounts(base, layers, gates).total);
        expect(report.equivalence.maxAbsDiff, name).toBeLessThanOrEqual(1e-4);
      }
    });
  }

  it("auto residual policy follows its cost model: zeros when Gathers cost more, Gathers when they are cheap", async () => {
    const base = buildEncoder({ ...small, seed: 12 });
    const layers = selectGatedLayers(base);
    const { ckpt, gates } = checkpoint(base, PATTERNS["rows and columns"], 12);
    const pricey = await exportPrunedModel(base, ckpt, { residual: "auto", gatherCost: 1e9 });
    const cheap = await exportPrunedModel(base, ckpt, { residual: "auto", gatherCost: 0 });
    expect(countParameters(pricey.graph)).toBe(expectedCounts(base, layers, gates, "zeros").total);
    expect(countParameters(cheap.graph)).toBe(expectedCounts(base, layers, gates, "gather").total);
    expect(pricey.graph.nodes.filter((n) => n.op === "Gather").length).toBeLessThan(
      cheap.graph.nodes.filter((n) => n.op === "Gather").length,
    );
    expect(cheap.report.removedFraction).toBeGreaterThan(pricey.report.removedFraction);
  });

  it("reports uneven heads, a zero-Q/K head and FLOPs that shrink with the kept dims", async () => {
    const base = buildEncoder({ ...small, seed: 3 });
    const { ckpt } = checkpoint(base, PATTERNS["whole heads"], 9);
    const { report } = await exportPrunedModel(base, ckpt, { flopsSeqLen: 10 });
    expect(report.attention[0].keptHeads).toBe(1);
    expect(report.attention[0].vDims).toEqual([0, DH]);
    expect(report.attention[1].qkDims).toEqual([DH / 2, 0]);
    expect(report.attention[1].vDims).toEqual([DH, DH]);
    // Independent FLOP count at S = 10: linears (MatMul per token, Gemm per sequence) + scores and context.
    const linearFlops = findLinearLayers(base).reduce(
      (s, l) => s + (2 * l.inFeatures * l.outFeatures) / (l.op === "Gemm" ? 10 : 1),
      0,
    );
    expect(report.flopsPerToken.before).toBeCloseTo(linearFlops + 2 * 2 * 10 * (HIDDEN + HIDDEN), 6);
    // Layer 0 loses head 0: Q, K, V columns and output rows (4 × 16 × 8 MACs) and its scores and context.
    const removed = 2 * 4 * HIDDEN * DH + 2 * 10 * (DH + DH);
    // Layer 1 loses 8 + 4 Q/K dims: Q and K columns (2 × 16 × 12 MACs) and their share of the scores.
    const layer1 = 2 * 2 * HIDDEN * (DH + DH / 2) + 2 * 10 * (DH + DH / 2);
    expect(report.flopsPerToken.before - report.flopsPerToken.after).toBeCloseTo(removed + layer1, 6);
  });

  for (const layout of ["bert", "distilbert"] as const)
    it(`${layout}: padded heads give one attention chain per layer, exact, with only zero padding added`, async () => {
      const base = buildEncoder({ ...small, layout, seed: 14 });
      const layers = selectGatedLayers(base);
      const softmaxes = (g: Graph) => g.nodes.filter((n) => n.op === "Softmax").length;
      const batch = syntheticBatch(40, 3, 9, 5);
      for (const name of ["whole heads", "rows and columns"]) {
        const { ckpt, gates } = checkpoint(base, PATTERNS[name], 41);
        const grouped = await exportPrunedModel(base, ckpt, { residual: "gather", batches: [batch] });
        const padded = await exportPrunedModel(base, ckpt, {
          residual: "gather",
          heads: "padded",
          batches: [batch],
        });
        // exportPrunedModel itself throws unless the export matches the gated model in onnxruntime.
        expect(padded.report.equivalence.maxAbsDiff, name).toBeLessThanOrEqual(1e-4);
        expect(softmaxes(padded.graph), name).toBe(2);
        // Both patterns leave a layer with heads of unequal kept sizes (the case padding is for).
        expect(softmaxes(grouped.graph), name).toBeGreaterThan(2);
        // Same plan, same report: padding is layout, not kept weights.
        expect(padded.report.gatedWeights, name).toEqual(grouped.report.gatedWeights);
        // Parameters: the grouped count plus, per layer, the padding worked out from the gates directly — each
        // kept head grows to the largest kept Q/K and V sizes; a padded Q/K/V column has a weight per read input
        // and a bias, a padded output-layer row a weight per written output.
        const nz = (a: number[]) => a.filter((x) => x !== 0).length;
        let padding = 0;
        for (let b = 0; b < layers.length / 6; b++) {
          const [q, k, v, o] = gates.slice(b * 6, b * 6 + 4);
          const keptV = (h: number) => headDims(h).filter((j) => v.row[j] !== 0 && o.col[j] !== 0).length;
          const keptQk = (h: number) => headDims(h).filter((j) => q.row[j] !== 0 && k.row[j] !== 0).length;
          const heads = Array.from({ length: HEADS }, (_, h) => h).filter((h) => keptV(h) > 0);
          if (heads.length === 0 || nz(o.row) === 0) continue;
          const qkMax = Math.max(...heads.map(keptQk));
          const vMax = Math.max(...heads.map(keptV));
          const padQk = heads.reduce((n, h) => n + qkMax - keptQk(h), 0);
          const padV = heads.reduce((n, h) => n + vMax - keptV(h), 0);
          padding += padQk * (nz(q.col) + 1) + padQk * (nz(k.col) + 1) + padV * (nz(v.col) + 1);
          padding += padV * nz(o.row);
        }
        expect(padding, name).toBeGreaterThan(0);
        expect(countParameters(padded.graph), name).toBe(countParameters(grouped.graph) + padding);
        // And the two layouts agree with each other, not only with the gated model.
        const run = async (g: Graph) => {
          const session = await ort.InferenceSession.create(encodeModel(g));
          try {
            return (await session.run(feedsFor(g, batch))).logits.data as Float32Array;
          } finally {
            await session.release();
          }
        };
        const [a, c] = [await run(grouped.graph), await run(padded.graph)];
        expect(Math.max(...a.map((x, i) => Math.abs(x - c[i]))), name).toBeLessThanOrEqual(1e-5);
      }
    });

  it("exports gated head layers (Gemm) and a trained linear task head on a headless base", async () => {
    const base = buildEncoder({ ...small, head: "none", seed: 5 });
    const rng = new Rng(4);
    // Gate the encoder and also a Gemm: the task head added by prepareTaskGraph, handled per layer.
    const headW = tensor("float32", [3, HIDDEN], rng.normalArray(3 * HIDDEN, 0.5));
    const { ckpt } = checkpoint(base, PATTERNS["rows and columns"], 21);
    ckpt.head = { kind: "linear", pooling: "mean", hidden: HIDDEN };
    ckpt.params = { [HEAD_WEIGHT]: tensorToJson(headW) };
    ckpt.layers.push({
      node: "/sluice_head/classifier/Gemm",
      rowGate: [1, 0.7, 1],
      colGate: random(HIDDEN, rng, 0.4),
    });
    const { graph, report } = await exportPrunedModel(base, ckpt);
    expect(report.unrecognised).toEqual(["/sluice_head/classifier/Gemm"]);
    expect(report.equivalence.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(graph.outputs.map((o) => o.name)).toEqual(["logits"]);
  });

  it("returns the encoding onnxruntime verified, byte for byte the graph's; open layers hold the folded weight", async () => {
    const base = buildEncoder({ ...small, seed: 8 });
    const { ckpt } = checkpoint(base, PATTERNS["rows and columns"], 9);
    const { graph, bytes } = await exportPrunedModel(base, ckpt);
    expect(sha256(bytes)).toBe(sha256(encodeModel(graph)));
    // Nothing closed: each layer's weight (the folded one, not copied) is W[i, o] · col[i] · row[o].
    const openCkpt = checkpoint(base, PATTERNS["nothing closed"], 9).ckpt;
    const same = await exportPrunedModel(base, openCkpt);
    expect(same.report.removedFraction).toBe(0);
    expect(sha256(same.bytes)).toBe(sha256(encodeModel(same.graph)));
    const byNode = new Map(findLinearLayers(base).map((l) => [l.node, l]));
    for (const gates of openCkpt.layers) {
      const l = byNode.get(gates.node)!;
      const w = base.initializers.get(l.weight)!.data as Float32Array;
      const got = same.graph.initializers.get(`${l.node}.weight_pruned`)!.data as Float32Array;
      expect(got.length).toBe(l.inFeatures * l.outFeatures);
      for (let i = 0; i < l.inFeatures; i += 3)
        for (let o = 0; o < l.outFeatures; o += 5) {
          const v = l.weightTransposed ? w[o * l.inFeatures + i] : w[i * l.outFeatures + o];
          expect(got[i * l.outFeatures + o]).toBeCloseTo(v * gates.colGate[i] * gates.rowGate[o], 6);
        }
    }
  });

  it("fails loudly when the exported graph does not compute the gated model", async () => {
    const base = buildEncoder({ ...small, seed: 6 });
    const { ckpt } = checkpoint(base, PATTERNS["rows and columns"], 7);
    // The dense base is not the gated model: the check must refuse it.
    await expect(
      checkEquivalence(gatedModel(base, ckpt), base, [syntheticBatch(40, 2, 8)], 1e-4),
    ).rejects.toThrow(ExportEquivalenceError);
  });

  it("rejects a checkpoint whose layers are not in the base model", async () => {
    const base = buildEncoder({ ...small, seed: 6 });
    const { ckpt } = checkpoint(base, PATTERNS["nothing closed"], 7);
    ckpt.layers[0].node = "/not/a/layer/MatMul";
    await expect(exportPrunedModel(base, ckpt)).rejects.toThrow(/not a linear layer of the base model/);
  });

  it("the exported model loads in onnxruntime and has smaller activations (fewer heads in Reshape targets)", async () => {
    const base = buildEncoder({ ...small, seed: 8 });
    const { ckpt } = checkpoint(base, PATTERNS["whole heads"], 8);
    const { graph } = await exportPrunedModel(base, ckpt);
    const session = await ort.InferenceSession.create(encodeModel(graph));
    expect(session.outputNames).toEqual(["logits"]);
    const matmuls = graph.nodes.filter((n) => n.op === "MatMul" && graph.initializers.has(n.inputs[1]));
    const widths = matmuls.map((n) => graph.initializers.get(n.inputs[1])!.dims);
    // Layer 0's V projection keeps one head: [16, 8].
    expect(widths.some((d) => d[0] === HIDDEN && d[1] === DH)).toBe(true);
    await session.release();
  });
});
