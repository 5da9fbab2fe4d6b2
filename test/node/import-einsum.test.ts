/**
 * import/einsum.ts: every equation Keras' EinsumDense and MultiHeadAttention write (as tf2onnx exports them)
 * is rewritten into MatMul/Reshape/Transpose and computes what onnxruntime's own Einsum kernel computes on
 * the original node (the independent reference), on random tensors; equations it does not handle stay Einsum.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { decodeModel, encodeModel, Graph, tensor } from "../../src/core/onnx";
import { Rng } from "../../src/core/random";
import { analyzeEncoder } from "../../src/trainer-node/import/blocks";
import { parseEquation, rewriteEinsums } from "../../src/trainer-node/import/einsum";
import { ImportError } from "../../src/trainer-node/import/errors";
import { importEncoderBytes } from "../../src/trainer-node/import/import";

const rng = new Rng(11);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.normal());

interface Case {
  equation: string;
  /** Shape of each input; a `weight` input is an initializer. */
  shapes: number[][];
  weight?: boolean;
  /** Bias initializer added after the Einsum (EinsumDense's bias_axes). */
  bias?: number[];
}

function build(c: Case): { g: Graph; feeds: Record<string, ort.Tensor> } {
  const g = new Graph({ opset: 13 });
  const feeds: Record<string, ort.Tensor> = {};
  const inputs = c.shapes.map((dims, i) => {
    const n = dims.reduce((p, q) => p * q, 1);
    if (c.weight && i === 1) return g.constant(tensor("float32", dims, randn(n)), "kernel");
    const name = g.addInput(`in${i}`, "float32", dims);
    feeds[name] = new ort.Tensor("float32", randn(n), dims);
    return name;
  });
  let y = g.op("Einsum", inputs, { equation: c.equation }, { name: "/layer/einsum/Einsum" });
  if (c.bias) {
    const n = c.bias.reduce((p, q) => p * q, 1);
    y = g.op("Add", [y, g.constant(tensor("float32", c.bias, randn(n)), "bias")], {}, { name: "/layer/add" });
  }
  g.addOutput(y);
  return { g, feeds };
}

async function run(g: Graph, feeds: Record<string, ort.Tensor>): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(encodeModel(g));
  const out = await session.run(feeds);
  return out[g.outputs[0].name];
}

const CASES: [string, Case][] = [
  [
    "FFN dense abc,cd->abd + bias [D]",
    {
      equation: "abc,cd->abd",
      shapes: [
        [2, 5, 8],
        [8, 6],
      ],
      weight: true,
      bias: [6],
    },
  ],
  [
    "Q/K/V into heads abc,cde->abde + bias [N, H]",
    {
      equation: "abc,cde->abde",
      shapes: [
        [2, 5, 8],
        [8, 4, 3],
      ],
      weight: true,
      bias: [4, 3],
    },
  ],
  [
    "output from heads abcd,cde->abe + bias [E]",
    {
      equation: "abcd,cde->abe",
      shapes: [
        [2, 5, 4, 3],
        [4, 3, 8],
      ],
      weight: true,
      bias: [8],
    },
  ],
  [
    "dense without bias, other letters bij,jk->bik",
    {
      equation: "bij,jk->bik",
      shapes: [
        [3, 4, 6],
        [6, 2],
      ],
      weight: true,
    },
  ],
  [
    "dense with a transposed kernel abc,dc->abd",
    {
      equation: "abc,dc->abd",
      shapes: [
        [2, 5, 8],
        [6, 8],
      ],
      weight: true,
    },
  ],
  [
    "scores aecd,abcd->acbe (key, query)",
    {
      equation: "aecd,abcd->acbe",
      shapes: [
        [2, 7, 4, 3],
        [2, 5, 4, 3],
      ],
    },
  ],
  [
    "context acbe,aecd->abcd (probs, value)",
    {
      equation: "acbe,aecd->abcd",
      shapes: [
        [2, 4, 5, 7],
        [2, 7, 4, 3],
      ],
    },
  ],
  [
    "plain batched matmul bij,bjk->bik",
    {
      equation: "bij,bjk->bik",
      shapes: [
        [3, 4, 5],
        [3, 5, 2],
      ],
    },
  ],
];

