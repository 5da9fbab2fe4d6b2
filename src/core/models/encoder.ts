/**
 * Builds transformer encoders as ONNX graphs laid out the way the PyTorch exporter writes Hugging Face models
 * (node names like `/bert/encoder/layer.0/attention/self/query/MatMul`, linear weights stored [in, out] for
 * MatMul and [out, in] for Gemm, reshape targets assembled from Shape/Gather/Concat, HF's additive or Where
 * attention masks). Trainer, export and tests all run against these layouts, so the code paths that handle
 * real exports are the ones exercised here.
 *
 * Layouts:
 * - `bert`: post-LN BERT, Erf-GELU, token-type embeddings, extended additive mask, pooler + classifier (Gemm).
 * - `distilbert`: q/k/v/out "lin" naming, query scaled before QK^T, Where-masked scores, pre_classifier + ReLU.
 * - `roberta`: BERT blocks, position ids from input_ids (CumSum over non-pad), dense + out_proj head.
 * - `bert-preln`: pre-LN blocks with a final LayerNorm (as in many modern encoders).
 */
import { float, type Graph as G, Graph } from "../onnx/graph";
import { type Tensor, tensor } from "../onnx/tensor";
import { Rng } from "../random";

export type EncoderLayout = "bert" | "distilbert" | "roberta" | "bert-preln";

export interface EncoderConfig {
  layout: EncoderLayout;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  ffn: number;
  maxPositions: number;
  /** Classification labels; the graph outputs `logits` [batch, numLabels]. */
  numLabels: number;
  /** `classifier` (logits), `mlm` (mlm_logits [batch, seq, vocab], tied to word embeddings), or `none`. */
  head: "classifier" | "mlm" | "none";
  /** `fused` = LayerNormalization (opset 17); `decomposed` = ReduceMean/Sub/Pow/Sqrt/Div chain (opset 14). */
  layerNorm: "fused" | "decomposed";
  padTokenId: number;
  seed: number;
  initStd: number;
  /**
   * BERT and RoBERTa layouts: take `token_type_ids` [batch, sequence] as a graph input, as HF exports do for
   * sentence pairs, instead of the all-zero buffer slice (the default, HF's behaviour when none is passed).
   */
  tokenTypeInput?: boolean;
}

export const DEFAULT_ENCODER: EncoderConfig = {
  layout: "bert",
  vocabSize: 4096,
  hidden: 256,
  layers: 4,
  heads: 4,
  ffn: 1024,
  maxPositions: 256,
  numLabels: 2,
  head: "classifier",
  layerNorm: "fused",
  padTokenId: 0,
  seed: 1,
  initStd: 0.02,
};

/** The reference encoder of the benchmarks: 4 layers, d=256, 4 heads, FFN 1024. */
export const REFERENCE_ENCODER: EncoderConfig = { ...DEFAULT_ENCODER };

const FLOAT_MIN = -3.4028234663852886e38;
const LN_EPS = 1e-12;

class EncoderBuilder {
  readonly g: G;
  private readonly rng: Rng;
  private weightCounter = 0;

  constructor(readonly cfg: EncoderConfig) {
    this.g = new Graph({ name: `${cfg.layout}-encoder`, opset: cfg.layerNorm === "fused" ? 17 : 14 });
    this.rng = new Rng(cfg.seed);
  }

  private init(dims: number[], kind: "normal" | "zeros" | "ones"): Tensor {
    const n = dims.reduce((a, b) => a * b, 1);
    if (kind === "normal") return tensor("float32", dims, this.rng.normalArray(n, this.cfg.initStd));
    return tensor("float32", dims, new Float32Array(n).fill(kind === "ones" ? 1 : 0));
  }

  param(name: string, dims: number[], kind: "normal" | "zeros" | "ones" = "normal"): string {
    return this.g.addInitializer(name, this.init(dims, kind));
  }

