/**
 * Dynamic int8 quantization of an exported variant's graph: the weights of its linear layers (MatMul / Gemm
 * with a constant weight) become symmetric int8 with one scale per output channel; activations are quantized
 * at run time (DynamicQuantizeLinear, uint8 with a zero point), so no calibration data is needed.
 *
 * Hand-written because onnxruntime's quantizer (`onnxruntime.quantization.quantize_dynamic`) exists only in
 * Python, and no JavaScript library rewrites ONNX graphs this way; the trainer is Node-only and owns its graph
 * API (core/onnx), so a graph pass here is a few hundred lines rather than a Python dependency.
 *
 * Kept in fp32, on purpose:
 *  - attention products (Q·Kᵀ and ·V): both operands are activations, no constant weight to quantize, and
 *    quantizing softmax outputs per tensor loses the small probabilities;
 *  - LayerNorm, softmax, GELU: elementwise/reductions, nothing to gain in int8;
 *  - the classification head (every linear layer with no LayerNorm after it): it is tiny (hidden × labels)
 *    and its errors go straight into the logits;
 *  - embeddings, unless `embeddings: true`: then Gather reads an int8 table and DequantizeLinear restores it
 *    with one scale per hidden feature (axis -1 of the gathered rows, i.e. per column of the table).
 *
 * Two op forms (see docs/quantize.md for which runs faster in onnxruntime-web's wasm build):
 *  - "standard": DynamicQuantizeLinear → MatMulInteger → Cast → Mul(scale_x · scale_w) (+ the bias Add), the
 *    form onnxruntime's Python quantizer writes. onnxruntime fuses it at session creation into
 *    MatMulIntegerToFloat / DynamicQuantizeMatMul, and one DynamicQuantizeLinear is shared by every matmul that
 *    reads the same activation (Q, K and V quantize their input once).
 *  - "contrib": com.microsoft.DynamicQuantizeMatMul written directly (weight, per-channel scale and bias in one
 *    node; each node quantizes its own input).
 */
import { attrOf, type Graph, type Node } from "../../core/onnx/graph";
import { type Tensor, tensor } from "../../core/onnx/tensor";

export type QuantOpForm = "standard" | "contrib";
export const QUANT_OP_FORMS: readonly QuantOpForm[] = ["standard", "contrib"];
/** The form `sluice quantize` / `export --precision int8` writes unless told otherwise (measured faster). */
export const DEFAULT_QUANT_OP_FORM: QuantOpForm = "standard";

export type Precision = "fp32" | "int8";

export interface QuantizeOptions {
  form?: QuantOpForm;
  /** Also store the embedding tables in int8 (Gather + DequantizeLinear). */
  embeddings?: boolean;
}

export interface QuantizeReport {
  form: QuantOpForm;
  /** Linear nodes whose weights are now int8. */
  quantized: string[];
  /** Linear nodes with a constant weight left in fp32, and why. */
  keptFp32: { node: string; reason: string }[];
  /** Embedding tables stored in int8. */
  embeddings: string[];
  /** Largest |w - dequant(quant(w))| over the quantized weights (the rounding error, ≤ scale / 2). */
  maxWeightError: number;
}

const MS_DOMAIN = "com.microsoft";
/** Ops whose presence means a graph already holds quantized weights. */
const QUANTIZED_OPS = new Set([
  "MatMulInteger",
  "DynamicQuantizeLinear",
  "DynamicQuantizeMatMul",
  "MatMulIntegerToFloat",
  "QLinearMatMul",
  "DequantizeLinear",
]);

/** "int8" when the graph already has quantized matmuls or dequantized tables, else "fp32". */
export function precisionOf(g: Graph): Precision {
  return g.nodes.some((n) => QUANTIZED_OPS.has(n.op)) ? "int8" : "fp32";
}

/**
 * Symmetric int8 per output channel of a [K, N] weight (columns are output channels): scale_n = max|W[:, n]| / 127,
 * q = round(W / scale) in [-127, 127] (−128 unused, so the range is symmetric and the zero point 0).
 */
export function quantizePerColumn(
  w: Float32Array,
  k: number,
  n: number,
): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(n);
  for (let r = 0; r < k; r++)
    for (let c = 0; c < n; c++) {
      const a = Math.abs(w[r * n + c]);
      if (a > scales[c]) scales[c] = a;
    }
  // An all-zero column gets scale 1 (any scale represents it exactly; 0 would divide by zero at run time).
  for (let c = 0; c < n; c++) scales[c] = scales[c] > 0 ? scales[c] / 127 : 1;
  const q = new Int8Array(k * n);
  for (let r = 0; r < k; r++)
    for (let c = 0; c < n; c++)
      q[r * n + c] = Math.max(-127, Math.min(127, Math.round(w[r * n + c] / scales[c])));
  return { q, scales };
}

function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

