/**
 * fp16 models, upcast to fp32 before the Graph is built, so training and export run in fp32 like any other
 * import. Three forms users ship:
 *
 * - onnxconverter-common / onnxruntime `float16.convert_float_to_float16` (keep_io_types or not): fp16
 *   initializers and Constant tensors, every float value fp16, `Cast(to=FLOAT16)` / `Cast(to=FLOAT)` at the
 *   boundaries and around the ops of its block list;
 * - a torch `.half()` export: the same with fp16 graph outputs, and fp32 islands (LayerNorm, Softmax) between
 *   Casts where the exporter upcasts;
 * - mixed graphs that feed fp32 weights through `Cast(to=FLOAT16)`.
 *
 * What changes and what does not: every fp16 tensor becomes fp32 holding the same values (fp16 → fp32 is exact),
 * so the weights are exactly the model's. A `Cast(to=FLOAT16)` of a constant is folded into an fp32 initializer
 * holding the fp16-rounded values, so a mixed graph's weights are also exactly what it computed with. Every other
 * `Cast(to=FLOAT16)` becomes `Cast(to=FLOAT)`, and those that then cast a float to float are dropped after
 * import's folding (`dropFloatCasts`): activations are computed in fp32 instead of being rounded to fp16 at each
 * step, which is the precision change the import is for (the outputs move by about fp16's rounding, ~1e-3).
 * Types that cannot be widened to fp32 losslessly by this pass (bfloat16, float8, a sparse Constant) are refused
 * naming the tensor or node.
 */
import type { onnx } from "onnx-proto";
import { int64ToNumber } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { inferShapes } from "../../core/onnx/shape-inference";
import { ImportError } from "./errors";

// onnx TensorProto.DataType and AttributeProto.AttributeType codes.
const FLOAT = 1;
const INT32 = 6;
const INT64 = 7;
const FLOAT16 = 10;
const DOUBLE = 11;
const UNSUPPORTED: Record<number, string> = {
  16: "bfloat16",
  17: "float8e4m3fn",
  18: "float8e4m3fnuz",
  19: "float8e5m2",
  20: "float8e5m2fnuz",
};
const ATTR_INT = 2;
const ATTR_TENSOR = 4;
const ATTR_TENSORS = 9;
const ATTR_SPARSE_TENSOR = 11;
/** Int attributes that name an element type (Cast, EyeLike, RandomNormal(Like), RandomUniform(Like), ...). */
const DTYPE_ATTRS = new Set(["to", "dtype", "output_dtype"]);

