/**
 * ONNX protobuf <-> Graph. Decoding and encoding are done by `onnx-proto` (protobufjs static code);
 * this module only maps between its message objects and the small Graph API.
 */

import type { onnx } from "onnx-proto";
import * as onnxProto from "onnx-proto";
import protobuf from "protobufjs/minimal";

// onnx-proto is CommonJS: Node's ESM loader exposes it only as `default` (a named import fails at link time),
// bundlers (vite, wrangler) also give the named export. Types come from the type-only import above.
const onnxValues: typeof onnx =
  (onnxProto as unknown as { default?: { onnx: typeof onnx } }).default?.onnx ??
  (onnxProto as unknown as { onnx: typeof onnx }).onnx;

import { type Attr, Graph, type Node, type ValueInfo } from "./graph";
import { InlineError, type InlineReport, inlineLocalFunctions } from "./inline";
import { allocate, DTYPE_OF_ONNX, type DType, ONNX_DTYPE, sizeOf, type Tensor } from "./tensor";

type Long = { low: number; high: number; toNumber?: () => number };

/** protobufjs yields int64 as number or Long depending on whether `long` resolves at run time (it does in
 * Node, not in workerd): accept both. */
export function int64ToNumber(v: number | Long | null | undefined): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return v;
  if (typeof v.toNumber === "function") return v.toNumber();
  return v.high * 4294967296 + (v.low >>> 0);
}

export class OnnxFormatError extends Error {
  override name = "OnnxFormatError";
}

function copyBytes(src: Uint8Array, bytesPerElement: number): ArrayBuffer {
  // raw_data may be unaligned inside the protobuf buffer; copy to an aligned buffer.
  const buf = new ArrayBuffer(src.byteLength);
  new Uint8Array(buf).set(src);
  if (src.byteLength % bytesPerElement !== 0)
    throw new OnnxFormatError("raw_data length is not a multiple of its element size");
  return buf;
}

export function tensorFromProto(p: onnx.ITensorProto): Tensor {
  const dtype = DTYPE_OF_ONNX[p.dataType ?? 0];
  if (!dtype) throw new OnnxFormatError(`tensor '${p.name}': unsupported data type ${p.dataType}`);
  if (p.dataLocation === onnxValues.TensorProto.DataLocation.EXTERNAL) {
    throw new OnnxFormatError(
      `tensor '${p.name}': external data is not supported; save the model as one file`,
    );
  }
  const dims = (p.dims ?? []).map(int64ToNumber);
  const n = sizeOf(dims);
  let data = allocate(dtype, n);
  if (p.rawData && p.rawData.length > 0) {
    const buf = copyBytes(p.rawData, data.BYTES_PER_ELEMENT);
    data = new (data.constructor as new (b: ArrayBuffer) => typeof data)(buf);
  } else if (dtype === "float32") (data as Float32Array).set(p.floatData ?? []);
  else if (dtype === "float64") (data as Float64Array).set(p.doubleData ?? []);
  else if (dtype === "int64")
    (data as BigInt64Array).set((p.int64Data ?? []).map((v) => BigInt(int64ToNumber(v))));
  else (data as Int32Array).set(p.int32Data ?? []);
  if (data.length !== n)
    throw new OnnxFormatError(`tensor '${p.name}': ${data.length} elements for dims [${dims}]`);
  return { dtype, dims, data };
}

export function tensorToProto(name: string, t: Tensor): onnx.ITensorProto {
  return {
    name,
    dataType: ONNX_DTYPE[t.dtype],
    dims: t.dims,
    rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  };
}

function valueInfoFromProto(v: onnx.IValueInfoProto): ValueInfo {
  const tt = v.type?.tensorType;
  const dtype: DType = DTYPE_OF_ONNX[tt?.elemType ?? 1] ?? "float32";
  const shape = tt?.shape
    ? (tt.shape.dim ?? []).map((d) =>
        d.dimParam ? d.dimParam : d.dimValue != null ? int64ToNumber(d.dimValue) : "?",
      )
    : undefined;
  return { name: v.name ?? "", dtype, shape };
}

function valueInfoToProto(v: ValueInfo): onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[v.dtype],
        shape: v.shape
          ? { dim: v.shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) }
          : undefined,
      },
    },
  };
}

const A = onnxValues.AttributeProto.AttributeType;

function attrFromProto(a: onnx.IAttributeProto): Attr {
  switch (a.type) {
    case A.FLOAT:
      return { type: "float", value: a.f ?? 0 };
    case A.INT:
      return { type: "int", value: int64ToNumber(a.i) };
    case A.STRING:
      return { type: "string", value: new TextDecoder().decode(a.s ?? new Uint8Array()) };
    case A.TENSOR:
      return { type: "tensor", value: tensorFromProto(a.t ?? {}) };
    case A.FLOATS:
      return { type: "floats", value: [...(a.floats ?? [])] };
    case A.INTS:
      return { type: "ints", value: (a.ints ?? []).map(int64ToNumber) };
    case A.STRINGS:
      return { type: "strings", value: (a.strings ?? []).map((s) => new TextDecoder().decode(s)) };
    default:
      throw new OnnxFormatError(
        `attribute '${a.name}': unsupported attribute type ${a.type} (subgraphs are not supported)`,
      );
  }
}

