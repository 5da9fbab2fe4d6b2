/** Dense tensors as plain typed arrays: the unit of data for initializers, constants and ORT feeds. */

export type DType = "float32" | "float64" | "int64" | "int32" | "int8" | "uint8" | "bool";

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Int8Array | Uint8Array;

export interface Tensor {
  dtype: DType;
  dims: number[];
  data: TensorData;
}

/** ONNX TensorProto.DataType codes. */
export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float64: 11,
};

export const DTYPE_OF_ONNX: Record<number, DType> = Object.fromEntries(
  Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]),
);

/** Open Inference Protocol names of the same types. */
export const OIP_DATATYPE: Record<DType, string> = {
  float32: "FP32",
  float64: "FP64",
  int64: "INT64",
  int32: "INT32",
  int8: "INT8",
  uint8: "UINT8",
  bool: "BOOL",
};

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  float64: 8,
  int64: 8,
  int32: 4,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function sizeOf(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function allocate(dtype: DType, n: number): TensorData {
  switch (dtype) {
    case "float32":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "int32":
      return new Int32Array(n);
    case "int8":
      return new Int8Array(n);
    case "uint8":
    case "bool":
      return new Uint8Array(n);
  }
}

const INT64_MAX = 9223372036854775807n;

/**
 * A number as an int64 element. INT64_MAX (what exporters write as an open Slice end) is 2^63 as a float64, one
 * past the range: BigInt64Array would wrap it to INT64_MIN, turning "to the end" into "nothing", so it saturates.
 */
function toInt64(v: number | bigint): bigint {
  const b = BigInt(v);
  return b > INT64_MAX ? INT64_MAX : b;
}

export function tensor(
  dtype: DType,
  dims: number[],
  data?: TensorData | ArrayLike<number> | bigint[],
): Tensor {
  const n = sizeOf(dims);
  let out: TensorData;
  if (data === undefined) out = allocate(dtype, n);
  else if (ArrayBuffer.isView(data) && data.constructor === allocate(dtype, 0).constructor)
    out = data as TensorData;
  else if (dtype === "int64")
    out = BigInt64Array.from(Array.from(data as ArrayLike<number | bigint>, toInt64));
  else {
    out = allocate(dtype, n);
    (out as Float32Array).set(Array.from(data as ArrayLike<number>, Number));
  }
  if (out.length !== n) throw new Error(`tensor data has ${out.length} elements, dims [${dims}] need ${n}`);
  return { dtype, dims: [...dims], data: out };
}

export const f32 = (dims: number[], data?: ArrayLike<number>) => tensor("float32", dims, data);
export const i64 = (dims: number[], data?: ArrayLike<number> | bigint[]) => tensor("int64", dims, data);
export const scalarF32 = (v: number) => tensor("float32", [], [v]);
export const vectorI64 = (values: number[]) => tensor("int64", [values.length], values);

/** Elements as JS numbers (int64 converted; fine for shapes and indices). */
export function toNumbers(t: Tensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

export function bytesOf(t: Tensor): number {
  return sizeOf(t.dims) * BYTES_PER_ELEMENT[t.dtype];
}
