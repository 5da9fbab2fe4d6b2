import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import { Rng } from "../../src/core/random";
import { buildTrainingGraph, gradName } from "../../src/trainer-node/autodiff/backward";
import { boolfeed, checkGradients, type Feed, f32feed, i64feed, randn } from "./autodiff-check";

const rng = new Rng(42);

/** A graph with float inputs of the given shapes, built by `body` which returns the output value. */
function graphOf(
  inputs: Record<string, { dims: (number | string)[]; dtype?: "float32" | "int64" | "bool" }>,
  body: (g: Graph, ...names: string[]) => string,
  opset = 17,
): Graph {
  const g = new Graph({ opset });
  const names = Object.entries(inputs).map(([n, v]) => g.addInput(n, v.dtype ?? "float32", v.dims));
  const y = body(g, ...names);
  g.addOutput(y);
  return g;
}

async function unary(op: string, feed: Feed, attrs: Record<string, number> = {}) {
  const g = graphOf({ x: { dims: feed.dims } }, (g, x) => g.op(op, [x], attrs));
  await checkGradients(g, { output: g.outputs[0].name, feeds: { x: feed }, wrt: ["x"] });
}

describe("autodiff: elementwise rules vs finite differences", () => {
  it.each([
    ["Neg", {}],
    ["Exp", {}],
    ["Erf", {}],
    ["Tanh", {}],
    ["Sigmoid", {}],
    ["Identity", {}],
  ])("%s", async (op) => unary(op, randn(rng, [2, 3, 4])));

  it.each(["Relu", "Abs"])("%s (away from the kink)", async (op) =>
    unary(op, randn(rng, [3, 5], { away: 0.1 })),
  );

  it.each(["Log", "Sqrt", "Reciprocal"])("%s (positive input)", async (op) =>
    unary(op, randn(rng, [3, 5], { positive: true })),
  );

  it("Cast float32 -> float64 -> float32 and Dropout in inference", async () => {
    const g = graphOf({ x: { dims: [3, 4] } }, (g, x) => {
      const d = g.op("Cast", [x], { to: 11 });
      const t = g.op("Tanh", [d]);
      const back = g.op("Cast", [t], { to: 1 });
      return g.op("Dropout", [back]);
    });
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [3, 4]) }, wrt: ["x"] });
  });

  it("Clip with min and max (gradient passes only inside)", async () => {
    const g = graphOf({ x: { dims: [4, 5] } }, (g, x) =>
      g.op("Clip", [x, g.constFloat(-0.7), g.constFloat(0.9)]),
    );
    const x = randn(rng, [4, 5]);
    for (let i = 0; i < x.data.length; i++) {
      const v = x.data[i] as number;
      if (Math.abs(v + 0.7) < 0.05 || Math.abs(v - 0.9) < 0.05) (x.data as Float32Array)[i] = v + 0.2;
    }
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x }, wrt: ["x"] });
  });
});

