import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildEncoder, type EncoderConfig } from "../../src/core/models/encoder";
import { encodeModel, type Graph } from "../../src/core/onnx";
import { Rng } from "../../src/core/random";
import { buildTrainingGraph, gradName, promoteInitializers } from "../../src/trainer-node/autodiff/backward";
import { checkGradients, type Feed, i64feed, randn } from "./autodiff-check";

const TINY: Partial<EncoderConfig> = {
  layers: 2,
  hidden: 8,
  heads: 2,
  ffn: 16,
  vocabSize: 30,
  maxPositions: 16,
  numLabels: 3,
  initStd: 0.3,
};

function tokens(rng: Rng): Record<string, Feed> {
  const ids = Array.from({ length: 10 }, () => 1 + rng.int(29));
  return {
    input_ids: i64feed([2, 5], ids),
    attention_mask: i64feed([2, 5], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
  };
}

/** A few weights of different kinds: embeddings, the first linear weight, an FFN bias, a LayerNorm gain, the head. */
function pickWeights(g: Graph): string[] {
  const names = [...g.initializers.keys()];
  const find = (re: RegExp) => names.find((n) => re.test(n));
  return [
    find(/word_embeddings\.weight$/),
    find(/^onnx::MatMul_/),
    [...names].reverse().find((n) => /(intermediate\.dense|ffn\.lin1)\.bias$/.test(n)),
    [...names].reverse().find((n) => /(LayerNorm|layer_norm)\.weight$/.test(n)),
    find(/classifier\.weight$/),
  ].filter((n): n is string => !!n);
}

describe("autodiff: whole encoder vs finite differences", () => {
  it.each([
    ["bert", "fused"],
    ["bert", "decomposed"],
    ["distilbert", "fused"],
    ["roberta", "fused"],
    ["bert-preln", "fused"],
  ] as const)(
    "%s (%s LayerNorm), 2 layers: gradients of weights on random coordinates",
    async (layout, ln) => {
      const rng = new Rng(3);
      const g = buildEncoder({ ...TINY, layout, layerNorm: ln });
      const wrt = pickWeights(g);
      expect(wrt.length).toBeGreaterThanOrEqual(4);
      const values = promoteInitializers(g, wrt);
      const feeds: Record<string, Feed> = tokens(rng);
      for (const [name, t] of values)
        feeds[name] = { dtype: "float32", dims: t.dims, data: t.data as Float32Array };
      // h = 1e-3 (not the default 1e-2): a ReLU in DistilBERT's head puts kinks within 1e-2 of some points.
      await checkGradients(g, { output: "logits", feeds, wrt, coords: 5, atol: 5e-4, h: 1e-3 });
    },
  );

  it("gradients wrt initializers equal those wrt the same values fed as inputs", async () => {
    const rng = new Rng(5);
    const feeds = tokens(rng);
    const ort_ = (f: Feed) => new ort.Tensor(f.dtype, f.data, f.dims);
    const g = buildEncoder({ ...TINY, layout: "bert" });
    const wrt = pickWeights(g);
    const asInits = buildTrainingGraph(g, { loss: "logits", wrt });
    const promoted = g.clone();
    const values = promoteInitializers(promoted, wrt);
    const asInputs = buildTrainingGraph(promoted, { loss: "logits", wrt });
    const run = async (m: Graph, extra: Record<string, ort.Tensor>) =>
      (await ort.InferenceSession.create(encodeModel(m))).run({
        input_ids: ort_(feeds.input_ids),
        attention_mask: ort_(feeds.attention_mask),
        ...extra,
      });
    const a = await run(asInits, {});
    const b = await run(
      asInputs,
      Object.fromEntries(
        [...values].map(([k, t]) => [k, new ort.Tensor("float32", t.data as Float32Array, t.dims)]),
      ),
    );
    for (const w of wrt) {
      const [x, y] = [a[gradName(w)].data as Float32Array, b[gradName(w)].data as Float32Array];
      expect(x.length).toBe(values.get(w)!.data.length);
      expect(Math.max(...x.map((v) => Math.abs(v)))).toBeGreaterThan(0);
      x.forEach((v, i) => {
        expect(v).toBeCloseTo(y[i], 6);
      });
    }
  });

  it("frozen weights get no weight-gradient computation", async () => {
    const g = buildEncoder({ ...TINY, layout: "bert" });
    const forwardMatmuls = g.nodes.filter((n) => n.op === "MatMul" || n.op === "Gemm").length;
    // Only the embedding LayerNorm gain is trainable: activation gradients flow through every layer, but no
    // product computes a gradient for a frozen weight (that would be an extra Gemm/MatMul per weight).
    const lnGain = [...g.initializers.keys()].find((n) => /embeddings\.LayerNorm\.weight$/.test(n))!;
    const t = buildTrainingGraph(g, { loss: "logits", wrt: [lnGain] });
    const matmuls = t.nodes.filter((n) => n.op === "MatMul" || n.op === "Gemm").length;
    // forward products + one activation-gradient product each, except the first layer's Q/K/V inputs and
    // nothing for weights: 2 attention products per layer have two activation inputs each.
    const weightGrads = t.nodes.filter((n) => n.op === "Gemm" && n.attrs.transA?.value === 1).length;
    expect(weightGrads).toBe(0);
    expect(matmuls).toBeLessThanOrEqual(2 * forwardMatmuls + 2 * TINY.layers!);
    // Only the head is trainable: no gradient node reaches into the encoder.
    const head = [...g.initializers.keys()].find((n) => /classifier\.weight$/.test(n))!;
    const h = buildTrainingGraph(g, { loss: "logits", wrt: [head] });
    expect(h.nodes.filter((n) => n.op === "MatMul" || n.op === "Gemm").length).toBe(forwardMatmuls + 1);
  });

  it("FineGates-style row and column gates fed as inputs: gate gradients match finite differences", async () => {
    const rng = new Rng(9);
    const g = buildEncoder({ ...TINY, layout: "bert" });
    const feeds: Record<string, Feed> = tokens(rng);
    const wrt: string[] = [];
    // y = (x ⊙ c) W ⊙ r on every linear layer with a 2-D weight of the encoder (MatMul form).
    for (const n of [...g.nodes]) {
      const w = g.initializers.get(n.inputs[1]);
      if (n.op !== "MatMul" || !w || w.dims.length !== 2) continue;
      const [din, dout] = w.dims;
      const c = g.addInput(`gate_col:${n.name}`, "float32", [din]);
      const r = g.addInput(`gate_row:${n.name}`, "float32", [dout]);
      const xin = g.op("Mul", [n.inputs[0], c]);
      n.inputs[0] = xin;
      const raw = `${n.outputs[0]}/ungated`;
      g.addNode("Mul", [raw, r], {}, { outputs: [n.outputs[0]] });
      n.outputs[0] = raw;
      feeds[c] = randn(rng, [din], { positive: true, scale: 0.3 });
      feeds[r] = randn(rng, [dout], { positive: true, scale: 0.3 });
      wrt.push(c, r);
    }
    g.toposort();
    expect(wrt.length).toBe(2 * 6 * TINY.layers!);
    const picked = rng.shuffle([...wrt]).slice(0, 8);
    await checkGradients(g, { output: "logits", feeds, wrt: picked, coords: 3, atol: 5e-4, h: 1e-3 });
  });

  it("one training graph serves different batch and sequence sizes", async () => {
    const g = buildEncoder({ ...TINY, layout: "distilbert" });
    const wrt = pickWeights(g);
    const t = buildTrainingGraph(g, { loss: "logits", wrt });
    const session = await ort.InferenceSession.create(encodeModel(t));
    for (const [b, s] of [
      [1, 4],
      [3, 7],
    ]) {
      const ids = new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: b * s }, (_, i) => BigInt(1 + (i % 20))),
        [b, s],
      );
      const mask = new ort.Tensor("int64", new BigInt64Array(b * s).fill(1n), [b, s]);
      const out = await session.run({ input_ids: ids, attention_mask: mask });
      for (const w of wrt) {
        const grad = out[gradName(w)].data as Float32Array;
        expect(grad.length).toBe(g.initializers.get(w)!.data.length);
        expect(grad.every(Number.isFinite)).toBe(true);
      }
    }
  });

  it("an opset-12 export (axes as attributes) is upgraded and gives the same gradients", async () => {
    const g14 = buildEncoder({ ...TINY, layout: "bert", layerNorm: "decomposed" });
    expect(g14.opset).toBe(14);
    // Write it the way opset-12 exporters do: Unsqueeze/Squeeze/ReduceSum/Split axes as attributes.
    const g12 = g14.clone();
    g12.opset = 12;
    let rewritten = 0;
    for (const n of g12.nodes)
      if (["Unsqueeze", "Squeeze", "ReduceSum", "Split"].includes(n.op) && n.inputs[1]) {
        const v = g12.initializers.get(n.inputs[1]);
        if (!v) continue;
        n.attrs[n.op === "Split" ? "split" : "axes"] = { type: "ints", value: Array.from(v.data, Number) };
        n.inputs = [n.inputs[0]];
        rewritten++;
      }
    expect(rewritten).toBeGreaterThan(0);
    const wrt = pickWeights(g14);
    const feeds = tokens(new Rng(11));
    const run = async (g: Graph) => {
      const t = buildTrainingGraph(g, { loss: "logits", wrt });
      const s = await ort.InferenceSession.create(encodeModel(t));
      return s.run(
        Object.fromEntries(
          Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor(f.dtype, f.data, f.dims)]),
        ),
      );
    };
    // The opset-12 graph itself must be valid for onnxruntime before the upgrade.
    await ort.InferenceSession.create(encodeModel(g12));
    const [a, b] = [await run(g14), await run(g12)];
    for (const w of wrt) {
      const [x, y] = [a[gradName(w)].data as Float32Array, b[gradName(w)].data as Float32Array];
      x.forEach((v, i) => {
        expect(y[i]).toBeCloseTo(v, 6);
      });
    }
  });

  it("MLM head tied to the word embeddings: both uses of the table add up (pretraining case)", async () => {
    const rng = new Rng(13);
    const g = buildEncoder({ ...TINY, layout: "bert", head: "mlm" });
    const names = [...g.initializers.keys()];
    const wrt = [
      names.find((n) => /word_embeddings\.weight$/.test(n))!,
      names.find((n) => /^cls\./.test(n))!,
    ];
    expect(wrt.every(Boolean)).toBe(true);
    const values = promoteInitializers(g, wrt);
    const feeds: Record<string, Feed> = tokens(rng);
    for (const [name, t] of values)
      feeds[name] = { dtype: "float32", dims: t.dims, data: t.data as Float32Array };
    await checkGradients(g, { output: "mlm_logits", feeds, wrt, coords: 8, atol: 5e-4, h: 1e-3 });
  });
});
