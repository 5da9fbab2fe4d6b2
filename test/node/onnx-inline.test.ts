/**
 * Local-function inlining (src/core/onnx/inline.ts) against onnxruntime, which runs the functions itself: a
 * model written the way the torch dynamo exporter writes one (module functions in `pkg.transformers` calling
 * torch_lib functions in `pkg.onnxscript.torch_lib`, attribute references, a default declared in
 * `attribute_proto`, CastLike, Dropout, the same internal value names in every call) gives the same outputs
 * after inlining, and is then plain nodes.
 */
import type { onnx } from "onnx-proto";
import * as onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import protobuf from "protobufjs/minimal";
import { describe, expect, it } from "vitest";
import {
  decodeModel,
  decodeModelProto,
  encodeModel,
  encodeModelProto,
  OnnxFormatError,
} from "../../src/core/onnx";
import { inlineLocalFunctions, readFunctionExtras } from "../../src/core/onnx/inline";

const P: typeof onnx =
  (onnxProto as unknown as { default?: { onnx: typeof onnx } }).default?.onnx ??
  (onnxProto as unknown as { onnx: typeof onnx }).onnx;
const A = P.AttributeProto.AttributeType;
const FLOAT = 1;
const TORCHLIB = "pkg.onnxscript.torch_lib";
const MODULES = "pkg.transformers";

const node = (
  opType: string,
  input: string[],
  output: string[],
  attribute: onnx.IAttributeProto[] = [],
  domain = "",
): onnx.INodeProto => ({ opType, input, output, attribute, domain, name: `${opType}_${output[0]}` });
const ref = (name: string, refAttrName: string, type: number): onnx.IAttributeProto => ({
  name,
  refAttrName,
  type,
});
const fAttr = (name: string, f: number): onnx.IAttributeProto => ({ name, type: A.FLOAT, f });
const iAttr = (name: string, i: number): onnx.IAttributeProto => ({ name, type: A.INT, i });
const opsets = [
  { domain: "", version: 18 },
  { domain: TORCHLIB, version: 1 },
];

/** torch_lib-style: y = x · CastLike(alpha, x), alpha defaulting to 2 (declared in attribute_proto). */
const scale: onnx.IFunctionProto = {
  name: "aten_mul_scalar",
  domain: TORCHLIB,
  input: ["self"],
  output: ["result"],
  attribute: [],
  opsetImport: opsets,
  node: [
    node("Constant", [], ["alpha"], [ref("value_float", "alpha", A.FLOAT)]),
    node("CastLike", ["alpha", "self"], ["alpha_cast"]),
    node("Mul", ["self", "alpha_cast"], ["result"]),
  ],
};
const scaleDefault: onnx.IAttributeProto = fAttr("alpha", 2);

/** torch_lib's _aten_native_layer_norm_onnx shape: attributes passed through by reference. */
const layerNorm: onnx.IFunctionProto = {
  name: "aten_layer_norm",
  domain: TORCHLIB,
  input: ["input", "weight", "bias"],
  output: ["result"],
  attribute: ["eps"],
  opsetImport: opsets,
  node: [
    node(
      "LayerNormalization",
      ["input", "weight", "bias"],
      ["result"],
      [iAttr("axis", -1), ref("epsilon", "eps", A.FLOAT)],
    ),
  ],
};

/** A module function (one per call site in dynamo exports) calling torch_lib functions. */
const block: onnx.IFunctionProto = {
  name: "transformers_Block",
  domain: MODULES,
  input: ["x", "w", "b", "ln_w", "ln_b"],
  output: ["y"],
  attribute: [],
  opsetImport: [...opsets, { domain: MODULES, version: 1 }],
  node: [
    node("Transpose", ["w"], ["t"], [{ name: "perm", type: A.INTS, ints: [1, 0] }]),
    node("MatMul", ["x", "t"], ["h"]),
    node("Add", ["h", "b"], ["h2"]),
    node("aten_mul_scalar", ["h2"], ["s"], [], TORCHLIB),
    node("aten_mul_scalar", ["h2"], ["s2"], [fAttr("alpha", 0.5)], TORCHLIB),
    node("Dropout", ["s2", "ratio"], ["d", "mask"]),
    node(
      "Constant",
      [],
      ["ratio"],
      [{ name: "value", type: A.TENSOR, t: { dataType: FLOAT, dims: [], floatData: [0.1] } }],
    ),
    node("Add", ["s", "d"], ["s3"]),
    node("Add", ["s3", "x"], ["r"]),
    node("aten_layer_norm", ["r", "ln_w", "ln_b"], ["y"], [fAttr("eps", 1e-5)], TORCHLIB),
  ],
};
// Constant "ratio" after its use: function bodies are topologically sorted in ONNX; keep the test valid.
block.node = [block.node![6], ...block.node!.slice(0, 6), ...block.node!.slice(7)];

