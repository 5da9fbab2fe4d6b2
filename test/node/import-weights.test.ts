/**
 * Weights reached through Transpose/Cast/Identity (folded into initializers before recognition) and fp16
 * files upcast to fp32 at import (import/fp16.ts). Expected values are hand-computed or numpy's
 * (`np.float16`), and graphs are run before and after in onnxruntime-node, never checked against the code
 * under test.
 */
import type { onnx } from "onnx-proto";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel, Graph, tensor } from "../../src/core/onnx";
import { decodeModelProto, encodeModelProto, graphFromModelProto } from "../../src/core/onnx/codec";
import { foldWeightTransforms } from "../../src/core/onnx/fold";
import { ImportError } from "../../src/trainer-node/import/errors";
import {
  dropFloatCasts,
  float16BitsToNumber,
  numberToFloat16Bits,
  roundToFloat16,
  upcastFloat16,
} from "../../src/trainer-node/import/fp16";

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>) {
  const s = await ort.InferenceSession.create(bytes);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}
const f32 = (data: number[], dims: number[]) => new ort.Tensor("float32", Float32Array.from(data), dims);

describe("weight Transpose/Cast/Identity folding", () => {
  it("folds a Transpose of a 2-D weight with the transposed values", () => {
    const g = new Graph();
    const x = g.addInput("x", "float32", ["b", 3]);
    g.initializers.set("W", tensor("float32", [2, 3], [1, 2, 3, 4, 5, 6]));
    const wt = g.op("Transpose", ["W"], { perm: [1, 0] });
    g.op("MatMul", [x, wt], {}, { output: "y" });
    g.addOutput("y");
    expect(foldWeightTransforms(g)).toBe(1);
    expect(g.nodes.map((n) => n.op)).toEqual(["MatMul"]);
    const t = g.initializers.get(g.nodes[0].inputs[1])!;
    expect(t.dims).toEqual([3, 2]);
    expect(Array.from(t.data as Float32Array)).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it("folds a 3-D perm and a default (reversing) perm", () => {
    const g = new Graph();
    // W[i][j][k] = 100i + 10j + k, dims [2, 3, 2]
    const w: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++) for (let k = 0; k < 2; k++) w.push(100 * i + 10 * j + k);
    g.initializers.set("W", tensor("float32", [2, 3, 2], w));
    g.op("Transpose", ["W"], { perm: [2, 0, 1] }, { output: "a" });
    g.op("Transpose", ["W"], {}, { output: "b" });
    g.addOutput("a");
    g.addOutput("b");
    expect(foldWeightTransforms(g)).toBe(2);
    const a = g.initializers.get("a")!;
    expect(a.dims).toEqual([2, 2, 3]);
    // a[k][i][j] = W[i][j][k]
    expect(Array.from(a.data as Float32Array)).toEqual([0, 10, 20, 100, 110, 120, 1, 11, 21, 101, 111, 121]);
    const b = g.initializers.get("b")!;
    expect(b.dims).toEqual([2, 3, 2]);
    // b[k][j][i] = W[i][j][k]
    expect(Array.from(b.data as Float32Array)).toEqual([0, 100, 10, 110, 20, 120, 1, 101, 11, 111, 21, 121]);
  });

  it("folds a chain Identity → Cast(to=FLOAT) → Transpose and computes what onnxruntime computes unfolded", async () => {
    const build = () => {
      const g = new Graph();
      const x = g.addInput("x", "float32", ["b", 2]);
      g.initializers.set("W", tensor("float32", [3, 2], [0.5, -1, 2, 0.25, -3, 1.5]));
      const id = g.op("Identity", ["W"]);
      const cast = g.op("Cast", [id], { to: 1 });
      g.op("MatMul", [x, g.op("Transpose", [cast])], {}, { output: "y" });
      g.addOutput("y");
      return g;
    };
    const g = build();
    expect(foldWeightTransforms(g)).toBe(3);
    expect(g.nodes.map((n) => n.op)).toEqual(["MatMul"]);
    const x = f32([1, 2, -1, 4], [2, 2]);
    const before = await run(encodeModel(build()), { x });
    const after = await run(encodeModel(g), { x });
    expect(Array.from(after.y.data as Float32Array)).toEqual(Array.from(before.y.data as Float32Array));
    // by hand: x · Wᵀ, rows [1, 2] and [-1, 4]
    expect(Array.from(after.y.data as Float32Array)).toEqual([-1.5, 2.5, 0, -4.5, -1, 9]);
  });

  it("leaves alone what is not a weight transform: a Transpose of an activation, a Cast to int64", () => {
    const g = new Graph();
    const x = g.addInput("x", "float32", [2, 3]);
    g.initializers.set("W", tensor("float32", [3], [1.5, 2, 3]));
    g.op("Transpose", [x], { perm: [1, 0] }, { output: "xt" });
    g.op("Cast", ["W"], { to: 7 }, { output: "wi" });
    g.addOutput("xt");
    g.addOutput("wi");
    expect(foldWeightTransforms(g)).toBe(0);
    expect(g.nodes.map((n) => n.op)).toEqual(["Transpose", "Cast"]);
  });
});

describe("fp16 conversions", () => {
  // numpy: np.array(v, np.float32).astype(np.float16).view(np.uint16)
  const cases: [number, number, number][] = [
    [0.10000000149011612, 11878, 0.0999755859375],
    [-0.10000000149011612, 44646, -0.0999755859375],
    [0.3333333432674408, 13653, 0.333251953125],
    [65504, 31743, 65504],
    [65520, 31744, Number.POSITIVE_INFINITY],
    [65519.98828125, 31743, 65504],
    [1e5, 31744, Number.POSITIVE_INFINITY],
    [5.99999978589949e-8, 1, 2 ** -24],
    [2.9800000689306216e-8, 0, 0],
    [2.9900000697580253e-8, 1, 2 ** -24],
    [9.999999747378752e-6, 168, 1.0013580322265625e-5],
    [-0, 32768, -0],
    [1.00146484375, 15362, 1.001953125], // tie: to even
    [3.0029296875, 16898, 3.00390625],
    [Number.NEGATIVE_INFINITY, 64512, Number.NEGATIVE_INFINITY],
    [3.1415927410125732, 16968, 3.140625],
    [-2.7182817459106445, 49520, -2.71875],
    [6.103515625e-5, 1024, 6.103515625e-5],
    [6.1005353927612305e-5, 1024, 6.103515625e-5], // subnormal side rounds up to the smallest normal
  ];
  it.each(cases)("%f → bits %i → %f (numpy)", (x, bits, back) => {
    expect(numberToFloat16Bits(x)).toBe(bits);
    expect(Object.is(float16BitsToNumber(bits), back)).toBe(true);
    expect(Object.is(roundToFloat16(x), back)).toBe(true);
  });
  it("NaN stays NaN", () => {
    expect(Number.isNaN(float16BitsToNumber(numberToFloat16Bits(Number.NaN)))).toBe(true);
  });
});

const FLOAT = 1;
const FLOAT16 = 10;
const half = (values: number[]) => new Uint8Array(Uint16Array.from(values, numberToFloat16Bits).buffer);
const vi = (name: string, elemType: number, dims: (number | string)[]): onnx.IValueInfoProto => ({
  name,
  type: {
    tensorType: {
      elemType,
      shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
    },
  },
});

/**
 * What onnxconverter-common writes for `y = x·W + b; z = y * Cast16(S)` with keep_io_types: fp32 x in, Cast to
 * fp16, fp16 W (raw_data) and b (a Constant, int32_data as onnx.helper stores halves), a fp32 S fed through
 * Cast(to=FLOAT16), fp16 `ConstantOfShape`, a Cast back to fp32 before the fp32 output. Every value, product
 * and sum is exactly representable in fp16, so the fp16 file and its fp32 upcast agree exactly.
 */
function fp16Model(): onnx.IModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "fp16",
      input: [vi("x", FLOAT, ["b", 2])],
      output: [vi("z", FLOAT, ["b", 3]), vi("ones", FLOAT16, [2])],
      initializer: [
        { name: "W", dataType: FLOAT16, dims: [2, 3], rawData: half([0.5, -1, 2, 0.25, -3, 1.5]) },
        { name: "S", dataType: FLOAT, dims: [3], floatData: [0.1, 2, -0.5] },
        { name: "shape", dataType: 7, dims: [1], int64Data: [2] },
      ],
      node: [
        {
          name: "in_cast",
          opType: "Cast",
          input: ["x"],
          output: ["x16"],
          attribute: [{ name: "to", type: 2, i: FLOAT16 }],
        },
        {
          name: "bias",
          opType: "Constant",
          output: ["b"],
          attribute: [
            {
              name: "value",
              type: 4,
              t: { dataType: FLOAT16, dims: [3], int32Data: [0, 0.25, -2].map(numberToFloat16Bits) },
            },
          ],
        },
        { name: "mm", opType: "MatMul", input: ["x16", "W"], output: ["xw"] },
        { name: "add", opType: "Add", input: ["xw", "b"], output: ["y"] },
        {
          name: "s_cast",
          opType: "Cast",
          input: ["S"],
          output: ["S16"],
          attribute: [{ name: "to", type: 2, i: FLOAT16 }],
        },
        { name: "mul", opType: "Mul", input: ["y", "S16"], output: ["z16"] },
        {
          name: "out_cast",
          opType: "Cast",
          input: ["z16"],
          output: ["z"],
          attribute: [{ name: "to", type: 2, i: FLOAT }],
        },
        {
          name: "cos",
          opType: "ConstantOfShape",
          input: ["shape"],
          output: ["ones"],
          attribute: [{ name: "value", type: 4, t: { dataType: FLOAT16, dims: [1], rawData: half([1.5]) } }],
        },
      ],
    },
  };
}

