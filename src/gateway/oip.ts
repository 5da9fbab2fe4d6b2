/**
 * Open Inference Protocol v2 (KServe/Triton/MLServer) request and response tensors, checked against the model's
 * io signature before anything reaches onnxruntime: datatype, shape, data length and nesting, element types,
 * input names and the configured batch/sequence limits (`prepareInfer`, before any load), then against what the
 * loaded graph itself bounds (`checkModelLimits`: token-id ranges, the position table). Every failure is a 400
 * naming the field; onnxruntime only ever sees inputs both accepted.
 */
import { z } from "zod";
import type { IoSignature, TensorDatatype, TensorSpec } from "../core/manifest";
import { fromZod, invalid } from "./errors";
import type { ModelLimits } from "./model-limits";

/** The request body of `POST /v2/models/:model[/versions/:v]/infer`. `data` is checked by hand below. */
export const InferRequest = z.object({
  id: z.string().max(256).optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
  inputs: z
    .array(
      z.object({
        name: z.string().min(1),
        shape: z.array(z.number().int().min(0)).max(8),
        datatype: z.string().min(1),
        parameters: z.record(z.string(), z.unknown()).optional(),
        data: z.unknown(),
      }),
    )
    .min(1),
  outputs: z
    .array(z.object({ name: z.string().min(1), parameters: z.record(z.string(), z.unknown()).optional() }))
    .optional(),
});
export type InferRequest = z.infer<typeof InferRequest>;

export type OrtTensorType =
  | "float32"
  | "float64"
  | "int8"
  | "uint8"
  | "int16"
  | "uint16"
  | "int32"
  | "uint32"
  | "int64"
  | "uint64"
  | "bool";

type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** One input, ready to become an `ort.Tensor`. */
export interface Feed {
  name: string;
  type: OrtTensorType;
  data: TypedArray;
  dims: number[];
}

interface Codec {
  ort: OrtTensorType;
  /** What a JSON leaf must be, for the error message. */
  expects: string;
  fill(n: number, leaves: unknown[], field: string): TypedArray;
}

const integer =
  <A extends Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array>(
    make: (n: number) => A,
    min: number,
    max: number,
  ) =>
  (n: number, leaves: unknown[], field: string): A => {
    const out = make(n);
    for (let i = 0; i < n; i++) {
      const v = leaves[i];
      if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
        throw invalid(`element ${i} is ${JSON.stringify(v)}, not an integer in [${min}, ${max}]`, field);
      }
      out[i] = v;
    }
    return out;
  };

const bigInteger =
  (signed: boolean) =>
  (n: number, leaves: unknown[], field: string): BigInt64Array | BigUint64Array => {
    const out = signed ? new BigInt64Array(n) : new BigUint64Array(n);
    for (let i = 0; i < n; i++) {
      const v = leaves[i];
      // JSON numbers are doubles: only safe integers survive the trip exactly.
      if (typeof v !== "number" || !Number.isSafeInteger(v) || (!signed && v < 0)) {
        throw invalid(
          `element ${i} is ${JSON.stringify(v)}, not a ${signed ? "" : "non-negative "}safe integer`,
          field,
        );
      }
      out[i] = BigInt(v);
    }
    return out;
  };

const floating =
  <A extends Float32Array | Float64Array>(make: (n: number) => A) =>
  (n: number, leaves: unknown[], field: string): A => {
    const out = make(n);
    for (let i = 0; i < n; i++) {
      const v = leaves[i];
      if (typeof v !== "number") throw invalid(`element ${i} is ${JSON.stringify(v)}, not a number`, field);
      out[i] = v;
    }
    return out;
  };

/** The OIP datatypes this gateway accepts. FP16 and BYTES are refused by name (see `UNSUPPORTED`). */
const CODECS: Partial<Record<TensorDatatype, Codec>> = {
  FP32: { ort: "float32", expects: "number", fill: floating((n) => new Float32Array(n)) },
  FP64: { ort: "float64", expects: "number", fill: floating((n) => new Float64Array(n)) },
  INT8: { ort: "int8", expects: "integer", fill: integer((n) => new Int8Array(n), -128, 127) },
  UINT8: { ort: "uint8", expects: "integer", fill: integer((n) => new Uint8Array(n), 0, 255) },
  INT16: { ort: "int16", expects: "integer", fill: integer((n) => new Int16Array(n), -32768, 32767) },
  UINT16: { ort: "uint16", expects: "integer", fill: integer((n) => new Uint16Array(n), 0, 65535) },
  INT32: {
    ort: "int32",
    expects: "integer",
    fill: integer((n) => new Int32Array(n), -(2 ** 31), 2 ** 31 - 1),
  },
  UINT32: { ort: "uint32", expects: "integer", fill: integer((n) => new Uint32Array(n), 0, 2 ** 32 - 1) },
  INT64: { ort: "int64", expects: "integer", fill: bigInteger(true) },
  UINT64: { ort: "uint64", expects: "integer", fill: bigInteger(false) },
  BOOL: {
    ort: "bool",
    expects: "boolean",
    fill: (n, leaves, field) => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = leaves[i];
        if (typeof v !== "boolean")
          throw invalid(`element ${i} is ${JSON.stringify(v)}, not a boolean`, field);
        out[i] = v ? 1 : 0;
      }
      return out;
    },
  },
};