describe("autodiff: broadcasting binary rules", () => {
  const cases: [string, number[], number[], { positiveB?: boolean }][] = [
    ["Add", [2, 3, 4], [4], {}],
    ["Add", [4], [2, 3, 4], {}],
    ["Sub", [2, 1, 4], [2, 3, 4], {}],
    ["Sub", [2, 3, 4], [3, 1], {}],
    ["Mul", [2, 3, 4], [], {}],
    ["Mul", [2, 1, 4], [1, 3, 1], {}],
    ["Div", [2, 3, 4], [3, 1], { positiveB: true }],
    ["Div", [], [2, 3], { positiveB: true }],
  ];
  it.each(cases)("%s %j with %j", async (op, da, db, o) => {
    const g = graphOf({ a: { dims: da }, b: { dims: db } }, (g, a, b) => g.op(op, [a, b]));
    const feeds = { a: randn(rng, da), b: randn(rng, db, { positive: o.positiveB }) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["a", "b"] });
  });

  it("Add of a [B,1,S] mask to [B,H,S,S] scores with symbolic batch/seq dims", async () => {
    const g = graphOf(
      { scores: { dims: ["batch", 2, "seq", "seq"] }, mask: { dims: ["batch", 1, 1, "seq"] } },
      (g, s, m) => g.op("Softmax", [g.op("Add", [s, m])], { axis: -1 }),
    );
    const feeds = { scores: randn(rng, [2, 2, 3, 3]), mask: randn(rng, [2, 1, 1, 3]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["scores", "mask"] });
  });

  it("Add where a symbolic dim may or may not broadcast (run-time reduction axes)", async () => {
    const g = graphOf({ a: { dims: ["n", 3] }, b: { dims: ["m", 3] } }, (g, a, b) => g.op("Add", [a, b]));
    await checkGradients(g, {
      output: g.outputs[0].name,
      feeds: { a: randn(rng, [4, 3]), b: randn(rng, [1, 3]) },
      wrt: ["a", "b"],
    });
  });

  it.each([2, 0.5, 3, -1])("Pow with constant exponent %d", async (p) => {
    const g = graphOf({ x: { dims: [3, 4] } }, (g, x) => g.op("Pow", [x, g.constFloat(p)]));
    await checkGradients(g, {
      output: g.outputs[0].name,
      feeds: { x: randn(rng, [3, 4], { positive: true }) },
      wrt: ["x"],
    });
  });

  it("Pow with a tensor exponent (both operands differentiated)", async () => {
    const g = graphOf({ x: { dims: [3, 4] }, p: { dims: [4] } }, (g, x, p) => g.op("Pow", [x, p]));
    const feeds = { x: randn(rng, [3, 4], { positive: true }), p: randn(rng, [4], { scale: 0.5 }) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["x", "p"] });
  });

  it("Where with a broadcast condition and operands", async () => {
    const g = graphOf(
      { c: { dims: [2, 1, 4], dtype: "bool" }, a: { dims: [2, 3, 4] }, b: { dims: [4] } },
      (g, c, a, b) => g.op("Where", [c, a, b]),
    );
    const feeds = {
      c: boolfeed([2, 1, 4], [1, 0, 1, 1, 0, 0, 1, 0]),
      a: randn(rng, [2, 3, 4]),
      b: randn(rng, [4]),
    };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["a", "b"] });
  });

  it("Sum of three operands with one used twice", async () => {
    const g = graphOf({ a: { dims: [2, 3] }, b: { dims: [3] } }, (g, a, b) =>
      g.op("Sum", [a, b, g.op("Mul", [a, a])]),
    );
    await checkGradients(g, {
      output: g.outputs[0].name,
      feeds: { a: randn(rng, [2, 3]), b: randn(rng, [3]) },
      wrt: ["a", "b"],
    });
  });
});