describe("fp16 upcast", () => {
  it("widens fp16 weights, Constants, ConstantOfShape, Casts and value types; outputs equal the fp16 file's", async () => {
    const bytes = encodeModelProto(fp16Model());
    const x = f32([1, 2, -1, 4], [2, 2]);
    const original = await run(bytes, { x });
    const proto = decodeModelProto(bytes);
    const report = upcastFloat16(proto)!;
    expect(report).toEqual({ source: "fp16", tensors: 3, roundedConstants: 1, casts: 1, fp16Io: ["ones"] });
    const g = graphFromModelProto(proto);
    // Cast(to=FLOAT16) of S folded into S's fp16-rounded values (numpy: np.float16(0.1) = 0.0999755859375).
    expect(Array.from(g.initializers.get("S16")!.data as Float32Array)).toEqual([0.0999755859375, 2, -0.5]);
    expect(g.initializers.get("W")!.dtype).toBe("float32");
    expect(Array.from(g.initializers.get("W")!.data as Float32Array)).toEqual([0.5, -1, 2, 0.25, -3, 1.5]);
    expect(g.outputs.map((o) => o.dtype)).toEqual(["float32", "float32"]);
    expect(g.nodes.find((n) => n.name === "in_cast")!.attrs.to.value).toBe(FLOAT);
    expect(dropFloatCasts(g)).toBe(2); // in_cast (x is fp32) removed; out_cast onto an output becomes Identity
    expect(g.nodes.map((n) => n.op)).toEqual([
      "Constant",
      "MatMul",
      "Add",
      "Mul",
      "Identity",
      "ConstantOfShape",
    ]);
    const upcast = await run(encodeModel(g), { x });
    expect(upcast.z.type).toBe("float32");
    expect(upcast.ones.type).toBe("float32");
    // by hand: y = x·W + b = [1, -6.75, 3; 0.5, -10.75, 2], z = y ⊙ [0.0999755859375, 2, -0.5], exact in fp16
    const z = [0.0999755859375, -13.5, -1.5, 0.04998779296875, -21.5, -1];
    expect(Array.from(upcast.z.data as Float32Array)).toEqual(z);
    expect(Array.from(original.z.data as Float32Array)).toEqual(z);
    expect(Array.from(upcast.ones.data as Float32Array)).toEqual([1.5, 1.5]);
    expect(Array.from(original.ones.data as Uint16Array, float16BitsToNumber)).toEqual([1.5, 1.5]);
  });

  it("leaves an fp32 model alone", () => {
    const g = new Graph();
    const x = g.addInput("x", "float32", [2]);
    g.op("Relu", [x], {}, { output: "y" });
    g.addOutput("y");
    const proto = decodeModelProto(encodeModel(g));
    expect(upcastFloat16(proto)).toBeUndefined();
  });

  it("refuses bfloat16 naming the initializer, and a Cast to bfloat16 naming the node", () => {
    const m = fp16Model();
    m.graph!.initializer!.push({ name: "Wbf", dataType: 16, dims: [1], rawData: new Uint8Array(2) });
    expect(() => upcastFloat16(m)).toThrow(ImportError);
    expect(() => upcastFloat16(m)).toThrow(/initializer Wbf is bfloat16/);
    const c = fp16Model();
    c.graph!.node!.push({
      name: "to_bf16",
      opType: "Cast",
      input: ["x"],
      output: ["xb"],
      attribute: [{ name: "to", type: 2, i: 16 }],
    });
    expect(() => upcastFloat16(c)).toThrow(/to_bf16: attribute to is bfloat16/);
  });
});