const H = 4;
const weights = (seed: number, n: number) =>
  Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 1.3));
const init = (name: string, dims: number[], seed: number): onnx.ITensorProto => ({
  name,
  dataType: FLOAT,
  dims,
  floatData: weights(
    seed,
    dims.reduce((a, b) => a * b, 1),
  ),
});

function modelProto(functions: onnx.IFunctionProto[]): onnx.IModelProto {
  return {
    irVersion: 9,
    opsetImport: [...opsets, { domain: MODULES, version: 1 }],
    graph: {
      name: "dynamo_like",
      input: [
        {
          name: "x",
          type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: "b" }, { dimValue: H }] } } },
        },
      ],
      output: [{ name: "out", type: { tensorType: { elemType: FLOAT } } }],
      initializer: [
        init("layer.0.w", [H, H], 1),
        init("layer.0.b", [H], 2),
        init("layer.1.w", [H, H], 3),
        init("layer.1.b", [H], 4),
        init("ln.w", [H], 5),
        init("ln.b", [H], 6),
      ],
      node: [
        // a top-level value with a name the body also uses
        node("Identity", ["x"], ["h"]),
        node("transformers_Block", ["h", "layer.0.w", "layer.0.b", "ln.w", "ln.b"], ["y0"], [], MODULES),
        node("transformers_Block", ["y0", "layer.1.w", "layer.1.b", "ln.w", "ln.b"], ["out"], [], MODULES),
      ],
    },
    functions,
  };
}