const OIP_OF_ORT: Record<string, TensorDatatype> = Object.fromEntries(
  Object.entries(CODECS).map(([oip, codec]) => [codec!.ort, oip as TensorDatatype]),
);

export interface TensorLimits {
  maxBatch: number;
  maxSequence: number;
}

/**
 * The leaves of `data`, which is either flat (row-major, `size` leaves) or nested exactly as `shape` says (an
 * array of `shape[0]` arrays of `shape[1]` ... leaves). Anything else, ragged rows or mixed nesting included,
 * is refused naming the first offending element, rather than flattened into a tensor it does not describe.
 * Work stops at the first mismatch, so a huge malformed payload costs no more than its first error.
 */
function flatten(data: unknown, shape: number[], field: string): unknown[] {
  if (!Array.isArray(data)) throw invalid("must be an array (flat or nested, row-major)", field);
  const size = shape.reduce((a, b) => a * b, 1);
  if (!data.some(Array.isArray)) {
    if (data.length !== size) {
      throw invalid(`has ${data.length} elements; shape [${shape.join(", ")}] needs ${size}`, field);
    }
    return data;
  }
  if (shape.length < 2) {
    throw invalid(`is nested, but shape [${shape.join(", ")}] has rank ${shape.length}`, field);
  }
  const leaves: unknown[] = [];
  const walk = (node: unknown, depth: number, at: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(node)) throw invalid(`is nested deeper than shape [${shape.join(", ")}]`, at);
      leaves.push(node);
      return;
    }
    if (!Array.isArray(node)) {
      throw invalid(
        `is ${String(JSON.stringify(node)).slice(0, 40)}; shape [${shape.join(", ")}] nests an array here`,
        at,
      );
    }
    if (node.length !== shape[depth]) {
      throw invalid(
        `has ${node.length} elements; axis ${depth} of shape [${shape.join(", ")}] has ${shape[depth]} (ragged or mis-shaped nesting)`,
        at,
      );
    }
    for (let i = 0; i < node.length; i++) walk(node[i], depth + 1, `${at}[${i}]`);
  };
  walk(data, 0, field);
  return leaves;
}

function checkShape(shape: number[], spec: TensorSpec, limits: TensorLimits, field: string): void {
  if (shape.length !== spec.shape.length) {
    throw invalid(
      `has rank ${shape.length}; input '${spec.name}' has shape [${spec.shape.join(", ")}]`,
      field,
    );
  }
  shape.forEach((dim, axis) => {
    const want = spec.shape[axis];
    const at = `${field}[${axis}]`;
    if (want >= 0 && dim !== want) throw invalid(`is ${dim}; input '${spec.name}' requires ${want}`, at);
    if (want < 0 && dim < 1) throw invalid(`is ${dim}; dynamic axes must be at least 1`, at);
    if (want < 0 && axis === 0 && dim > limits.maxBatch) {
      throw invalid(`batch ${dim} exceeds the limit of ${limits.maxBatch}`, at);
    }
    if (want < 0 && axis > 0 && dim > limits.maxSequence) {
      throw invalid(`${dim} exceeds the sequence limit of ${limits.maxSequence}`, at);
    }
  });
}

export interface PreparedInfer {
  /** The request's id, echoed in the response as the protocol asks. */
  id?: string;
  feeds: Feed[];
  /** Output names to return, in order (all of the model's outputs unless the request chose some). */
  outputs: string[];
}