export interface Float16Report {
  /** What the file stored its weights and float values as. */
  source: "fp16";
  /** fp16 initializers and Constant/attribute tensors widened to fp32. */
  tensors: number;
  /** `Cast(to=FLOAT16)` of a constant folded into an fp32 initializer of the fp16-rounded values. */
  roundedConstants: number;
  /** `Cast(to=FLOAT16)` (and other fp16 dtype attributes) turned into fp32. */
  casts: number;
  /** Graph inputs/outputs the file declared fp16; the imported model declares them fp32. */
  fp16Io: string[];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits → the number they encode (exact in fp32). */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** fp32 `x` → IEEE half bits, rounding to nearest even (what numpy's float16() and ONNX Cast do). */
export function numberToFloat16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m · 2^-24 with m = (1.mant) >> (14 - e).
    const shift = 14 - e;
    if (shift > 24) return sign;
    const full = mant | 0x800000;
    let r = full >>> shift;
    const rem = full - r * 2 ** shift;
    const half = 2 ** (shift - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa raises the exponent, which is the right result (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** `x` rounded to the nearest fp16 value, as a number. */
export const roundToFloat16 = (x: number): number => float16BitsToNumber(numberToFloat16Bits(x));

function aligned(bytes: Uint8Array): ArrayBuffer {
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  return buf;
}

/** The fp16 bit patterns of a tensor: raw_data, or int32_data holding one half per element (onnx.helper). */
function halfBits(t: onnx.ITensorProto): Uint16Array {
  if (t.rawData && t.rawData.length > 0) return new Uint16Array(aligned(t.rawData));
  return Uint16Array.from(t.int32Data ?? [], (v) => v & 0xffff);
}

/** The numbers a float/double/int tensor proto holds; undefined for other types. */
function numbers(t: onnx.ITensorProto): ArrayLike<number> | undefined {
  const raw = t.rawData && t.rawData.length > 0 ? aligned(t.rawData) : undefined;
  switch (t.dataType) {
    case FLOAT:
      return raw ? new Float32Array(raw) : (t.floatData ?? []);
    case DOUBLE:
      return raw ? new Float64Array(raw) : (t.doubleData ?? []);
    case INT32:
      return raw ? new Int32Array(raw) : (t.int32Data ?? []);
    case INT64:
      return raw ? Array.from(new BigInt64Array(raw), Number) : (t.int64Data ?? []).map(int64ToNumber);
    case FLOAT16:
      return Array.from(halfBits(t), float16BitsToNumber);
  }
  return undefined;
}

function setFloat32(t: onnx.ITensorProto, values: ArrayLike<number>): void {
  const data = Float32Array.from(values);
  t.dataType = FLOAT;
  t.rawData = new Uint8Array(data.buffer);
  t.int32Data = [];
  t.floatData = [];
  t.doubleData = [];
  t.int64Data = [];
}

/**
 * Upcasts an fp16 model message in place; undefined (and nothing changed) when it holds no fp16. Throws
 * ImportError naming what cannot be widened.
 */
export function upcastFloat16(model: onnx.IModelProto): Float16Report | undefined {
  const g = model.graph;
  if (!g) return undefined;
  const report: Float16Report = { source: "fp16", tensors: 0, roundedConstants: 0, casts: 0, fp16Io: [] };
  const refuseType = (what: string, type: number | null | undefined) => {
    const name = UNSUPPORTED[type ?? 0];
    if (name)
      throw new ImportError(
        `${what} is ${name}: only fp32 and fp16 float models are supported; convert it to fp32 or fp16 first`,
      );
  };

  // Constants by value name (initializers and Constant nodes), to fold Cast(to=FLOAT16) of a weight exactly.
  const constants = new Map<string, onnx.ITensorProto>();
  for (const t of g.initializer ?? []) constants.set(t.name ?? "", t);
  for (const n of g.node ?? []) {
    if (n.opType !== "Constant" || (n.domain && n.domain !== "ai.onnx")) continue;
    const v = (n.attribute ?? []).find((a) => a.name === "value" && a.t);
    if (v?.t && n.output?.[0]) constants.set(n.output[0], v.t);
  }
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name));
  const folded: onnx.ITensorProto[] = [];
  g.node = (g.node ?? []).filter((n) => {
    if (n.opType !== "Cast" || (n.domain && n.domain !== "ai.onnx")) return true;
    const to = (n.attribute ?? []).find((a) => a.name === "to");
    const out = n.output?.[0];
    if (int64ToNumber(to?.i) !== FLOAT16 || !out || graphOutputs.has(out)) return true;
    const src = constants.get(n.input?.[0] ?? "");
    const values = src && numbers(src);
    if (!values) return true;
    folded.push({ name: out, dims: src.dims, dataType: FLOAT });
    setFloat32(folded[folded.length - 1], Array.from(values, roundToFloat16));
    report.roundedConstants++;
    return false;
  });
  for (const t of folded) constants.set(t.name ?? "", t);
  g.initializer = [...(g.initializer ?? []), ...folded];

  const widen = (t: onnx.ITensorProto, what: string) => {
    refuseType(what, t.dataType);
    if (t.dataType !== FLOAT16) return;
    if (t.dataLocation === 1)
      throw new ImportError(`${what}: external data is not supported; save the model as one file`);
    setFloat32(t, Array.from(halfBits(t), float16BitsToNumber));
    report.tensors++;
  };
  for (const t of g.initializer) widen(t, `initializer ${t.name}`);
  for (const n of g.node) {
    for (const a of n.attribute ?? []) {
      const what = `${n.name || n.opType}: attribute ${a.name}`;
      if (a.type === ATTR_TENSOR && a.t) widen(a.t, what);
      else if (a.type === ATTR_TENSORS) for (const t of a.tensors ?? []) widen(t, what);
      else if (a.type === ATTR_SPARSE_TENSOR && a.sparseTensor?.values?.dataType === FLOAT16)
        throw new ImportError(`${what}: a sparse fp16 tensor is not supported; store it dense`);
      else if (a.type === ATTR_INT && a.name && DTYPE_ATTRS.has(a.name)) {
        refuseType(what, int64ToNumber(a.i));
        if (int64ToNumber(a.i) === FLOAT16) {
          a.i = FLOAT;
          report.casts++;
        }
      }
    }
  }
  const io = new Set([...(g.input ?? []), ...(g.output ?? [])].map((v) => v.name));
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]) {
    const tt = v.type?.tensorType;
    if (!tt) continue;
    refuseType(`value ${v.name}`, tt.elemType);
    if (tt.elemType !== FLOAT16) continue;
    tt.elemType = FLOAT;
    if (io.has(v.name) && !(g.initializer ?? []).some((t) => t.name === v.name))
      report.fp16Io.push(v.name ?? "");
  }
  return report.tensors || report.roundedConstants || report.casts || report.fp16Io.length
    ? report
    : undefined;
}

/**
 * Drops the `Cast(to=FLOAT)` of a float32 value the upcast leaves behind (the converter's boundary casts, the
 * casts around fp32 islands), so recognition sees the plain fp32 graph. A cast onto a graph output becomes an
 * Identity. Returns how many it dropped.
 */
export function dropFloatCasts(g: Graph): number {
  const info = inferShapes(g);
  const outputs = new Set(g.outputs.map((o) => o.name));
  let dropped = 0;
  g.nodes = g.nodes.filter((n) => {
    if (n.op !== "Cast" || n.domain || n.attrs.to?.value !== FLOAT) return true;
    const src = n.inputs[0];
    const dtype = g.initializers.get(src)?.dtype ?? info.get(src)?.dtype;
    if (dtype !== "float32") return true;
    dropped++;
    if (outputs.has(n.outputs[0])) {
      n.op = "Identity";
      n.attrs = {};
      return true;
    }
    g.replaceUses(n.outputs[0], src);
    return false;
  });
  return dropped;
}