/** A linear layer as x[.., K] @ W[K, N] (+ bias[N]), whatever node it came from. */
interface Linear {
  node: Node;
  input: string;
  weight: Float32Array;
  k: number;
  n: number;
  bias?: Float32Array;
  /** The node (Add) whose output is the layer's biased output, when the bias is folded from one. */
  biasAdd?: Node;
  output: string;
}

/** The linear layers with a constant fp32 weight; other MatMuls (attention products) are not linear layers. */
function linearLayers(g: Graph, keptFp32: QuantizeReport["keptFp32"]): Linear[] {
  const consumers = g.consumers();
  const outputs = new Set(g.outputs.map((o) => o.name));
  const constant = (name: string): Tensor | undefined => {
    const t = g.initializers.get(name);
    return t && t.dtype === "float32" ? t : undefined;
  };
  const out: Linear[] = [];
  for (const node of g.nodes) {
    if (node.domain !== "" || (node.op !== "MatMul" && node.op !== "Gemm")) continue;
    const w = constant(node.inputs[1]);
    if (!w) continue;
    if (w.dims.length !== 2) {
      keptFp32.push({ node: node.name, reason: `weight is ${w.dims.length}-D` });
      continue;
    }
    let weight = w.data as Float32Array;
    let [k, n] = w.dims;
    let bias: Float32Array | undefined;
    if (node.op === "Gemm") {
      const alpha = attrOf<number>(node, "alpha") ?? 1;
      const beta = attrOf<number>(node, "beta") ?? 1;
      if (alpha !== 1 || beta !== 1 || (attrOf<number>(node, "transA") ?? 0) !== 0) {
        keptFp32.push({ node: node.name, reason: "Gemm with alpha/beta ≠ 1 or transA" });
        continue;
      }
      if ((attrOf<number>(node, "transB") ?? 0) === 1) {
        weight = transpose2d(weight, k, n);
        [k, n] = [n, k];
      }
      if (node.inputs[2]) {
        const c = constant(node.inputs[2]);
        if (!c || c.data.length !== n) {
          keptFp32.push({ node: node.name, reason: "Gemm bias is not a constant [N] vector" });
          continue;
        }
        bias = c.data as Float32Array;
      }
    }
    const linear: Linear = { node, input: node.inputs[0], weight, k, n, bias, output: node.outputs[0] };
    // A MatMul followed by `+ bias[N]` (the only use of its output): the bias belongs to the layer.
    const users = consumers.get(node.outputs[0]) ?? [];
    if (!bias && users.length === 1 && users[0].op === "Add" && !outputs.has(node.outputs[0])) {
      const add = users[0];
      const other = add.inputs[0] === node.outputs[0] ? add.inputs[1] : add.inputs[0];
      const c = constant(other);
      if (
        c &&
        c.data.length === n &&
        (c.dims.length === 1 || c.dims.every((d, i) => i === c.dims.length - 1 || d === 1))
      ) {
        linear.bias = c.data as Float32Array;
        linear.biasAdd = add;
        linear.output = add.outputs[0];
      }
    }
    out.push(linear);
  }
  return out;
}

/** Nodes with a LayerNormalization downstream of them (everything else is the head). */
function upstreamOfLayerNorm(g: Graph): Set<Node> {
  const producers = g.producers();
  const marked = new Set<Node>();
  const stack = g.nodes.filter((n) => n.op === "LayerNormalization");
  while (stack.length) {
    const n = stack.pop()!;
    for (const i of n.inputs) {
      const p = producers.get(i);
      if (p && !marked.has(p)) {
        marked.add(p);
        stack.push(p);
      }
    }
  }
  return marked;
}

