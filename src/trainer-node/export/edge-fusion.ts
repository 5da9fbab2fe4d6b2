/**
 * Contrib-op fusions for the edge that onnxruntime's own optimiser does not apply to these graphs at level
 * "extended" (it leaves them as Add + LayerNormalization and as Reshape/Transpose/MatMul/Softmax chains), applied
 * by export/optimize.ts after onnxruntime's fusions and checked with them in onnxruntime-web's wasm build:
 *
 * - `SkipLayerNormalization`: LayerNormalization(Add(a, b)) of two activations (the residual adds of every
 *   block), with a preceding bias Add folded in as its bias. Measured in onnxruntime-web wasm: the fused op is
 *   faster than the two it replaces in a micro-benchmark in wasm in Node (9 × [1, 128, 256]: 2.2 vs 6.1 ms at load ~5).
 * - `MultiHeadAttention`: one attention chain as export's surgery writes it — Reshape [0, 0, H, d] + Transpose of
 *   Q, K (transposed) and V, (Fused)MatMul with the scale as alpha, an additive mask, Softmax, MatMul with V,
 *   Transpose + Reshape back — becomes one op (Q/K and V may have different head sizes; the scale is the chain's
 *   alpha, so a head pruned smaller keeps its trained 1/√dh). The additive mask is passed as attention_bias,
 *   broadcast once per mask to [B, 1, S, S] (self-attention: the mask's last dim is the sequence).
 *
 * Anything that does not match exactly is left as it is; the caller checks the result in wasm.
 */
import type { Graph, Node } from "../../core/onnx/graph";
import { toNumbers } from "../../core/onnx/tensor";

const MS = "com.microsoft";

const attr = (n: Node, name: string) => n.attrs[name]?.value;
const ints = (n: Node, name: string) => (attr(n, name) as number[] | undefined)?.map(Number);
const same = (a: number[] | undefined, b: number[]) =>
  !!a && a.length === b.length && a.every((v, i) => v === b[i]);

export interface ContribFusionReport {
  skipLayerNorm: number;
  multiHeadAttention: number;
}

/** Applies the fusions to `g` in place and says how many of each it made. */
export function fuseContribOps(g: Graph): ContribFusionReport {
  const report = { skipLayerNorm: fuseSkipLayerNorm(g), multiHeadAttention: fuseAttention(g) };
  if (report.skipLayerNorm + report.multiHeadAttention > 0) {
    if (!g.extraOpsets.some((o) => o.domain === MS)) g.extraOpsets.push({ domain: MS, version: 1 });
    g.toposort();
    g.cleanup();
  }
  return report;
}

function context(g: Graph) {
  const producers = g.producers();
  const consumers = g.consumers();
  const outputs = new Set(g.outputs.map((o) => o.name));
  /** The value's producer, when this node is its only reader (so the producer may be absorbed). */
  const soleProducer = (value: string, op: string, domain = "") => {
    const p = producers.get(value);
    if (!p || p.op !== op || p.domain !== domain) return undefined;
    if (outputs.has(value) || (consumers.get(value)?.length ?? 0) !== 1 || p.outputs.length !== 1)
      return undefined;
    return p;
  };
  const isConst = (v: string) => g.initializers.has(v);
  const constInts = (v: string) => {
    const t = g.initializers.get(v);
    return t && (t.dtype === "int64" || t.dtype === "int32") ? toNumbers(t) : undefined;
  };
  return { producers, consumers, soleProducer, isConst, constInts };
}

const drop = (g: Graph, nodes: Node[]) => {
  const gone = new Set(nodes);
  g.nodes = g.nodes.filter((n) => !gone.has(n));
};

function fuseSkipLayerNorm(g: Graph): number {
  const c = context(g);
  let n = 0;
  for (const ln of g.nodes.filter((x) => x.op === "LayerNormalization" && x.domain === "")) {
    const axis = Number(attr(ln, "axis") ?? -1);
    if (axis !== -1 || ln.outputs.filter(Boolean).length !== 1) continue;
    const add = c.soleProducer(ln.inputs[0], "Add");
    if (!add || add.inputs.some(c.isConst)) continue;
    // An embedding sum (a Gather of a table) may broadcast a [1, S, D] operand: not the residual adds meant here.
    if (
      add.inputs.some((v) => {
        const p = c.producers.get(v);
        return !p || (p.op === "Gather" && c.isConst(p.inputs[0]));
      })
    )
      continue;
    let [input, skip] = add.inputs;
    const absorbed = [add, ln];
    // Add(MatMul(x, W), b) feeding the residual add: b becomes the fused op's bias.
    let bias = "";
    for (const [k, v] of [input, skip].entries()) {
      const biasAdd = c.soleProducer(v, "Add");
      const b = biasAdd?.inputs.find(c.isConst);
      const t = b && g.initializers.get(b);
      if (!biasAdd || !t || t.dims.length !== 1 || t.dtype !== "float32") continue;
      const x = biasAdd.inputs.find((i) => i !== b)!;
      if (!c.producers.has(x) && !g.inputs.some((i) => i.name === x)) continue;
      if (k === 0) input = x;
      else skip = x;
      bias = b!;
      absorbed.push(biasAdd);
      break;
    }
    const inputs = [input, skip, ln.inputs[1], ln.inputs[2] ?? ""];
    if (bias) inputs[3] ||= zerosLike(g, ln.inputs[1]);
    if (bias) inputs.push(bias);
    while (inputs.at(-1) === "") inputs.pop();
    const at = g.nodes.indexOf(ln);
    drop(g, absorbed);
    const node: Node = {
      name: g.uniqueName(`${ln.name}/SkipLayerNormalization`),
      op: "SkipLayerNormalization",
      domain: MS,
      inputs,
      outputs: [ln.outputs[0]],
      attrs: { epsilon: { type: "float", value: Number(attr(ln, "epsilon") ?? 1e-5) } },
    };
    g.nodes.splice(Math.min(at, g.nodes.length), 0, node);
    n++;
  }
  return n;
}