  /** torch Linear on a 3-D input exports as MatMul(x, W^T) + Add(bias), with W^T an anonymous initializer. */
  linear(x: string, scope: string, paramPrefix: string, inF: number, outF: number): string {
    const w = this.param(`onnx::MatMul_${1000 + this.weightCounter++}`, [inF, outF]);
    const b = this.param(`${paramPrefix}.bias`, [outF], "zeros");
    const y = this.g.op("MatMul", [x, w], {}, { name: `${scope}/MatMul` });
    return this.g.op("Add", [b, y], {}, { name: `${scope}/Add` });
  }

  /** torch Linear on a 2-D input exports as Gemm(x, W, b, transB=1) with W [out, in]. */
  gemm(x: string, scope: string, paramPrefix: string, inF: number, outF: number): string {
    const w = this.param(`${paramPrefix}.weight`, [outF, inF]);
    const b = this.param(`${paramPrefix}.bias`, [outF], "zeros");
    return this.g.op(
      "Gemm",
      [x, w, b],
      { alpha: float(1), beta: float(1), transB: 1 },
      { name: `${scope}/Gemm` },
    );
  }

  layerNorm(x: string, scope: string, paramPrefix: string): string {
    const h = this.cfg.hidden;
    const gamma = this.param(`${paramPrefix}.weight`, [h], "ones");
    const beta = this.param(`${paramPrefix}.bias`, [h], "zeros");
    if (this.cfg.layerNorm === "fused") {
      return this.g.op(
        "LayerNormalization",
        [x, gamma, beta],
        { axis: -1, epsilon: LN_EPS },
        { name: `${scope}/LayerNormalization` },
      );
    }
    const g = this.g;
    const mean = g.op("ReduceMean", [x], { axes: [-1], keepdims: 1 }, { name: `${scope}/ReduceMean` });
    const centered = g.op("Sub", [x, mean], {}, { name: `${scope}/Sub` });
    const sq = g.op("Pow", [centered, g.constFloat(2, `${scope}/Constant`)], {}, { name: `${scope}/Pow` });
    const variance = g.op("ReduceMean", [sq], { axes: [-1], keepdims: 1 }, { name: `${scope}/ReduceMean_1` });
    const std = g.op(
      "Sqrt",
      [g.op("Add", [variance, g.constFloat(LN_EPS, `${scope}/Constant_1`)], {}, { name: `${scope}/Add` })],
      {},
      { name: `${scope}/Sqrt` },
    );
    const normed = g.op("Div", [centered, std], {}, { name: `${scope}/Div` });
    return g.op(
      "Add",
      [g.op("Mul", [normed, gamma], {}, { name: `${scope}/Mul` }), beta],
      {},
      { name: `${scope}/Add_1` },
    );
  }

  /** HF's exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))). */
  gelu(x: string, scope: string): string {
    const g = this.g;
    const d = g.op("Div", [x, g.constFloat(Math.SQRT2, `${scope}/Constant`)], {}, { name: `${scope}/Div` });
    const e = g.op("Erf", [d], {}, { name: `${scope}/Erf` });
    const p = g.op("Add", [e, g.constFloat(1, `${scope}/Constant_1`)], {}, { name: `${scope}/Add` });
    const m = g.op("Mul", [x, p], {}, { name: `${scope}/Mul` });
    return g.op("Mul", [m, g.constFloat(0.5, `${scope}/Constant_2`)], {}, { name: `${scope}/Mul_1` });
  }

  /** Gathers dimension `axis` of `x`'s shape as a 1-element int64 tensor (TorchScript's size() pattern). */
  dim(x: string, axis: number, scope: string): string {
    const g = this.g;
    const shape = g.op("Shape", [x], {}, { name: `${scope}/Shape_${axis}` });
    const idx = g.constant(tensor("int64", [], [axis]), `${scope}/Constant_dim${axis}`);
    const s = g.op("Gather", [shape, idx], { axis: 0 }, { name: `${scope}/Gather_${axis}` });
    return g.op(
      "Unsqueeze",
      [s, g.constInts([0], `${scope}/axes_${axis}`)],
      {},
      { name: `${scope}/Unsqueeze_${axis}` },
    );
  }

