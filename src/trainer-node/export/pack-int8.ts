/**
 * Packed int8 projections for the edge: the int8 linears that read the same activation (an attention block's Q,
 * K and V) become one com.microsoft DynamicQuantizeMatMul over their weights concatenated column-wise, then one
 * Split back into their outputs. Applied by export/optimize.ts to the graph onnxruntime has fused (where each
 * int8 linear is a MatMulIntegerToFloat behind a shared DynamicQuantizeLinear, or a DynamicQuantizeMatMul), and
 * checked there in onnxruntime-web's wasm build like the other edge fusions.
 *
 * Exact by construction: the weights are int8 per output column, so every column keeps its own int8 values,
 * scale and bias, and the activation is quantized once either way (one tensor-wide scale); only the number of
 * GEMM calls changes (one of M × K × ΣN instead of three of M × K × N).
 *
 * A projection whose output is read only by a Split on its last axis (export's per-head-group Split) hands that
 * Split's parts to the packed Split directly, so a value is not split twice.
 *
 * Not packed: weights that are not constant 2-D int8/uint8 tensors of one K, per-tensor scales, non-zero weight
 * zero points, and outputs that are graph outputs.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { type Tensor, tensor, toNumbers } from "../../core/onnx/tensor";

const MS = "com.microsoft";

export interface PackReport {
  /** Packed groups (one per activation read by two or more int8 linears). */
  groups: number;
  /** int8 linears absorbed into them. */
  linears: number;
}

/** One int8 linear as y = dequant(quant(x) @ W) * scale + bias, whichever node form it came in. */
interface Int8Linear {
  node: Node;
  /** The fp32 activation it quantizes. */
  x: string;
  w: Tensor;
  scale: Tensor;
  bias?: Tensor;
  output: string;
}

const isMs = (n: Node, op: string) => n.op === op && n.domain === MS;

/** The node as an Int8Linear, or undefined when it is not one this pass can pack. */
function asInt8Linear(g: Graph, n: Node, producers: Map<string, Node>): Int8Linear | undefined {
  const init = (v: string | undefined) => (v ? g.initializers.get(v) : undefined);
  let x: string;
  let [w, scale, wzp, bias]: (string | undefined)[] = [];
  if (isMs(n, "MatMulIntegerToFloat")) {
    // A (uint8), B, a_scale, b_scale, a_zero_point, b_zero_point, bias: A, a_scale and a_zero_point are the
    // outputs of one DynamicQuantizeLinear.
    const dq = producers.get(n.inputs[0]);
    if (dq?.op !== "DynamicQuantizeLinear" || dq.domain !== "") return undefined;
    if (n.inputs[2] !== dq.outputs[1] || n.inputs[4] !== dq.outputs[2] || dq.outputs[0] !== n.inputs[0])
      return undefined;
    x = dq.inputs[0];
    [w, scale, wzp, bias] = [n.inputs[1], n.inputs[3], n.inputs[5], n.inputs[6]];
  } else if (isMs(n, "DynamicQuantizeMatMul")) {
    x = n.inputs[0];
    [w, scale, wzp, bias] = [n.inputs[1], n.inputs[2], n.inputs[3], n.inputs[4]];
  } else return undefined;
  const wt = init(w);
  const st = init(scale);
  if (!wt || (wt.dtype !== "int8" && wt.dtype !== "uint8") || wt.dims.length !== 2) return undefined;
  const cols = wt.dims[1];
  if (st?.dtype !== "float32" || st.data.length !== cols || st.dims.length !== 1) return undefined;
  if (wzp) {
    const z = init(wzp);
    if (!z || toNumbers(z).some((v) => v !== 0)) return undefined;
  }
  let bt: Tensor | undefined;
  if (bias) {
    bt = init(bias);
    if (bt?.dtype !== "float32" || bt.data.length !== cols) return undefined;
  }
  if (n.outputs.length !== 1) return undefined;
  return { node: n, x, w: wt, scale: st, bias: bt, output: n.outputs[0] };
}

/** Column-wise concatenation of [K, N_i] row-major matrices. */
function concatColumns(parts: Tensor[]): Tensor {
  const k = parts[0].dims[0];
  const n = parts.reduce((s, p) => s + p.dims[1], 0);
  const out = parts[0].dtype === "int8" ? new Int8Array(k * n) : new Uint8Array(k * n);
  let col = 0;
  for (const p of parts) {
    const pn = p.dims[1];
    const data = p.data as Int8Array | Uint8Array;
    for (let r = 0; r < k; r++) out.set(data.subarray(r * pn, (r + 1) * pn), r * n + col);
    col += pn;
  }
  return tensor(parts[0].dtype, [k, n], out);
}