/** Validates an infer request body against the model's io signature; throws a 400 naming the field. */
export function prepareInfer(body: unknown, io: IoSignature, limits: TensorLimits): PreparedInfer {
  const parsed = InferRequest.safeParse(body);
  if (!parsed.success) throw fromZod(parsed.error);
  const req = parsed.data;

  const seen = new Set<string>();
  const feeds: Feed[] = [];
  req.inputs.forEach((input, i) => {
    const at = `inputs[${i}]`;
    const spec = io.inputs.find((s) => s.name === input.name);
    if (!spec) {
      throw invalid(
        `'${input.name}' is not an input of this model (inputs: ${io.inputs.map((s) => s.name).join(", ")})`,
        `${at}.name`,
      );
    }
    if (seen.has(input.name)) throw invalid(`'${input.name}' is given twice`, `${at}.name`);
    seen.add(input.name);
    const codec = CODECS[input.datatype as TensorDatatype];
    if (!codec) {
      throw invalid(
        `'${input.datatype}' is not supported (supported: ${Object.keys(CODECS).join(", ")})`,
        `${at}.datatype`,
      );
    }
    if (input.datatype !== spec.datatype) {
      throw invalid(`is ${input.datatype}; input '${spec.name}' takes ${spec.datatype}`, `${at}.datatype`);
    }
    checkShape(input.shape, spec, limits, `${at}.shape`);
    const size = input.shape.reduce((a, b) => a * b, 1);
    const leaves = flatten(input.data, input.shape, `${at}.data`);
    const data = codec.fill(size, leaves, `${at}.data`);
    // A Sluice variant's integer inputs are token ids, masks, token types or positions: none is negative, and
    // onnxruntime's Gather would silently wrap a negative id to the end of the embedding table.
    if (data instanceof Int32Array || data instanceof BigInt64Array) {
      const k = (data as Int32Array).findIndex((x) => x < 0); // BigInt64Array's findIndex behaves alike
      if (k >= 0) {
        throw invalid(
          `element ${k} is ${String(data[k])}: integer inputs (token ids, masks, types, positions) are never negative`,
          `${at}.data`,
        );
      }
    }
    feeds.push({ name: spec.name, type: codec.ort, data, dims: input.shape });
  });

  const missing = io.inputs.filter((s) => !seen.has(s.name)).map((s) => s.name);
  if (missing.length > 0) throw invalid(`missing input(s): ${missing.join(", ")}`, "inputs");

  // Inputs that share a dynamic batch axis must agree on it, or onnxruntime would fail mid-graph.
  const batched = feeds.filter((f) => io.inputs.find((s) => s.name === f.name)!.shape[0] === -1);
  for (const f of batched) {
    if (f.dims[0] !== batched[0].dims[0]) {
      const i = req.inputs.findIndex((x) => x.name === f.name);
      throw invalid(
        `batch ${f.dims[0]} differs from input '${batched[0].name}' batch ${batched[0].dims[0]}`,
        `inputs[${i}].shape[0]`,
      );
    }
  }

  let outputs = io.outputs.map((s) => s.name);
  // An empty list asks for no particular output: like an absent one, it means all of them (OIP v2 spec).
  if (req.outputs && req.outputs.length > 0) {
    req.outputs.forEach((o, i) => {
      if (!outputs.includes(o.name)) {
        throw invalid(
          `'${o.name}' is not an output of this model (outputs: ${outputs.join(", ")})`,
          `outputs[${i}].name`,
        );
      }
    });
    outputs = req.outputs.map((o) => o.name);
  }
  return { id: req.id, feeds, outputs };
}

/**
 * The checks only the loaded graph can answer (model-limits.ts), on inputs `prepareInfer` accepted: every
 * value of an input that indexes an embedding table is below the table's rows (a token id past the vocabulary
 * would otherwise reach onnxruntime's Gather), and the sequence axis is within the position table. Feeds are
 * in request order, so feed i is `inputs[i]`. Throws a 400 naming the field.
 */
export function checkModelLimits(feeds: Feed[], limits: ModelLimits): void {
  feeds.forEach((f, i) => {
    const at = `inputs[${i}]`;
    if (limits.maxPositions !== undefined && f.dims.length >= 2 && f.dims[1] > limits.maxPositions) {
      throw invalid(
        `${f.dims[1]} exceeds the model's maximum sequence length of ${limits.maxPositions} (its position-embedding table)`,
        `${at}.shape[1]`,
      );
    }
    const bound = limits.valueBounds[f.name];
    if (bound === undefined || f.type === "float32" || f.type === "float64" || f.type === "bool") return;
    const data = f.data as ArrayLike<number | bigint>;
    for (let k = 0; k < data.length; k++) {
      const v = data[k];
      if (v < 0 || v >= bound) {
        throw invalid(
          `element ${k} is ${String(v)}: '${f.name}' indexes a table of ${bound} rows, so its values must be in [0, ${bound})`,
          `${at}.data`,
        );
      }
    }
  });
}

export interface OipTensor {
  name: string;
  datatype: TensorDatatype;
  shape: number[];
  data: (number | boolean)[];
}

/** An onnxruntime output as an OIP response tensor (flat, row-major data). */
export function toOipTensor(
  name: string,
  tensor: { type: string; dims: readonly number[]; data: unknown },
): OipTensor {
  const datatype = OIP_OF_ORT[tensor.type];
  if (!datatype) throw new Error(`output '${name}' has type ${tensor.type}, which has no OIP datatype here`);
  const source = tensor.data as ArrayLike<number | bigint>;
  const data: (number | boolean)[] = new Array(source.length);
  for (let i = 0; i < source.length; i++) {
    const v = source[i];
    data[i] = datatype === "BOOL" ? v !== 0 : Number(v);
  }
  return { name, datatype, shape: [...tensor.dims], data };
}