  /** [B,S,H] -> [B,heads,S,dh] via a Concat-assembled Reshape target, then Transpose(perm). */
  splitHeads(x: string, scope: string, batch: string, seq: string, perm: number[]): string {
    const g = this.g;
    const { heads, hidden } = this.cfg;
    const target = g.op(
      "Concat",
      [
        batch,
        seq,
        g.constInts([heads], `${scope}/heads`),
        g.constInts([hidden / heads], `${scope}/head_dim`),
      ],
      { axis: 0 },
      { name: `${scope}/Concat` },
    );
    const r = g.op("Reshape", [x, target], {}, { name: `${scope}/Reshape` });
    return g.op("Transpose", [r], { perm }, { name: `${scope}/Transpose` });
  }

  attention(h: string, mask: string, i: number, batch: string, seq: string): string {
    const g = this.g;
    const { layout, hidden, heads } = this.cfg;
    const dh = hidden / heads;
    const distil = layout === "distilbert";
    const root = distil
      ? `/distilbert/transformer/layer.${i}/attention`
      : `/${layout === "roberta" ? "roberta" : "bert"}/encoder/layer.${i}/attention`;
    const pp = distil
      ? `distilbert.transformer.layer.${i}.attention`
      : `${layout === "roberta" ? "roberta" : "bert"}.encoder.layer.${i}.attention`;
    const names = distil
      ? { q: "q_lin", k: "k_lin", v: "v_lin", o: "out_lin", self: "" }
      : { q: "self/query", k: "self/key", v: "self/value", o: "output/dense", self: "self" };
    const pname = (s: string) => `${pp}.${s.replace("/", ".")}`;
    const q = this.linear(h, `${root}/${names.q}`, pname(names.q), hidden, hidden);
    const k = this.linear(h, `${root}/${names.k}`, pname(names.k), hidden, hidden);
    const v = this.linear(h, `${root}/${names.v}`, pname(names.v), hidden, hidden);
    const selfScope = distil ? root : `${root}/self`;
    const seqOrMinus1 = distil ? g.constInts([-1], `${selfScope}/minus_one`) : seq;
    let qh = this.splitHeads(q, `${selfScope}/q`, batch, seqOrMinus1, [0, 2, 1, 3]);
    const kt = this.splitHeads(k, `${selfScope}/k`, batch, seqOrMinus1, distil ? [0, 2, 1, 3] : [0, 2, 3, 1]);
    const vh = this.splitHeads(v, `${selfScope}/v`, batch, seqOrMinus1, [0, 2, 1, 3]);
    let scores: string;
    if (distil) {
      // DistilBERT scales q first, then multiplies by k transposed.
      qh = g.op(
        "Div",
        [qh, g.constFloat(Math.sqrt(dh), `${selfScope}/sqrt_dh`)],
        {},
        { name: `${selfScope}/Div` },
      );
      const kT = g.op("Transpose", [kt], { perm: [0, 1, 3, 2] }, { name: `${selfScope}/Transpose_k` });
      scores = g.op("MatMul", [qh, kT], {}, { name: `${selfScope}/MatMul` });
      scores = g.op(
        "Where",
        [mask, g.constFloat(FLOAT_MIN, `${selfScope}/min`), scores],
        {},
        { name: `${selfScope}/Where` },
      );
    } else {
      scores = g.op("MatMul", [qh, kt], {}, { name: `${selfScope}/MatMul` });
      scores = g.op(
        "Div",
        [scores, g.constFloat(Math.sqrt(dh), `${selfScope}/sqrt_dh`)],
        {},
        { name: `${selfScope}/Div` },
      );
      scores = g.op("Add", [scores, mask], {}, { name: `${selfScope}/Add` });
    }
    const probs = g.op("Softmax", [scores], { axis: -1 }, { name: `${selfScope}/Softmax` });
    const ctx = g.op("MatMul", [probs, vh], {}, { name: `${selfScope}/MatMul_1` });
    const ctxT = g.op("Transpose", [ctx], { perm: [0, 2, 1, 3] }, { name: `${selfScope}/Transpose_ctx` });
    const merged = g.op(
      "Concat",
      [batch, seqOrMinus1, g.constInts([hidden], `${selfScope}/all_head_size`)],
      { axis: 0 },
      { name: `${selfScope}/Concat_merge` },
    );
    const flat = g.op("Reshape", [ctxT, merged], {}, { name: `${selfScope}/Reshape_merge` });
    return this.linear(flat, `${root}/${names.o}`, pname(names.o), hidden, hidden);
  }

