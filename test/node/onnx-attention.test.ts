/**
 * The opset-23 `Attention` op decomposed into standard ops (src/core/onnx/canonical.ts `decomposeAttention`):
 * onnxruntime's own Attention kernel on the original graph is the reference for the decomposed one (4-D and 3-D
 * inputs, float and bool masks, default, explicit and run-time scales, unused optional outputs), and every form
 * it does not rewrite is refused naming the node.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph } from "../../src/core/onnx";
import { CanonicalError, decomposeAttention } from "../../src/core/onnx/canonical";
import type { AttrInput } from "../../src/core/onnx/graph";

const [B, N, S, H] = [2, 3, 5, 4];

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let x = seed;
  return Float32Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 1073741824 - 1;
  });
}

interface Case {
  rank: 3 | 4;
  mask?: "float" | "bool";
  attrs?: Record<string, AttrInput>;
  /** Extra declared outputs (present_key, present_value, qk_matmul_output), read by nothing. */
  unusedOutputs?: boolean;
  /** Declare Q's last dim as a symbol, so the default scale cannot be read from shapes. */
  dynamicHeadSize?: boolean;
}

function attentionGraph(c: Case): { g: Graph; feeds: Record<string, ort.Tensor> } {
  const g = new Graph({ opset: 23 });
  const shape = c.rank === 4 ? [B, N, S, H] : [B, S, N * H];
  const declared = c.dynamicHeadSize ? [...shape.slice(0, -1), "head"] : shape;
  const feeds: Record<string, ort.Tensor> = {};
  const names = ["q", "k", "v"].map((name, i) => {
    feeds[name] = new ort.Tensor("float32", values(B * N * S * H, 7 + i), shape);
    return g.addInput(name, "float32", declared);
  });
  const inputs = [...names];
  if (c.mask) {
    // [B, 1, S, S]: the second row's last two keys masked out, as a padding mask does.
    const keep = Array.from({ length: B * S * S }, (_, i) => !(i >= S * S && i % S >= S - 2));
    feeds.m =
      c.mask === "bool"
        ? new ort.Tensor("bool", Uint8Array.from(keep, Number), [B, 1, S, S])
        : new ort.Tensor(
            "float32",
            Float32Array.from(keep, (k) => (k ? 0 : -3.4e38)),
            [B, 1, S, S],
          );
    inputs.push(g.addInput("m", c.mask === "bool" ? "bool" : "float32", [B, 1, S, S]));
  }
  const heads = c.rank === 3 ? { q_num_heads: N, kv_num_heads: N } : {};
  const outputs = c.unusedOutputs ? ["y", "present_key", "present_value", "qk"] : ["y"];
  g.addNode("Attention", inputs, { ...heads, ...c.attrs }, { name: "/attn/Attention", outputs });
  g.addOutput("y");
  return { g, feeds };
}

async function run(g: Graph, feeds: Record<string, ort.Tensor>) {
  const s = await ort.InferenceSession.create(encodeModel(g), { graphOptimizationLevel: "disabled" });
  return (await s.run(feeds)).y;
}

const maxDiff = (a: ort.Tensor, b: ort.Tensor) =>
  Math.max(...Array.from(a.data as Float32Array, (x, i) => Math.abs(x - (b.data as Float32Array)[i])));