describe("autodiff: normalisation and reductions", () => {
  it.each([-1, 1, 0])("Softmax axis %d", async (axis) => unary("Softmax", randn(rng, [2, 3, 4]), { axis }));
  it.each([-1, 0])("LogSoftmax axis %d", async (axis) => unary("LogSoftmax", randn(rng, [3, 5]), { axis }));

  it("Softmax at opset 11 (2-D coercion semantics, axis 1 of a 3-D tensor)", async () => {
    const g = graphOf({ x: { dims: [2, 3, 4] } }, (g, x) => g.op("Softmax", [x], { axis: 1 }), 11);
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 3, 4]) }, wrt: ["x"] });
  });

  it.each([-1, 1])("LayerNormalization axis %d wrt X, Scale and B", async (axis) => {
    const normDims = axis === -1 ? [5] : [3, 5];
    const g = graphOf(
      { x: { dims: [2, 3, 5] }, s: { dims: normDims }, b: { dims: normDims } },
      (g, x, s, b) =>
        g.op("LayerNormalization", [x, s, b], { axis, epsilon: { type: "float", value: 1e-5 } }),
    );
    const feeds = { x: randn(rng, [2, 3, 5]), s: randn(rng, normDims), b: randn(rng, normDims) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["x", "s", "b"] });
  });

  it("decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div) as opset-14 exports write it", async () => {
    const g = graphOf(
      { x: { dims: ["batch", 3, 6] } },
      (g, x) => {
        const mean = g.op("ReduceMean", [x], { axes: [-1] });
        const d = g.op("Sub", [x, mean]);
        const v = g.op("ReduceMean", [g.op("Pow", [d, g.constFloat(2)])], { axes: [-1] });
        const std = g.op("Sqrt", [g.op("Add", [v, g.constFloat(1e-5)])]);
        return g.op("Div", [d, std]);
      },
      14,
    );
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 3, 6]) }, wrt: ["x"] });
  });

  it.each([
    ["ReduceSum", [1], 1],
    ["ReduceSum", [0, 2], 0],
    ["ReduceMean", [-1], 0],
    ["ReduceMean", [1, 2], 1],
  ] as [string, number[], number][])("%s axes %j keepdims %d (axes as input)", async (op, axes, keepdims) => {
    const g = graphOf({ x: { dims: [2, 3, 4] } }, (g, x) => {
      if (op === "ReduceMean") return g.op(op, [x], { axes, keepdims }); // attribute form below opset 18
      return g.op(op, [x, g.constInts(axes)], { keepdims });
    });
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 3, 4]) }, wrt: ["x"] });
  });

  it("opset 18: ReduceMean with axes as input, and LayerNormalization (its backward emits ReduceMean)", async () => {
    const g = graphOf(
      { x: { dims: ["b", 3, 4] }, s: { dims: [4] } },
      (g, x, s) => {
        const ln = g.op("LayerNormalization", [x, s], { axis: -1 });
        return g.op("ReduceMean", [ln, g.constInts([1])], { keepdims: 0 });
      },
      18,
    );
    const feeds = { x: randn(rng, [2, 3, 4]), s: randn(rng, [4]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["x", "s"] });
  });

  // The rule's slopes against finite differences of onnxruntime's own Gelu kernel (opset 20), tight enough to
  // tell the two forms apart: their slopes differ by up to 9e-4 (at |x| = 2).
  it.each(["none", "tanh"])("opset 20: Gelu approximate=%s", async (approximate) => {
    const g = graphOf({ x: { dims: [2, 6] } }, (g, x) => g.op("Gelu", [x], { approximate }), 20);
    const x = f32feed([2, 6], [-3, -2, -2, -1.5, -1, -0.3, 0.2, 1, 1.5, 2, 2, 3]);
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x }, wrt: ["x"], atol: 5e-5, rtol: 5e-5 });
  });

  it("opset 18: Split with num_outputs (no split input) and the Squeeze of a QA head", async () => {
    const g = graphOf(
      { x: { dims: ["b", 5, 2] } },
      (g, x) => {
        const [start, end] = g.addNode("Split", [x], { axis: -1, num_outputs: 2 }, { outputs: 2 });
        const s = g.op("Squeeze", [start, g.constInts([-1])]);
        return g.op("Mul", [s, g.op("Squeeze", [end, g.constInts([-1])])]);
      },
      18,
    );
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 5, 2]) }, wrt: ["x"] });
  });

  it("ReduceMean over symbolic dims and ReduceSum with axes attribute at opset 11", async () => {
    const g = graphOf(
      { x: { dims: ["b", "s", 4] } },
      (g, x) => g.op("ReduceSum", [g.op("ReduceMean", [x], { axes: [1], keepdims: 0 })], { axes: [0] }),
      11,
    );
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 3, 4]) }, wrt: ["x"] });
  });

  it("cross-entropy as LogSoftmax + one-hot Mul + ReduceSum + Neg + ReduceMean", async () => {
    const g = graphOf({ logits: { dims: ["b", 3] }, onehot: { dims: ["b", 3] } }, (g, l, oh) => {
      const lsm = g.op("LogSoftmax", [l], { axis: -1 });
      const picked = g.op("ReduceSum", [g.op("Mul", [lsm, oh]), g.constInts([1])], { keepdims: 0 });
      return g.op("ReduceMean", [g.op("Neg", [picked])], { keepdims: 0 });
    });
    const feeds = {
      logits: randn(rng, [4, 3]),
      onehot: f32feed([4, 3], [1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0]),
    };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["logits"] });
  });
});