describe("import: Einsum rewritten into MatMul form", () => {
  it.each(CASES)("%s equals onnxruntime's Einsum", async (_, c) => {
    const { g, feeds } = build(c);
    const reference = await run(g, feeds);
    const rewritten = g.clone();
    const r = rewriteEinsums(rewritten);
    expect(r).toEqual({ rewritten: 1, left: [] });
    expect(rewritten.nodes.some((n) => n.op === "Einsum")).toBe(false);
    // The linear keeps the Einsum's name, as a checkpoint would refer to it.
    expect(rewritten.nodes.find((n) => n.name === "/layer/einsum/Einsum")?.op).toBe("MatMul");
    const got = await run(rewritten, feeds);
    expect(got.dims).toEqual(reference.dims);
    const a = reference.data as Float32Array;
    const b = got.data as Float32Array;
    let max = 0;
    for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
    expect(max).toBeLessThanOrEqual(1e-5);
  });

  it("the EinsumDense bias becomes the linear's bias (a linear the finders see, [C, N·H] weight)", () => {
    const { g } = build(CASES[1][1]);
    rewriteEinsums(g);
    const [linear] = analyzeEncoder(g).linears;
    expect(linear).toMatchObject({ node: "/layer/einsum/Einsum", inFeatures: 8, outFeatures: 12 });
    expect(linear.bias).toBeDefined();
  });

  it.each([
    ["ellipsis", "...c,cd->...d"],
    ["implicit output", "abc,cd"],
    ["a summed-out letter", "abc,cd->ad"],
    ["a diagonal", "aac,cd->ad"],
  ])("leaves %s alone", (_, equation) => {
    expect(parseEquation(equation)).toBeUndefined();
  });

  it("an equation it does not rewrite stays an Einsum and is returned by name", () => {
    // An outer product (no contracted letter): not a MatMul.
    const { g } = build({
      equation: "abc,abd->abcd",
      shapes: [
        [2, 3, 4],
        [2, 3, 5],
      ],
    });
    const r = rewriteEinsums(g);
    expect(r.rewritten).toBe(0);
    expect(r.left).toEqual([{ node: "/layer/einsum/Einsum", equation: "abc,abd->abcd" }]);
    expect(g.nodes.map((n) => n.op)).toEqual(["Einsum"]);
  });
});

describe("import: the tf2onnx Einsum encoder", () => {
  const file = path.resolve(import.meta.dirname, "../fixtures/hf/tf2onnx-einsum-bert-seqcls-o13/model.onnx");

  it("reads all 16 Einsums as MatMuls: 2 attention blocks and 2 FFNs", () => {
    const { report } = importEncoderBytes(readFileSync(file));
    expect(report.layers).toBe(2);
    expect(report.attention.map((a) => [a.heads, a.headDim])).toEqual([
      [4, 8],
      [4, 8],
    ]);
    expect(report.ffn).toHaveLength(2);
    expect(report.notes.join("\n")).toMatch(/16 Einsum nodes/);
  });

  it("an attention Einsum it cannot rewrite is named in the refusal", () => {
    const g = decodeModel(readFileSync(file));
    for (const n of g.nodes)
      if (n.op === "Einsum" && n.attrs.equation.value === "aecd,abcd->acbe")
        n.attrs.equation = { type: "string", value: "...ecd,...bcd->...cbe" };
    let error: unknown;
    try {
      importEncoderBytes(encodeModel(g));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ImportError);
    expect(String(error)).toMatch(/no transformer encoder block recognised/);
    expect(String(error)).toMatch(
      /layer_0\/self_attention\/einsum\/Einsum \("\.\.\.ecd,\.\.\.bcd->\.\.\.cbe"\)/,
    );
  });
});