describe("decomposeAttention", () => {
  const cases: [string, Case][] = [
    ["4-D, float mask, default scale (what torch ≥ 2.8 writes)", { rank: 4, mask: "float" }],
    ["4-D, no mask, explicit scale", { rank: 4, attrs: { scale: 0.3 } }],
    ["3-D with q_num_heads/kv_num_heads, bool mask", { rank: 3, mask: "bool" }],
    ["4-D, unused present/qk outputs declared", { rank: 4, mask: "float", unusedOutputs: true }],
    ["4-D, head size only known at run time", { rank: 4, mask: "float", dynamicHeadSize: true }],
    [
      "is_causal=0 and softmax_precision=FLOAT written out",
      { rank: 4, attrs: { is_causal: 0, softmax_precision: 1 } },
    ],
  ];
  it.each(cases)("%s: the decomposed graph equals onnxruntime's Attention kernel", async (_, c) => {
    const { g, feeds } = attentionGraph(c);
    const ref = await run(g, feeds);
    expect(decomposeAttention(g)).toBe(1);
    expect(g.nodes.some((n) => n.op === "Attention")).toBe(false);
    const ops = g.nodes.map((n) => n.op);
    expect(ops).toContain("Softmax");
    expect(ops.filter((o) => o === "MatMul")).toHaveLength(2);
    if (c.dynamicHeadSize) expect(ops).toContain("Shape");
    const got = await run(g, feeds);
    expect(got.dims).toEqual(ref.dims);
    expect(maxDiff(got, ref)).toBeLessThan(1e-5);
  });

  it("rewrites a chain of Attention nodes, each from the shapes the previous rewrite gives", async () => {
    const { g, feeds } = attentionGraph({ rank: 4, mask: "float" });
    // A second layer reading the first's output as its query; `y` is the second's output now.
    g.nodes[0].outputs = ["y1"];
    g.addNode("Attention", ["y1", "k", "v", "m"], {}, { name: "/attn2/Attention", outputs: ["y"] });
    const ref = await run(g, feeds);
    expect(decomposeAttention(g)).toBe(2);
    expect(maxDiff(await run(g, feeds), ref)).toBeLessThan(1e-5);
  });

  const refusals: [string, (g: Graph) => void, RegExp][] = [
    ["is_causal=1", (g) => (g.nodes[0].attrs.is_causal = { type: "int", value: 1 }), /is_causal=1 .*decoder/],
    ["a KV cache", (g) => g.nodes[0].inputs.push("k", "v"), /past_key\/past_value/],
    ["softcap", (g) => (g.nodes[0].attrs.softcap = { type: "float", value: 30 }), /softcap=30/],
    [
      "a read qk output",
      (g) => {
        g.nodes[0].outputs.push("", "", "qk");
        g.nodes[0].attrs.qk_matmul_output_mode = { type: "int", value: 3 };
        g.addOutput("qk");
      },
      /qk_matmul_output \(qk_matmul_output_mode=3\) is read/,
    ],
    [
      "softmax in double",
      (g) => (g.nodes[0].attrs.softmax_precision = { type: "int", value: 11 }),
      /softmax_precision=11/,
    ],
    [
      "grouped-query heads (3-D)",
      (g) => {
        g.nodes[0].attrs.q_num_heads = { type: "int", value: 3 };
        g.nodes[0].attrs.kv_num_heads = { type: "int", value: 1 };
        g.inputs[0].shape = [B, S, N * H];
        g.inputs[1].shape = [B, S, H];
        g.inputs[2].shape = [B, S, H];
      },
      /grouped-query/,
    ],
    [
      "a mask shorter than the keys (padded by the op, broadcast by Add)",
      (g) => (g.inputs[3].shape = [B, 1, S, 1]),
      /attn_mask m: its last dim \(1\) is not proven to equal the key sequence length \(5\)/,
    ],
  ];
  it.each(refusals)("refuses %s, naming the node", (_, change, message) => {
    const { g } = attentionGraph({ rank: 3, mask: "float" });
    change(g);
    const nodes = JSON.stringify(g.nodes);
    expect(() => decomposeAttention(g)).toThrow(CanonicalError);
    expect(() => decomposeAttention(g)).toThrow(/^\/attn\/Attention: Attention /);
    expect(() => decomposeAttention(g)).toThrow(message);
    expect(JSON.stringify(g.nodes)).toBe(nodes); // nothing rewritten before the refusal
  });

  it("leaves a graph without Attention alone", () => {
    const g = new Graph({ opset: 23 });
    g.op("Relu", [g.addInput("x", "float32", [2])], {}, { output: "y" });
    g.addOutput("y");
    expect(decomposeAttention(g)).toBe(0);
    expect(g.nodes.map((n) => n.op)).toEqual(["Relu"]);
  });
});