describe("autodiff: matrix products", () => {
  it("MatMul 3-D activation x 2-D weight (bias too) wrt both", async () => {
    const g = graphOf(
      { x: { dims: ["b", "s", 4] }, w: { dims: [4, 3] }, bias: { dims: [3] } },
      (g, x, w, b) => g.op("Add", [g.op("MatMul", [x, w]), b]),
    );
    const feeds = { x: randn(rng, [2, 3, 4]), w: randn(rng, [4, 3]), bias: randn(rng, [3]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["x", "w", "bias"] });
  });

  it("MatMul 4-D x 4-D (attention QK^T through Transpose) and 2-D x 2-D", async () => {
    const g = graphOf({ q: { dims: [2, 2, 3, 4] }, k: { dims: [2, 2, 3, 4] } }, (g, q, k) =>
      g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 1, 3, 2] })]),
    );
    await checkGradients(g, {
      output: g.outputs[0].name,
      feeds: { q: randn(rng, [2, 2, 3, 4]), k: randn(rng, [2, 2, 3, 4]) },
      wrt: ["q", "k"],
    });
    const g2 = graphOf({ a: { dims: [3, 4] }, b: { dims: [4, 2] } }, (g, a, b) => g.op("MatMul", [a, b]));
    await checkGradients(g2, {
      output: g2.outputs[0].name,
      feeds: { a: randn(rng, [3, 4]), b: randn(rng, [4, 2]) },
      wrt: ["a", "b"],
    });
  });

  it("MatMul with broadcast batch dims [2,1,3,4] x [1,2,4,5]", async () => {
    const g = graphOf({ a: { dims: [2, 1, 3, 4] }, b: { dims: [1, 2, 4, 5] } }, (g, a, b) =>
      g.op("MatMul", [a, b]),
    );
    const feeds = { a: randn(rng, [2, 1, 3, 4]), b: randn(rng, [1, 2, 4, 5]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["a", "b"] });
  });

  it.each([
    [0, 0, 1, 1],
    [1, 0, 0.5, 2],
    [0, 1, 1.5, 1],
    [1, 1, 1, 0.5],
  ])("Gemm transA=%d transB=%d alpha=%d beta=%d with C [N]", async (tA, tB, alpha, beta) => {
    const [m, k, n] = [3, 4, 2];
    const da = tA ? [k, m] : [m, k];
    const db = tB ? [n, k] : [k, n];
    const g = graphOf({ a: { dims: da }, b: { dims: db }, c: { dims: [n] } }, (g, a, b, c) =>
      g.op("Gemm", [a, b, c], {
        transA: tA,
        transB: tB,
        alpha: { type: "float", value: alpha },
        beta: { type: "float", value: beta },
      }),
    );
    const feeds = { a: randn(rng, da), b: randn(rng, db), c: randn(rng, [n]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["a", "b", "c"] });
  });
});