  ffn(h: string, i: number): string {
    const { layout, hidden, ffn } = this.cfg;
    if (layout === "distilbert") {
      const root = `/distilbert/transformer/layer.${i}/ffn`;
      const pp = `distilbert.transformer.layer.${i}.ffn`;
      const a = this.gelu(this.linear(h, `${root}/lin1`, `${pp}.lin1`, hidden, ffn), `${root}/activation`);
      return this.linear(a, `${root}/lin2`, `${pp}.lin2`, ffn, hidden);
    }
    const model = layout === "roberta" ? "roberta" : "bert";
    const root = `/${model}/encoder/layer.${i}`;
    const pp = `${model}.encoder.layer.${i}`;
    const a = this.gelu(
      this.linear(h, `${root}/intermediate/dense`, `${pp}.intermediate.dense`, hidden, ffn),
      `${root}/intermediate/intermediate_act_fn`,
    );
    return this.linear(a, `${root}/output/dense`, `${pp}.output.dense`, ffn, hidden);
  }

  block(h: string, mask: string, i: number, batch: string, seq: string): string {
    const g = this.g;
    const { layout } = this.cfg;
    if (layout === "distilbert") {
      const root = `/distilbert/transformer/layer.${i}`;
      const pp = `distilbert.transformer.layer.${i}`;
      const a = this.attention(h, mask, i, batch, seq);
      const h1 = this.layerNorm(
        g.op("Add", [a, h], {}, { name: `${root}/Add` }),
        `${root}/sa_layer_norm`,
        `${pp}.sa_layer_norm`,
      );
      const f = this.ffn(h1, i);
      return this.layerNorm(
        g.op("Add", [f, h1], {}, { name: `${root}/Add_1` }),
        `${root}/output_layer_norm`,
        `${pp}.output_layer_norm`,
      );
    }
    const model = layout === "roberta" ? "roberta" : "bert";
    const root = `/${model}/encoder/layer.${i}`;
    const pp = `${model}.encoder.layer.${i}`;
    if (layout === "bert-preln") {
      const n1 = this.layerNorm(h, `${root}/attention/LayerNorm`, `${pp}.attention.LayerNorm`);
      const h1 = g.op(
        "Add",
        [this.attention(n1, mask, i, batch, seq), h],
        {},
        { name: `${root}/attention/Add` },
      );
      const n2 = this.layerNorm(h1, `${root}/output/LayerNorm`, `${pp}.output.LayerNorm`);
      return g.op("Add", [this.ffn(n2, i), h1], {}, { name: `${root}/output/Add` });
    }
    const a = this.attention(h, mask, i, batch, seq);
    const h1 = this.layerNorm(
      g.op("Add", [a, h], {}, { name: `${root}/attention/output/Add` }),
      `${root}/attention/output/LayerNorm`,
      `${pp}.attention.output.LayerNorm`,
    );
    const f = this.ffn(h1, i);
    return this.layerNorm(
      g.op("Add", [f, h1], {}, { name: `${root}/output/Add` }),
      `${root}/output/LayerNorm`,
      `${pp}.output.LayerNorm`,
    );
  }