function concat1d(parts: (Tensor | undefined)[], sizes: number[]): Float32Array {
  const out = new Float32Array(sizes.reduce((a, b) => a + b, 0));
  let at = 0;
  parts.forEach((p, i) => {
    if (p) out.set(p.data as Float32Array, at); // a linear without a bias adds zeros
    at += sizes[i];
  });
  return out;
}

/** Packs `g` in place and says how much it packed. */
export function packInt8Linears(g: Graph): PackReport {
  const producers = g.producers();
  const consumers = g.consumers();
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  const byInput = new Map<string, Int8Linear[]>();
  for (const n of g.nodes) {
    const l = asInt8Linear(g, n, producers);
    if (!l || graphOutputs.has(l.output)) continue;
    const list = byInput.get(l.x);
    if (list) list.push(l);
    else byInput.set(l.x, [l]);
  }
  const report: PackReport = { groups: 0, linears: 0 };
  const gone = new Set<Node>();
  for (const [x, group] of byInput) {
    if (group.length < 2) continue;
    const k = group[0].w.dims[0];
    if (group.some((l) => l.w.dims[0] !== k || l.w.dtype !== group[0].w.dtype)) continue;
    const sizes = group.map((l) => l.w.dims[1]);
    const base = `${group[0].node.name}/packed`;
    const w = g.addInitializer(`${base}.weight_int8`, concatColumns(group.map((l) => l.w)));
    const ws = g.addInitializer(
      `${base}.weight_scale`,
      tensor(
        "float32",
        [sizes.reduce((a, b) => a + b, 0)],
        concat1d(
          group.map((l) => l.scale),
          sizes,
        ),
      ),
    );
    const hasBias = group.some((l) => l.bias);
    const b = hasBias
      ? g.addInitializer(
          `${base}.bias`,
          tensor(
            "float32",
            [sizes.reduce((a, c) => a + c, 0)],
            concat1d(
              group.map((l) => l.bias),
              sizes,
            ),
          ),
        )
      : "";
    const packed = g.uniqueName(`${base}_out`);
    g.addNode(
      "DynamicQuantizeMatMul",
      b ? [x, w, ws, "", b] : [x, w, ws],
      {},
      {
        name: g.uniqueName(`${base}/DynamicQuantizeMatMul`),
        domain: MS,
        outputs: [packed],
      },
    );
    // One Split into every part: a projection read only by a last-axis Split of constant sizes hands its parts over.
    const splitSizes: number[] = [];
    const splitOutputs: string[] = [];
    for (const l of group) {
      const users = consumers.get(l.output) ?? [];
      const inner = users.length === 1 ? users[0] : undefined;
      const innerSizes = inner && innerSplitSizes(g, inner, l.output);
      if (inner && innerSizes && innerSizes.reduce((a, c) => a + c, 0) === l.w.dims[1]) {
        splitSizes.push(...innerSizes);
        splitOutputs.push(...inner.outputs);
        gone.add(inner);
      } else {
        splitSizes.push(l.w.dims[1]);
        splitOutputs.push(l.output);
      }
      gone.add(l.node);
    }
    g.addNode(
      "Split",
      [packed, g.constInts(splitSizes, `${base}/split`)],
      { axis: -1 },
      {
        name: g.uniqueName(`${base}/Split`),
        outputs: splitOutputs,
      },
    );
    report.groups++;
    report.linears += group.length;
  }
  if (report.groups > 0) {
    g.nodes = g.nodes.filter((n) => !gone.has(n));
    if (!g.extraOpsets.some((o) => o.domain === MS)) g.extraOpsets.push({ domain: MS, version: 1 });
    // The DynamicQuantizeLinears the packed nodes replaced are read by nothing now: cleanup drops them.
    g.toposort().cleanup();
  }
  return report;
}

/** The split sizes of `n` when it is a Split of `value` on its last axis with constant sizes (opset 13 form). */
function innerSplitSizes(g: Graph, n: Node, value: string): number[] | undefined {
  if (n.op !== "Split" || n.domain !== "" || n.inputs[0] !== value || n.outputs.some((o) => !o))
    return undefined;
  if (Number(n.attrs.axis?.value ?? 0) !== -1) return undefined;
  const t = n.inputs[1] ? g.initializers.get(n.inputs[1]) : undefined;
  if (!t || (t.dtype !== "int64" && t.dtype !== "int32")) return undefined;
  const sizes = toNumbers(t);
  return sizes.length === n.outputs.length ? sizes : undefined;
}