describe("autodiff: shape and indexing ops", () => {
  it("Transpose/Reshape/Unsqueeze/Squeeze/Flatten round trip (heads split and merged)", async () => {
    const g = graphOf({ x: { dims: ["b", 3, 4] } }, (g, x) => {
      const heads = g.op("Reshape", [x, g.constInts([0, 0, 2, 2])]);
      const t = g.op("Transpose", [heads], { perm: [0, 2, 1, 3] });
      const u = g.op("Unsqueeze", [g.op("Tanh", [t]), g.constInts([0])]);
      const s = g.op("Squeeze", [u, g.constInts([0])]);
      const back = g.op("Transpose", [s], { perm: [0, 2, 1, 3] });
      return g.op("Flatten", [g.op("Mul", [back, back])], { axis: 2 });
    });
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 3, 4]) }, wrt: ["x"] });
  });

  it("Concat of three inputs along axis 1 (one symbolic) and Split with an unused output", async () => {
    const g = graphOf(
      { a: { dims: [2, 1, 3] }, b: { dims: [2, "n", 3] }, c: { dims: [2, 2, 3] } },
      (g, a, b, c) => g.op("Concat", [a, b, c], { axis: 1 }),
    );
    const feeds = { a: randn(rng, [2, 1, 3]), b: randn(rng, [2, 2, 3]), c: randn(rng, [2, 2, 3]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["a", "b", "c"] });

    const s = graphOf({ x: { dims: [2, 6] } }, (g, x) => {
      const [p, , r] = g.addNode("Split", [x, g.constInts([1, 2, 3])], { axis: 1 }, { outputs: 3 });
      return g.op("Mul", [g.op("ReduceSum", [p, g.constInts([1])]), r]);
    });
    await checkGradients(s, { output: s.outputs[0].name, feeds: { x: randn(rng, [2, 6]) }, wrt: ["x"] });
  });

  it.each([
    ["static unit steps", [0, 1], [2, 3], [0, 2], [1, 1], [3, 4, 5]],
    ["negative starts", [-2], [2 ** 31 - 1], [1], [1], [3, 4, 5]],
    ["strided", [0, 4], [3, 0], [0, 2], [2, -1], [3, 4, 5]],
  ] as [string, number[], number[], number[], number[], number[]][])(
    "Slice (%s)",
    async (_name, starts, ends, axes, steps, dims) => {
      const g = graphOf({ x: { dims } }, (g, x) =>
        g.op("Slice", [x, g.constInts(starts), g.constInts(ends), g.constInts(axes), g.constInts(steps)]),
      );
      await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, dims) }, wrt: ["x"] });
    },
  );

  it("Slice over symbolic dims (run-time scatter path) and Expand", async () => {
    const g = graphOf({ x: { dims: ["b", "s", 4] } }, (g, x) => {
      const sl = g.op("Slice", [x, g.constInts([-2, 1]), g.constInts([2 ** 31 - 1, 3]), g.constInts([1, 2])]);
      return g.op("Expand", [sl, g.constInts([3, 1, 1, 1])]);
    });
    await checkGradients(g, { output: g.outputs[0].name, feeds: { x: randn(rng, [2, 3, 4]) }, wrt: ["x"] });
  });

  it("Gather on an embedding table with repeated and negative ids (axis 0, indices [B,S])", async () => {
    const g = graphOf({ table: { dims: [5, 3] }, ids: { dims: ["b", "s"], dtype: "int64" } }, (g, t, ids) =>
      g.op("Gather", [t, ids], { axis: 0 }),
    );
    const feeds = { table: randn(rng, [5, 3]), ids: i64feed([2, 3], [1, 4, 1, 0, -1, 4]) };
    await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["table"] });
  });

  it("Gather of the first token (axis 1, scalar index) and of two positions (1-D indices)", async () => {
    const g = graphOf({ h: { dims: ["b", "s", 3] } }, (g, h) => {
      const cls = g.op("Gather", [h, g.constant(tensor("int64", [], [0]))], { axis: 1 });
      const two = g.op("Gather", [h, g.constInts([2, 2])], { axis: 1 });
      return g.op("Add", [g.op("Unsqueeze", [cls, g.constInts([1])]), two]);
    });
    await checkGradients(g, { output: g.outputs[0].name, feeds: { h: randn(rng, [2, 4, 3]) }, wrt: ["h"] });
  });
});

describe("autodiff: graph-level behaviour", () => {
  it("a value used by several consumers sums its gradients; unrelated wrt values get zeros", async () => {
    const g = graphOf({ x: { dims: [2, 3] }, unused: { dims: [4] } }, (g, x) =>
      g.op("Add", [g.op("Mul", [x, g.op("Tanh", [x])]), g.op("Sigmoid", [x])]),
    );
    const w = g.addInitializer("w_unused", tensor("float32", [2], [1, 2]));
    g.op("Relu", [w]); // dead branch: reaches no output
    const grads = await checkGradients(g, {
      output: g.outputs[0].name,
      feeds: { x: randn(rng, [2, 3]), unused: randn(rng, [4]) },
      wrt: ["x", "unused"],
    });
    expect(Array.from(grads.unused)).toEqual([0, 0, 0, 0]);
    const t = buildTrainingGraph(g, { loss: g.outputs[0].name, wrt: ["w_unused"] });
    const out = await (await ort.InferenceSession.create(encodeModel(t))).run({
      x: new ort.Tensor("float32", new Float32Array(6), [2, 3]),
      unused: new ort.Tensor("float32", new Float32Array(4), [4]),
    });
    expect(Array.from(out[gradName("w_unused")].data as Float32Array)).toEqual([0, 0]);
  });

  it("says which op has no rule, and rejects unknown wrt and loss names", () => {
    const g = graphOf({ x: { dims: [2, 3] } }, (g, x) =>
      g.op("CumSum", [x, g.constant(tensor("int64", [], [1]))]),
    );
    expect(() => buildTrainingGraph(g, { loss: g.outputs[0].name, wrt: ["x"] })).toThrow(
      /no gradient rule for op 'CumSum'/,
    );
    expect(() => buildTrainingGraph(g, { loss: g.outputs[0].name, wrt: ["nope"] })).toThrow(
      /'nope' is not a graph input/,
    );
    expect(() => buildTrainingGraph(g, { loss: "nope", wrt: ["x"] })).toThrow(/loss 'nope'/);
  });

  it("keeps requested forward outputs beside the loss and the gradients", async () => {
    const g = graphOf({ x: { dims: [2, 3] } }, (g, x) => {
      g.op("Tanh", [x], {}, { output: "logits" });
      return g.op("ReduceSum", ["logits", g.constInts([0, 1])], { keepdims: 0 });
    });
    const t = buildTrainingGraph(g, { loss: g.outputs[0].name, wrt: ["x"], keepOutputs: ["logits"] });
    expect(t.outputs.map((o) => o.name)).toEqual([g.outputs[0].name, "logits", gradName("x")]);
    const x = Float32Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]);
    const out = await (await ort.InferenceSession.create(encodeModel(t))).run({
      x: new ort.Tensor("float32", x, [2, 3]),
    });
    (out[gradName("x")].data as Float32Array).forEach((v, i) => {
      expect(v).toBeCloseTo(1 - Math.tanh(x[i]) ** 2, 6);
    });
  });
});