  /** Word + position (+ token type) embeddings. Returns [B,S,H]. */
  embeddings(ids: string, seq: string): string {
    const g = this.g;
    const { layout, vocabSize, hidden, maxPositions, padTokenId } = this.cfg;
    const model = layout === "distilbert" ? "distilbert" : layout === "roberta" ? "roberta" : "bert";
    const root = `/${model}/embeddings`;
    const wordEmb = this.param(`${model}.embeddings.word_embeddings.weight`, [vocabSize, hidden]);
    const words = g.op("Gather", [wordEmb, ids], { axis: 0 }, { name: `${root}/word_embeddings/Gather` });
    let positionIds: string;
    let posRows = maxPositions;
    if (layout === "roberta") {
      // create_position_ids_from_input_ids: cumsum over non-pad tokens, offset by padding_idx.
      posRows = maxPositions + padTokenId + 1;
      const pad = g.constant(tensor("int64", [], [padTokenId]), `${root}/pad`);
      const notPad = g.op(
        "Not",
        [g.op("Equal", [ids, pad], {}, { name: `${root}/Equal` })],
        {},
        { name: `${root}/Not` },
      );
      const m = g.op("Cast", [notPad], { to: 6 }, { name: `${root}/Cast` });
      const cs = g.op(
        "CumSum",
        [m, g.constant(tensor("int32", [], [1]), `${root}/axis1`)],
        {},
        { name: `${root}/CumSum` },
      );
      const inc = g.op("Mul", [cs, m], {}, { name: `${root}/Mul` });
      const inc64 = g.op("Cast", [inc], { to: 7 }, { name: `${root}/Cast_1` });
      positionIds = g.op("Add", [inc64, pad], {}, { name: `${root}/Add_pos` });
    } else {
      const buffer = g.addInitializer(
        `${model}.embeddings.position_ids`,
        tensor(
          "int64",
          [1, maxPositions],
          Array.from({ length: maxPositions }, (_, i) => i),
        ),
      );
      positionIds = g.op(
        "Slice",
        [buffer, g.constInts([0], `${root}/start`), seq, g.constInts([1], `${root}/axes`)],
        {},
        { name: `${root}/Slice` },
      );
    }
    const posEmb = this.param(`${model}.embeddings.position_embeddings.weight`, [posRows, hidden]);
    let sum = g.op(
      "Add",
      [
        words,
        g.op("Gather", [posEmb, positionIds], { axis: 0 }, { name: `${root}/position_embeddings/Gather` }),
      ],
      {},
      { name: `${root}/Add` },
    );
    if (layout !== "distilbert") {
      const ttEmb = this.param(`${model}.embeddings.token_type_embeddings.weight`, [
        layout === "roberta" ? 1 : 2,
        hidden,
      ]);
      let tt: string;
      if (this.cfg.tokenTypeInput) tt = g.addInput("token_type_ids", "int64", ["batch", "sequence"]);
      else {
        const ttIds = g.addInitializer(
          `${model}.embeddings.token_type_ids`,
          tensor("int64", [1, maxPositions]),
        );
        tt = g.op(
          "Slice",
          [ttIds, g.constInts([0], `${root}/tt_start`), seq, g.constInts([1], `${root}/tt_axes`)],
          {},
          { name: `${root}/Slice_1` },
        );
      }
      sum = g.op(
        "Add",
        [sum, g.op("Gather", [ttEmb, tt], { axis: 0 }, { name: `${root}/token_type_embeddings/Gather` })],
        {},
        { name: `${root}/Add_1` },
      );
    }
    if (layout === "bert-preln") return sum;
    return this.layerNorm(sum, `${root}/LayerNorm`, `${model}.embeddings.LayerNorm`);
  }

  /** HF masks: additive (1 - m) * min for BERT/RoBERTa, boolean "is pad" for DistilBERT's Where. */
  attentionMask(mask: string): string {
    const g = this.g;
    const u = g.op(
      "Unsqueeze",
      [
        g.op("Unsqueeze", [mask, g.constInts([1], "/mask_axes1")], {}, { name: "/Unsqueeze" }),
        g.constInts([2], "/mask_axes2"),
      ],
      {},
      { name: "/Unsqueeze_1" },
    );
    if (this.cfg.layout === "distilbert") {
      return g.op("Equal", [u, g.constant(tensor("int64", [], [0]), "/zero")], {}, { name: "/Equal" });
    }
    const f = g.op("Cast", [u], { to: 1 }, { name: "/Cast" });
    const inv = g.op("Sub", [g.constFloat(1, "/one"), f], {}, { name: "/Sub" });
    return g.op("Mul", [inv, g.constFloat(FLOAT_MIN, "/finfo_min")], {}, { name: "/Mul" });
  }