/** Returns a quantized copy of `source` (which is left untouched) and what was done. */
export function quantizeGraph(
  source: Graph,
  opts: QuantizeOptions = {},
): { graph: Graph; report: QuantizeReport } {
  const form = opts.form ?? DEFAULT_QUANT_OP_FORM;
  if (precisionOf(source) === "int8") throw new Error("the model is already quantized (it has int8 ops)");
  const g = source.clone();
  const report: QuantizeReport = { form, quantized: [], keptFp32: [], embeddings: [], maxWeightError: 0 };
  const hasLayerNorm = g.nodes.some((n) => n.op === "LayerNormalization");
  const body = upstreamOfLayerNorm(g);
  // One DynamicQuantizeLinear per activation (standard form): Q, K and V read the same input.
  const dynamicQuant = new Map<string, [string, string, string]>();
  const removed = new Set<Node>();
  const int8Weights = new Map<string, [string, string]>();
  const int8Biases = new Map<Float32Array, string>();

  for (const l of linearLayers(g, report.keptFp32)) {
    // Without any LayerNorm op (decomposed norms) the head is only what writes a graph output.
    const isHead = hasLayerNorm ? !body.has(l.node) : g.outputs.some((o) => o.name === l.output);
    if (isHead) {
      report.keptFp32.push({ node: l.node.name, reason: "classification head" });
      continue;
    }
    const base = l.node.name;
    // A weight shared by several linears (ALBERT's layers) is quantized once and read by all of them.
    const wKey = `${l.node.inputs[1]}|${l.node.op}|${attrOf<number>(l.node, "transB") ?? 0}`;
    let int8 = int8Weights.get(wKey);
    if (!int8) {
      const { q, scales } = quantizePerColumn(l.weight, l.k, l.n);
      for (let i = 0; i < l.weight.length; i++)
        report.maxWeightError = Math.max(
          report.maxWeightError,
          Math.abs(l.weight[i] - q[i] * scales[i % l.n]),
        );
      int8 = [
        g.addInitializer(`${base}.weight_int8`, tensor("int8", [l.k, l.n], q)),
        g.addInitializer(`${base}.weight_scale`, tensor("float32", [l.n], scales)),
      ];
      int8Weights.set(wKey, int8);
    }
    const [wq, ws] = int8;
    const biasOf = (b: Float32Array) => {
      let name = int8Biases.get(b);
      if (!name) {
        name = g.addInitializer(`${base}.bias`, tensor("float32", [l.n], b));
        int8Biases.set(b, name);
      }
      return name;
    };
    if (form === "contrib") {
      const bias = l.bias ? biasOf(l.bias) : "";
      g.addNode(
        "DynamicQuantizeMatMul",
        [l.input, wq, ws, "", bias].filter((x, i) => i < 4 || x),
        {},
        {
          name: `${base}/int8/DynamicQuantizeMatMul`,
          domain: MS_DOMAIN,
          outputs: [l.output],
        },
      );
    } else {
      let dq = dynamicQuant.get(l.input);
      if (!dq) {
        const outs = g.addNode(
          "DynamicQuantizeLinear",
          [l.input],
          {},
          { name: g.uniqueName(`${base}/int8/DynamicQuantizeLinear`), outputs: 3 },
        );
        dq = [outs[0], outs[1], outs[2]];
        dynamicQuant.set(l.input, dq);
      }
      const [xq, xs, xzp] = dq;
      const acc = g.op("MatMulInteger", [xq, wq, xzp], {}, { name: `${base}/int8/MatMulInteger` });
      const accF = g.op("Cast", [acc], { to: 1 }, { name: `${base}/int8/Cast` });
      const scale = g.op("Mul", [xs, ws], {}, { name: `${base}/int8/Scale` });
      if (l.bias) {
        const y = g.op("Mul", [accF, scale], {}, { name: `${base}/int8/Mul` });
        const bias = biasOf(l.bias);
        g.addNode("Add", [y, bias], {}, { name: `${base}/int8/BiasAdd`, outputs: [l.output] });
      } else g.addNode("Mul", [accF, scale], {}, { name: `${base}/int8/Mul`, outputs: [l.output] });
    }
    removed.add(l.node);
    if (l.biasAdd) removed.add(l.biasAdd);
    report.quantized.push(base);
  }

  if (opts.embeddings) {
    const consumers = g.consumers();
    for (const node of [...g.nodes]) {
      if (node.op !== "Gather" || (attrOf<number>(node, "axis") ?? 0) !== 0) continue;
      const table = g.initializers.get(node.inputs[0]);
      if (table?.dtype !== "float32" || table.dims.length !== 2) continue;
      // Only tables read by nothing but Gathers (a tied output projection would need the fp32 table).
      if ((consumers.get(node.inputs[0]) ?? []).some((u) => u.op !== "Gather")) continue;
      if (report.embeddings.includes(node.inputs[0])) continue;
      const [rows, cols] = table.dims;
      const { q, scales } = quantizePerColumn(table.data as Float32Array, rows, cols);
      const qName = g.addInitializer(`${node.inputs[0]}.int8`, tensor("int8", [rows, cols], q));
      const sName = g.addInitializer(`${node.inputs[0]}.scale`, tensor("float32", [cols], scales));
      const zName = g.addInitializer(
        `${node.inputs[0]}.zero_point`,
        tensor("int8", [cols], new Int8Array(cols)),
      );
      for (const gather of consumers.get(node.inputs[0]) ?? []) {
        const out = gather.outputs[0];
        const gathered = g.uniqueName(`${out}/int8`);
        gather.outputs = [gathered];
        gather.inputs = [qName, ...gather.inputs.slice(1)];
        g.addNode(
          "DequantizeLinear",
          [gathered, sName, zName],
          { axis: -1 },
          {
            name: `${gather.name}/int8/DequantizeLinear`,
            outputs: [out],
          },
        );
      }
      report.embeddings.push(node.inputs[0]);
    }
  }

  // The replacements were appended; toposort puts them back in dependency order.
  g.nodes = g.nodes.filter((n) => !removed.has(n));
  if (form === "contrib" && report.quantized.length && !g.extraOpsets.some((o) => o.domain === MS_DOMAIN))
    g.extraOpsets.push({ domain: MS_DOMAIN, version: 1 });
  g.toposort().cleanup();
  return { graph: g, report };
}