describe("autodiff: SoftmaxCrossEntropyLoss", () => {
  it.each([
    ["mean", undefined, false],
    ["sum", undefined, true],
    ["mean", 1, true],
    ["none", -100, false],
  ] as [string, number | undefined, boolean][])(
    "reduction %s, ignore_index %s, class weights %s",
    async (reduction, ignore, weighted) => {
      const g = graphOf(
        { scores: { dims: ["n", 3] }, labels: { dims: ["n"], dtype: "int64" } },
        (g, s, l) => {
          const inputs = [s, l];
          if (weighted) inputs.push(g.constant(tensor("float32", [3], [0.5, 2, 1])));
          return g.op("SoftmaxCrossEntropyLoss", inputs, { reduction, ignore_index: ignore });
        },
      );
      const labels = ignore === -100 ? [0, 2, -100, 1, 2] : [0, 2, 1, 1, 2];
      const feeds = { scores: randn(rng, [5, 3]), labels: i64feed([5], labels) };
      await checkGradients(g, { output: g.outputs[0].name, feeds, wrt: ["scores"] });
    },
  );
});

describe("autodiff: Dropout in training mode", () => {
  it("reuses the forward mask: grad = mask * R / (1 - ratio), and loss = sum(x * grad) in the same run", async () => {
    const g = new Graph();
    g.addInput("x", "float32", [64]);
    const ratio = 0.25;
    const on = g.constant(tensor("bool", [], [1]));
    const y = g.op("Dropout", ["x", g.constFloat(ratio), on], { seed: 3 });
    const r = g.addInitializer(
      "R",
      tensor(
        "float32",
        [64],
        Array.from({ length: 64 }, (_, i) => 1 + (i % 5)),
      ),
    );
    g.op("ReduceSum", [g.op("Mul", [y, r])], { keepdims: 0 }, { output: "loss" });
    g.addOutput("loss");
    const t = buildTrainingGraph(g, { loss: "loss", wrt: ["x"] });
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) + 2);
    const out = await (await ort.InferenceSession.create(encodeModel(t))).run({
      x: new ort.Tensor("float32", x, [64]),
    });
    const grad = out[gradName("x")].data as Float32Array;
    const rv = g.initializers.get("R")!.data as Float32Array;
    let dropped = 0;
    grad.forEach((v, i) => {
      if (v === 0) dropped++;
      else expect(v).toBeCloseTo(rv[i] / (1 - ratio), 5);
    });
    expect(dropped).toBeGreaterThan(0);
    expect(dropped).toBeLessThan(64);
    const loss = (out.loss.data as Float32Array)[0];
    expect(loss).toBeCloseTo(
      x.reduce((s, v, i) => s + v * grad[i], 0),
      3,
    );
  });
});
