/**
 * ALBERT-style cross-layer sharing gated with tied gates, on the corpus' real torch export of HF's ALBERT
 * (test/fixtures/hf/albert-seqcls-o14: one AlbertLayer whose weights both layers read). References come from
 * elsewhere than the code under test: closing a tied row is checked against the original graph with that
 * output column of the shared initializer (and its bias entry) zeroed by hand, and the tied gate's gradient
 * against the sum of the gradients of untied per-use gates.
 */
import path from "node:path";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { encodeModel } from "../../src/core/onnx/codec";
import type { Graph } from "../../src/core/onnx/graph";
import { tensor } from "../../src/core/onnx/tensor";
import { buildTrainingGraphWithInfo } from "../../src/trainer-node/autodiff/backward";
import { exportPrunedModel } from "../../src/trainer-node/export/export";
import { quantizeGraph } from "../../src/trainer-node/export/quantize";
import { feedsFor, syntheticBatch } from "../../src/trainer-node/export/run";
import { CHECKPOINT_FORMAT, type GateCheckpoint } from "../../src/trainer-node/gates/checkpoint";
import { colGateInput, insertGates, rowGateInput } from "../../src/trainer-node/gates/insert";
import { ImportError } from "../../src/trainer-node/import/errors";
import type { ImportedModel } from "../../src/trainer-node/import/import";
import type { LinearLayer } from "../../src/trainer-node/import/linears";
import { loadUserModel } from "../../src/trainer-node/import/load";
import { recognizeEncoder, selectGatedLayers } from "../../src/trainer-node/import/recognize";
import { formatImportReport } from "../../src/trainer-node/import/report";
import { checkSharedWeights } from "../../src/trainer-node/import/shared-weights";

const FIXTURE = path.resolve(__dirname, "../fixtures/hf/albert-seqcls-o14/model.onnx");
const batch = syntheticBatch(500, 3, 10, 11);