  head(h: string): void {
    const g = this.g;
    const { layout, hidden, numLabels, head, vocabSize } = this.cfg;
    if (head === "none") {
      g.op("Identity", [h], {}, { name: "/Identity_out", output: "last_hidden_state" });
      g.addOutput("last_hidden_state", "float32", ["batch", "sequence", hidden]);
      return;
    }
    if (head === "mlm") {
      const t = this.gelu(
        this.linear(h, "/cls/predictions/transform/dense", "cls.predictions.transform.dense", hidden, hidden),
        "/cls/predictions/transform/act",
      );
      const n = this.layerNorm(
        t,
        "/cls/predictions/transform/LayerNorm",
        "cls.predictions.transform.LayerNorm",
      );
      const model = layout === "distilbert" ? "distilbert" : layout === "roberta" ? "roberta" : "bert";
      const tiedT = g.op(
        "Transpose",
        [`${model}.embeddings.word_embeddings.weight`],
        { perm: [1, 0] },
        { name: "/cls/predictions/decoder/Transpose" },
      );
      const logits = g.op("MatMul", [n, tiedT], {}, { name: "/cls/predictions/decoder/MatMul" });
      const bias = this.param("cls.predictions.bias", [vocabSize], "zeros");
      g.op("Add", [logits, bias], {}, { name: "/cls/predictions/decoder/Add", output: "mlm_logits" });
      g.addOutput("mlm_logits", "float32", ["batch", "sequence", vocabSize]);
      return;
    }
    const first = g.op(
      "Gather",
      [h, g.constant(tensor("int64", [], [0]), "/cls_index")],
      { axis: 1 },
      { name: "/Gather_cls" },
    );
    let logits: string;
    if (layout === "distilbert") {
      const pre = g.op(
        "Relu",
        [this.gemm(first, "/pre_classifier", "pre_classifier", hidden, hidden)],
        {},
        { name: "/Relu" },
      );
      logits = this.gemm(pre, "/classifier", "classifier", hidden, numLabels);
    } else if (layout === "roberta") {
      const d = g.op(
        "Tanh",
        [this.gemm(first, "/classifier/dense", "classifier.dense", hidden, hidden)],
        {},
        { name: "/classifier/Tanh" },
      );
      logits = this.gemm(d, "/classifier/out_proj", "classifier.out_proj", hidden, numLabels);
    } else {
      const pooled = g.op(
        "Tanh",
        [this.gemm(first, "/bert/pooler/dense", "bert.pooler.dense", hidden, hidden)],
        {},
        { name: "/bert/pooler/activation/Tanh" },
      );
      logits = this.gemm(pooled, "/classifier", "classifier", hidden, numLabels);
    }
    g.op("Identity", [logits], {}, { name: "/Identity_logits", output: "logits" });
    g.addOutput("logits", "float32", ["batch", numLabels]);
  }

  build(): G {
    const g = this.g;
    const { layout, layers } = this.cfg;
    const ids = g.addInput("input_ids", "int64", ["batch", "sequence"]);
    const mask = g.addInput("attention_mask", "int64", ["batch", "sequence"]);
    const batch = this.dim(ids, 0, "/shape");
    const seq = this.dim(ids, 1, "/shape");
    let h = this.embeddings(ids, seq);
    const m = this.attentionMask(mask);
    for (let i = 0; i < layers; i++) h = this.block(h, m, i, batch, seq);
    if (layout === "bert-preln") h = this.layerNorm(h, "/bert/encoder/LayerNorm", "bert.encoder.LayerNorm");
    this.head(h);
    return g;
  }
}

/** A freshly initialised encoder (normal(0, initStd) weights, LayerNorm at identity) as an ONNX Graph. */
export function buildEncoder(config: Partial<EncoderConfig> = {}): G {
  const cfg = { ...DEFAULT_ENCODER, ...config };
  if (cfg.hidden % cfg.heads !== 0)
    throw new Error(`hidden ${cfg.hidden} is not divisible by heads ${cfg.heads}`);
  return new EncoderBuilder(cfg).build();
}