function attrToProto(name: string, a: Attr): onnx.IAttributeProto {
  switch (a.type) {
    case "float":
      return { name, type: A.FLOAT, f: a.value };
    case "int":
      return { name, type: A.INT, i: a.value };
    case "string":
      return { name, type: A.STRING, s: new TextEncoder().encode(a.value) };
    case "tensor":
      return { name, type: A.TENSOR, t: tensorToProto("", a.value) };
    case "floats":
      return { name, type: A.FLOATS, floats: a.value };
    case "ints":
      return { name, type: A.INTS, ints: a.value };
    case "strings":
      return { name, type: A.STRINGS, strings: a.value.map((s) => new TextEncoder().encode(s)) };
  }
}

export interface DecodeOptions {
  /**
   * Initializers with more elements than this keep their dtype and dims but get no data (an empty array).
   * For readers of a graph's structure only (the gateway's model limits), who would otherwise copy every weight.
   */
  structureOnlyAbove?: number;
}

/** A structure-only initializer: dtype and dims, no data. */
function tensorShapeFromProto(p: onnx.ITensorProto): Tensor {
  const dtype = DTYPE_OF_ONNX[p.dataType ?? 0];
  if (!dtype) throw new OnnxFormatError(`tensor '${p.name}': unsupported data type ${p.dataType}`);
  return { dtype, dims: (p.dims ?? []).map(int64ToNumber), data: allocate(dtype, 0) };
}

/** Parses an ONNX model file. Throws OnnxFormatError on anything that is not a usable model. */
export function decodeModel(bytes: Uint8Array, opts: DecodeOptions = {}): Graph {
  const model = decodeModelProto(bytes);
  inlineFunctions(model, bytes);
  return graphFromModelProto(model, opts);
}

/** Inlines the model's local functions (inline.ts) in place; OnnxFormatError when that is not possible. */
export function inlineFunctions(model: onnx.IModelProto, bytes: Uint8Array): InlineReport {
  try {
    return inlineLocalFunctions(model, bytes);
  } catch (err) {
    if (err instanceof InlineError) throw new OnnxFormatError(err.message);
    throw err;
  }
}

/** The protobuf message of a model file, for passes that must see it before the Graph does (fp16 upcast). */
export function decodeModelProto(bytes: Uint8Array): onnx.ModelProto {
  try {
    return onnxValues.ModelProto.decode(bytes);
  } catch (err) {
    throw new OnnxFormatError(`not an ONNX model: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Serialises a protobuf model message as decoded by `decodeModelProto` (after in-place edits). */
export function encodeModelProto(model: onnx.IModelProto): Uint8Array {
  return onnxValues.ModelProto.encode(model, new protobuf.Writer()).finish();
}

/** A decoded model message as a Graph. Throws OnnxFormatError on anything that is not a usable model. */
export function graphFromModelProto(model: onnx.ModelProto, opts: DecodeOptions = {}): Graph {
  const g = model.graph;
  if (!g?.node || g.node.length === 0 || !g.output?.length)
    throw new OnnxFormatError("not an ONNX model: it has no graph");
  // A Graph has no functions: a caller that decoded the message itself inlines them first (inlineFunctions).
  if (model.functions?.length)
    throw new OnnxFormatError(
      `the model has ${model.functions.length} local functions (${model.functions[0].domain}.${model.functions[0].name}, ...): inline them before reading the graph`,
    );
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  const graph = new Graph({ name: g.name ?? "graph", opset: opset ? int64ToNumber(opset.version) : 17 });
  graph.extraOpsets = (model.opsetImport ?? [])
    .filter((o) => o.domain && o.domain !== "ai.onnx")
    .map((o) => ({ domain: o.domain ?? "", version: int64ToNumber(o.version) }));
  const above = opts.structureOnlyAbove;
  for (const init of g.initializer ?? []) {
    const large = above !== undefined && sizeOf((init.dims ?? []).map(int64ToNumber)) > above;
    graph.initializers.set(init.name ?? "", large ? tensorShapeFromProto(init) : tensorFromProto(init));
  }
  const initNames = graph.initializers;
  graph.inputs = (g.input ?? []).filter((v) => !initNames.has(v.name ?? "")).map(valueInfoFromProto);
  graph.outputs = (g.output ?? []).map(valueInfoFromProto);
  for (const v of g.valueInfo ?? []) graph.valueInfo.set(v.name ?? "", valueInfoFromProto(v));
  graph.nodes = (g.node ?? []).map(
    (n, i): Node => ({
      name: n.name || `${n.opType}_${i}`,
      op: n.opType ?? "",
      domain: n.domain ?? "",
      inputs: [...(n.input ?? [])],
      outputs: [...(n.output ?? [])],
      attrs: Object.fromEntries((n.attribute ?? []).map((a) => [a.name ?? "", attrFromProto(a)])),
    }),
  );
  return graph;
}

/** Serialises a Graph as an ONNX model file (IR version 8). */
export function encodeModel(graph: Graph): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: "sluice",
    opsetImport: [{ domain: "", version: graph.opset }, ...graph.extraOpsets],
    graph: {
      name: graph.name,
      node: graph.nodes.map((n) => ({
        name: n.name,
        opType: n.op,
        domain: n.domain || undefined,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs).map(([k, a]) => attrToProto(k, a)),
      })),
      initializer: [...graph.initializers].map(([name, t]) => tensorToProto(name, t)),
      input: graph.inputs.map(valueInfoToProto),
      output: graph.outputs.map(valueInfoToProto),
      valueInfo: [...graph.valueInfo.values()].map(valueInfoToProto),
    },
  };
  // A plain Writer, not protobufjs's default BufferWriter: where nodejs_compat exposes Buffer (workerd),
  // Buffer#utf8Write mis-sizes strings over 40 characters and encoding throws a RangeError.
  return onnxValues.ModelProto.encode(model, new protobuf.Writer()).finish();
}