/** The model's bytes with `attribute_proto` defaults (IR 9, which onnx-proto cannot encode) appended by hand. */
function withDefaults(model: onnx.IModelProto, defaults: Map<string, onnx.IAttributeProto[]>): Uint8Array {
  const { functions, ...rest } = model;
  const w = protobuf.Writer.create();
  for (const fn of functions ?? []) {
    const extra = protobuf.Writer.create();
    for (const a of defaults.get(fn.name ?? "") ?? [])
      extra.uint32((11 << 3) | 2).bytes(P.AttributeProto.encode(a).finish());
    // ModelProto.functions is field 25; protobuf fields may come in any order.
    w.uint32((25 << 3) | 2).bytes(concat(P.FunctionProto.encode(fn).finish(), extra.finish()));
  }
  return concat(P.ModelProto.encode(rest).finish(), w.finish());
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

async function run(bytes: Uint8Array, x: Float32Array) {
  const s = await ort.InferenceSession.create(bytes);
  try {
    return (await s.run({ x: new ort.Tensor("float32", x, [x.length / H, H]) })).out.data as Float32Array;
  } finally {
    await s.release();
  }
}

const X = Float32Array.from(weights(9, 3 * H));

describe("inlining local functions", () => {
  const bytes = withDefaults(modelProto([block, scale, layerNorm]), new Map([[scale.name!, [scaleDefault]]]));

  it("reads attribute_proto defaults that onnx-proto does not decode", () => {
    const extras = readFunctionExtras(bytes);
    expect(extras.map((e) => e.defaults.map((a) => [a.name, a.f]))).toEqual([[], [["alpha", 2]], []]);
  });

  it("gives onnxruntime's outputs of the model with functions, as plain nodes", async () => {
    const reference = await run(bytes, X);
    const proto = decodeModelProto(bytes);
    const report = inlineLocalFunctions(proto, bytes);
    expect(report).toEqual({ functions: 3, calls: 2 + 2 * 3 });
    expect(proto.functions).toEqual([]);
    expect(proto.graph!.node!.every((n) => !n.domain)).toBe(true);
    expect(proto.opsetImport!.map((o) => o.domain)).toEqual([""]);
    const names = proto.graph!.node!.flatMap((n) => n.output ?? []);
    expect(new Set(names).size).toBe(names.length); // each call's h, t, s... got their own names
    expect(proto.graph!.node!.some((n) => n.name?.startsWith("transformers_Block_y0/"))).toBe(true);
    expect(await run(encodeModelProto(proto), X)).toEqual(reference);
    // The Graph path (decodeModel inlines too) runs the same computation.
    const viaGraph = await run(encodeModel(decodeModel(bytes)), X);
    expect(viaGraph).toEqual(reference);
    // The default mattered: alpha = 2 where the call gives none.
    const noDefault = decodeModelProto(bytes);
    inlineLocalFunctions(noDefault); // no bytes: the default is unknown and the attribute left unset
    const constant = noDefault.graph!.node!.find(
      (n) => n.opType === "Constant" && n.name?.includes("aten_mul_scalar_s/"),
    );
    expect(constant?.attribute ?? []).toEqual([]);
  });

  it("inlines a function at an older opset whose ops kept their meaning, and refuses one whose ops did not", async () => {
    // torch_lib functions import opset 18 in models exported at 20: LayerNormalization, Mul, CastLike and
    // Constant mean the same at both, so the inlined model computes what the all-18 one does.
    const at = (fn: onnx.IFunctionProto, version: number) => ({
      ...fn,
      opsetImport: [{ domain: "", version }, ...opsets.slice(1)],
    });
    const reference = await run(bytes, X);
    const mixed = modelProto([at(block, 18), at(scale, 18), at(layerNorm, 17)]);
    mixed.opsetImport = [{ domain: "", version: 20 }, ...mixed.opsetImport!.slice(1)];
    const proto = decodeModelProto(withDefaults(mixed, new Map([[scale.name!, [scaleDefault]]])));
    inlineLocalFunctions(proto, withDefaults(mixed, new Map([[scale.name!, [scaleDefault]]])));
    expect(await run(encodeModelProto(proto), X)).toEqual(reference);
    // ReduceMean's axes became an input at 18: an opset-17 body with the attribute means something else there.
    const reduce: onnx.IFunctionProto = {
      ...at(layerNorm, 17),
      node: [
        node("ReduceMean", ["input"], ["m"], [{ name: "axes", type: A.INTS, ints: [-1] }]),
        node("Sub", ["input", "m"], ["result"]),
      ],
    };
    expect(() => inlineLocalFunctions(modelProto([block, scale, reduce]))).toThrow(
      /aten_layer_norm: it uses opset 17 .* ReduceMean changed meaning at opset 18/,
    );
    expect(() => inlineLocalFunctions(modelProto([block, scale, at(layerNorm, 19)]))).toThrow(
      /aten_layer_norm: it uses opset 19 of the default domain, newer than the model's 18/,
    );
  });

  it("refuses recursion and a function whose opset changes its ops, naming them", () => {
    const loop: onnx.IFunctionProto = {
      ...scale,
      node: [node("aten_mul_scalar", ["self"], ["result"], [], TORCHLIB)],
    };
    expect(() => inlineLocalFunctions(modelProto([block, loop, layerNorm]))).toThrow(
      /aten_mul_scalar calls itself/,
    );
    const old: onnx.IFunctionProto = {
      ...layerNorm,
      opsetImport: [{ domain: "", version: 12 }],
      node: [node("Softmax", ["input"], ["result"], [iAttr("axis", 1)])],
    };
    expect(() => decodeModel(encodeModelProto(modelProto([block, scale, old])))).toThrow(OnnxFormatError);
    expect(() => inlineLocalFunctions(modelProto([block, scale, old]))).toThrow(
      /aten_layer_norm: it uses opset 12 .* Softmax changed meaning at opset 13/,
    );
  });
});