async function logits(g: Graph, extra: Record<string, ort.Tensor> = {}): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(g));
  try {
    return (await s.run(feedsFor(g, batch, extra), ["logits"])).logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** Gate feeds: all ones except the given entries, for every layer's row and column gate input. */
function gateFeeds(layers: LinearLayer[], closed: Map<string, number[]> = new Map()) {
  const feeds: Record<string, ort.Tensor> = {};
  for (const l of layers) {
    const row = new Float32Array(l.outFeatures).fill(1);
    for (const j of closed.get(rowGateInput(l.node)) ?? []) row[j] = 0;
    const col = new Float32Array(l.inFeatures).fill(1);
    for (const j of closed.get(colGateInput(l.node)) ?? []) col[j] = 0;
    feeds[rowGateInput(l.node)] = new ort.Tensor("float32", row, [row.length]);
    feeds[colGateInput(l.node)] = new ort.Tensor("float32", col, [col.length]);
  }
  return feeds;
}

describe("shared weights (ALBERT): import", () => {
  let model: ImportedModel;
  beforeAll(() => {
    model = loadUserModel(FIXTURE);
  });

  it("finds one weight per shared matrix, read by the linears of both layers", () => {
    const g = model.graph;
    expect(model.report.layers).toBe(2);
    expect(model.report.shared).toHaveLength(6);
    for (const s of model.report.shared) {
      expect(s.uses).toHaveLength(2);
      const readers = g.nodes.filter((n) => n.op === "MatMul" && n.inputs[1] === s.weight);
      expect(readers.map((n) => n.name)).toEqual(s.uses);
    }
    // torch's Identity aliases of the shared parameters are gone: 7 encoder matrices, each stored once.
    const encoderWeights = new Set(model.recognition.encoderLinears.map((l) => l.weight));
    expect(model.recognition.encoderLinears).toHaveLength(13);
    expect(encoderWeights.size).toBe(7);
    expect(
      formatImportReport(model, { numLabels: 2 }).match(/shared layers: 1 shared layer used 2×.*/)?.[0],
    ).toContain("6 shared weights read by 12 linears");
  });

  it("selects one gated layer per weight, carrying its uses, and refuses a partial selection", () => {
    const gated = selectGatedLayers(model.graph);
    expect(gated).toHaveLength(7);
    const q = gated.find((l) => l.node.endsWith("attention/query/MatMul"))!;
    expect(q.uses?.map((u) => u.node.split("/").at(-2))).toEqual(["query", "query_1"]);
    expect(() => selectGatedLayers(model.graph, { exclude: ["query_1"] })).toThrow(
      /gated at all of its uses or at none/,
    );
  });

  it("still refuses sharing that one tied gate cannot mean alike at every use", () => {
    const rec = () => recognizeEncoder(g);
    let g = model.graph.clone();
    const q = model.report.shared.find((s) => s.role === "attention.q")!;
    const k = model.report.shared.find((s) => s.role === "attention.k")!;
    // The second layer's key reads the query weight: one weight as Q in one place and K in another.
    g.nodes.find((n) => n.name === k.uses[1])!.inputs[1] = q.weight;
    expect(() => checkSharedWeights(g, rec())).toThrow(ImportError);
    expect(() => checkSharedWeights(g, rec())).toThrow(/shared by 3 linear layers .* roles|not shared alike/);

    // The query weight also read by a Gather (what tied input/output embeddings look like).
    g = model.graph.clone();
    const idx = g.constant(tensor("int64", [1], [0]), "idx");
    const gathered = g.op("Gather", [q.weight, idx], { axis: 0 }, { name: "/tied/Gather" });
    g.addOutput(gathered);
    expect(() => checkSharedWeights(g, rec())).toThrow(
      /shared by the linear .* and Gather node \/tied\/Gather, which is not a linear layer/,
    );

    // The second use reads the weight transposed (Gemm transB=1 on the square [32, 32] matrix).
    g = model.graph.clone();
    const use = g.nodes.find((n) => n.name === q.uses[1])!;
    use.op = "Gemm";
    use.attrs = { transB: { type: "int", value: 1 } };
    expect(() => checkSharedWeights(g, rec())).toThrow(/with transposition/);
  });
});

describe("shared weights (ALBERT): tied gates", () => {
  let model: ImportedModel;
  let gated: LinearLayer[];
  beforeAll(() => {
    model = loadUserModel(FIXTURE);
    gated = selectGatedLayers(model.graph);
  });

  it("a tied gate's gradient is the sum of what untied gates on each use would get", async () => {
    const loss = (g: Graph) => {
      // A fixed linear functional of the logits, so the gradient is not symmetric in the labels.
      const w = g.constant(tensor("float32", [1, 2], [0.7, -1.3]), "loss_w");
      g.op("ReduceSum", [g.op("Mul", ["logits", w])], { keepdims: 0 }, { output: "loss" });
      g.outputs = [{ name: "loss", dtype: "float32", shape: [] }];
      return g;
    };
    const untiedLayers = model.recognition.encoderLinears;
    const tied = loss(insertGates(model.graph.clone(), gated));
    const untied = loss(insertGates(model.graph.clone(), untiedLayers));
    const wrt = (ls: LinearLayer[]) => ls.flatMap((l) => [rowGateInput(l.node), colGateInput(l.node)]);
    const run = async (g: Graph, layers: LinearLayer[], feeds: Record<string, ort.Tensor>) => {
      const t = buildTrainingGraphWithInfo(g, { loss: "loss", wrt: wrt(layers) });
      const s = await ort.InferenceSession.create(encodeModel(t.graph));
      try {
        const out = await s.run(feedsFor(t.graph, batch, feeds));
        return new Map([...t.gradients].map(([input, output]) => [input, out[output].data as Float32Array]));
      } finally {
        await s.release();
      }
    };
    // Gates strictly inside (0, 1), the same values at every use of a weight.
    const values = new Map(
      gated.map((l, i) => [
        l.node,
        {
          row: Float32Array.from({ length: l.outFeatures }, (_, j) => 0.5 + 0.4 * Math.sin(i + j)),
          col: Float32Array.from({ length: l.inFeatures }, (_, j) => 0.5 + 0.4 * Math.cos(i + 2 * j)),
        },
      ]),
    );
    const feed = (layer: LinearLayer, v: { row: Float32Array; col: Float32Array }) => ({
      [rowGateInput(layer.node)]: new ort.Tensor("float32", v.row, [v.row.length]),
      [colGateInput(layer.node)]: new ort.Tensor("float32", v.col, [v.col.length]),
    });
    const tiedGrads = await run(
      tied,
      gated,
      Object.assign({}, ...gated.map((l) => feed(l, values.get(l.node)!))),
    );
    const primaryOf = new Map(gated.flatMap((l) => (l.uses ?? [l]).map((u) => [u.node, l.node])));
    const untiedGrads = await run(
      untied,
      untiedLayers,
      Object.assign({}, ...untiedLayers.map((u) => feed(u, values.get(primaryOf.get(u.node)!)!))),
    );
    let shared = 0;
    for (const l of gated)
      for (const input of [rowGateInput, colGateInput]) {
        const sum = new Float64Array(tiedGrads.get(input(l.node))!.length);
        for (const u of l.uses ?? [l])
          untiedGrads.get(input(u.node))!.forEach((v, j) => {
            sum[j] += v;
          });
        const scale = Math.max(1e-3, ...Array.from(sum, Math.abs));
        expect(maxDiff(tiedGrads.get(input(l.node))!, sum) / scale).toBeLessThan(1e-4);
        if (l.uses) shared++;
      }
    expect(shared).toBe(12);
  });

  it("closing a tied row removes it at every use: gated = hand-zeroed original = export, one copy kept", async () => {
    const q = gated.find((l) => l.node.endsWith("attention/query/MatMul"))!;
    const up = gated.find((l) => l.node.endsWith("ffn/MatMul"))!;
    const closedQ = [3, 17];
    const closedUp = [0, 5, 40];
    // The reference: the original graph with those output columns of the shared [in, out] weights and their
    // bias entries set to zero in the one initializer both layers read.
    const reference = model.graph.clone();
    for (const [l, cols] of [
      [q, closedQ],
      [up, closedUp],
    ] as const) {
      const w = Float32Array.from(reference.initializers.get(l.weight)!.data as Float32Array);
      const b = Float32Array.from(reference.initializers.get(l.bias!)!.data as Float32Array);
      for (const j of cols) {
        for (let i = 0; i < l.inFeatures; i++) w[i * l.outFeatures + j] = 0;
        b[j] = 0;
      }
      reference.initializers.set(l.weight, tensor("float32", [l.inFeatures, l.outFeatures], w));
      reference.initializers.set(l.bias!, tensor("float32", [l.outFeatures], b));
    }
    const expected = await logits(reference);
    const closed = new Map([
      [rowGateInput(q.node), closedQ],
      [rowGateInput(up.node), closedUp],
    ]);
    const gatedLogits = await logits(insertGates(model.graph.clone(), gated), gateFeeds(gated, closed));
    expect(maxDiff(gatedLogits, expected)).toBeLessThan(1e-5);
    // Closing it at one use only changes the output: the reference really depends on both uses.
    const once = await logits(insertGates(model.graph.clone(), model.recognition.encoderLinears), {
      ...gateFeeds(model.recognition.encoderLinears, new Map([[rowGateInput(q.node), closedQ]])),
    });
    expect(maxDiff(once, expected)).toBeGreaterThan(1e-4);

    const ckpt: GateCheckpoint = {
      format: CHECKPOINT_FORMAT,
      base: { name: "albert", sha256: "0".repeat(64) },
      task: { name: "t", labels: ["a", "b"] },
      head: { kind: "model" },
      method: "test",
      settings: {},
      seed: 0,
      step: 0,
      layers: gated.map((l) => ({
        node: l.node,
        rowGate: Array.from({ length: l.outFeatures }, (_, j) =>
          (l === q ? closedQ : l === up ? closedUp : []).includes(j) ? 0 : 1,
        ),
        colGate: new Array(l.inFeatures).fill(1),
        ...(l.uses ? { uses: l.uses.map((u) => u.node) } : {}),
      })),
      params: {},
    };
    const { graph: exported, report } = await exportPrunedModel(model.graph, ckpt, { residual: "gather" });
    expect(maxDiff(await logits(exported), expected)).toBeLessThan(1e-4);
    // Both layers kept the same heads: Q/K dims 3 and 17 (heads 0 and 2) gone from both attention blocks.
    expect(report.attention.map((a) => a.qkDims)).toEqual([
      [7, 8, 7, 8],
      [7, 8, 7, 8],
    ]);
    expect(report.ffn.map((f) => f.kept)).toEqual([61, 61]);

    // One initializer per shared weight, read by both layers' MatMuls.
    const readers = new Map<string, number>();
    for (const n of exported.nodes)
      if (n.op === "MatMul" && exported.initializers.get(n.inputs[1])?.dims.length === 2)
        readers.set(n.inputs[1], (readers.get(n.inputs[1]) ?? 0) + 1);
    expect([...readers.values()].sort()).toEqual([1, 2, 2, 2, 2, 2, 2]);
    const dims = (suffix: string) =>
      [...readers.keys()]
        .filter((k) => k.includes(suffix))
        .map((k) => exported.initializers.get(k)!.dims.join("x"));
    expect(dims("attention/query/")).toEqual(["32x30"]);
    expect(dims("attention/key/")).toEqual(["32x30"]);
    expect(dims("ffn/MatMul")).toEqual(["32x61"]);
    expect(dims("ffn_output/")).toEqual(["61x32"]);
    // Removal counts each shared weight once: (2·32·2 + 2·32·3 for the FFN neurons) of 8,704 gated weights.
    expect(report.gatedWeights).toEqual({ before: 8704, after: 8704 - 2 * 32 * 2 - 2 * 32 * 3 });
    // Parameters of the file: the originals less what export physically removed (biases included).
    expect(report.params.before - report.params.after).toBe(2 * 32 * 2 + 2 * 2 + 2 * 32 * 3 + 3);

    // int8 keeps the sharing too: one quantized matrix per weight.
    const int8 = quantizeGraph(exported).graph;
    const int8Reads = int8.nodes
      .filter((n) => n.op === "MatMulInteger" && int8.initializers.get(n.inputs[1])?.dtype === "int8")
      .map((n) => n.inputs[1]);
    // 13 encoder uses + the pooler (decomposed LayerNorms: only the classifier counts as the head there).
    expect(int8Reads).toHaveLength(14);
    expect(new Set(int8Reads).size).toBe(8);
  });
});