/** A zero beta of the gain's length (SkipLayerNormalization's bias input comes after beta). */
function zerosLike(g: Graph, gain: string): string {
  const t = g.initializers.get(gain)!;
  return g.constant(
    { dtype: "float32", dims: t.dims, data: new Float32Array(t.data.length) },
    `${gain}_zero_beta`,
  );
}

function fuseAttention(g: Graph): number {
  const c = context(g);
  const biasOf = new Map<string, string>();
  let n = 0;
  for (const softmax of g.nodes.filter((x) => x.op === "Softmax" && x.domain === "")) {
    if (Number(attr(softmax, "axis") ?? -1) !== -1) continue;
    // Scores + mask.
    const add = c.soleProducer(softmax.inputs[0], "Add");
    if (!add) continue;
    let scoresNode: Node | undefined;
    let mask = "";
    for (const [k, v] of add.inputs.entries()) {
      const p = c.soleProducer(v, "FusedMatMul", MS) ?? c.soleProducer(v, "MatMul");
      if (p) {
        scoresNode = p;
        mask = add.inputs[1 - k];
        break;
      }
    }
    if (!scoresNode || !mask) continue;
    let scale = 1;
    if (scoresNode.op === "FusedMatMul") {
      if (
        ["transA", "transB", "transBatchA", "transBatchB"].some(
          (a) => Number(attr(scoresNode!, a) ?? 0) !== 0,
        )
      )
        continue;
      scale = Number(attr(scoresNode, "alpha") ?? 1);
    }
    // Heads: Transpose(Reshape(x, [0, 0, H, d])) of Q, K and V.
    const heads = (value: string, perm: number[]) => {
      const t = c.soleProducer(value, "Transpose");
      if (!t || !same(ints(t, "perm"), perm)) return undefined;
      const r = c.soleProducer(t.inputs[0], "Reshape");
      const shape = r && c.constInts(r.inputs[1]);
      if (
        !r ||
        !shape ||
        shape.length !== 4 ||
        shape[0] !== 0 ||
        shape[1] !== 0 ||
        Number(attr(r, "allowzero") ?? 0)
      )
        return undefined;
      return { source: r.inputs[0], heads: shape[2], size: shape[3], nodes: [t, r] };
    };
    const q = heads(scoresNode.inputs[0], [0, 2, 1, 3]);
    const k = heads(scoresNode.inputs[1], [0, 2, 3, 1]);
    const probsUse = c.consumers.get(softmax.outputs[0]) ?? [];
    const pv =
      probsUse.length === 1 && probsUse[0].op === "MatMul" && probsUse[0].inputs[0] === softmax.outputs[0];
    if (!q || !k || !pv || q.heads !== k.heads || q.size !== k.size) continue;
    const pvNode = probsUse[0];
    const v = heads(pvNode.inputs[1], [0, 2, 1, 3]);
    if (!v || v.heads !== q.heads) continue;
    const ctxUse = c.consumers.get(pvNode.outputs[0]) ?? [];
    const back = ctxUse.length === 1 && ctxUse[0].op === "Transpose" ? ctxUse[0] : undefined;
    if (!back || !same(ints(back, "perm"), [0, 2, 1, 3])) continue;
    const mergeUse = c.consumers.get(back.outputs[0]) ?? [];
    const merge = mergeUse.length === 1 && mergeUse[0].op === "Reshape" ? mergeUse[0] : undefined;
    const mergeShape = merge && c.constInts(merge.inputs[1]);
    if (!merge || !same(mergeShape, [0, 0, v.heads * v.size])) continue;
    // The mask broadcast to [B, 1, S, S] once (MultiHeadAttention's attention_bias is [B|1, N|1, S, T]).
    let bias = biasOf.get(mask);
    if (!bias) {
      const seq = g.op("Slice", [
        g.op("Shape", [mask]),
        g.constInts([3], "sluice_mha_start"),
        g.constInts([4], "sluice_mha_end"),
      ]);
      const shape = g.op(
        "Concat",
        [g.constInts([1, 1], "sluice_mha_ones"), seq, g.constInts([1], "sluice_mha_one")],
        {
          axis: 0,
        },
      );
      bias = g.op("Expand", [mask, shape], {}, { name: g.uniqueName(`${softmax.name}/attention_bias`) });
      biasOf.set(mask, bias);
    }
    const at = g.nodes.indexOf(merge);
    drop(g, [...q.nodes, ...k.nodes, ...v.nodes, scoresNode, add, softmax, pvNode, back, merge]);
    g.nodes.splice(Math.min(at, g.nodes.length), 0, {
      name: g.uniqueName(`${softmax.name}/MultiHeadAttention`),
      op: "MultiHeadAttention",
      domain: MS,
      inputs: [q.source, k.source, v.source, "", "", bias],
      outputs: [merge.outputs[0]],
      attrs: { num_heads: { type: "int", value: q.heads }, scale: { type: "float", value: scale } },
    });
    n++;
  }
  return n;
}
