/**
 * What a (canonical) encoder graph is made of, read from its dataflow: linear layers, attention blocks, FFNs
 * (blocks.ts), the encoder's output (the last block's residual + LayerNorm), the task head (every linear after
 * that point: pooler, classifier, QA/token heads, MLM decoders), and the embedding lookups. `inspect`,
 * `train` and `export` all read a model through this one function.
 */
import { type EmbeddingLookup, findEmbeddings } from "../../core/onnx/embeddings";
import type { Graph, Node } from "../../core/onnx/graph";
import { type AttentionBlock, analyzeEncoder, type FfnBlock } from "./blocks";
import { ImportError } from "./errors";
import { type LayerSelector, type LinearLayer, matches } from "./linears";
import { tieSharedLayers } from "./shared-weights";

// The embedding lookups live in core (the gateway bounds its inputs with them); re-exported for the trainer.
export { type EmbeddingLookup, findEmbeddings, sourceInput } from "../../core/onnx/embeddings";

export interface Recognition {
  linears: LinearLayer[];
  attention: AttentionBlock[];
  ffn: FfnBlock[];
  /** The value after the last encoder block ([batch, seq, hidden]). */
  encoderOutput: string;
  /** Linears before the encoder output: what gates go on by default. */
  encoderLinears: LinearLayer[];
  /** Linears after it (pooler, classifier, QA/token heads): never gated unless asked. */
  headLinears: LinearLayer[];
  /** Encoder linears outside any attention/FFN block (e.g. ELECTRA's embeddings_project): gated per layer. */
  otherEncoderLinears: LinearLayer[];
  /** Gathers of float tables indexed by graph inputs; the largest is the word embedding. */
  embeddings: EmbeddingLookup[];
}

/** Ops a value may pass through between the last FFN and the encoder output: residual add and LayerNorm. */
const NORM_OPS = new Set([
  "Add",
  "Sub",
  "Mul",
  "Div",
  "Pow",
  "Sqrt",
  // tf.nn.batch_normalization's rsqrt, which tf2onnx writes as Sqrt + Reciprocal.
  "Reciprocal",
  "LayerNormalization",
  "Identity",
  "Cast",
]);

/** ReduceMean over the feature axis (decomposed LayerNorm), not over the sequence (pooling). */
function reducesFeatures(g: Graph, n: Node): boolean {
  if (n.op !== "ReduceMean") return false;
  const axes =
    (n.attrs.axes?.value as number[] | undefined) ??
    Array.from(g.initializers.get(n.inputs[1])?.data ?? [], Number);
  return axes.length === 1 && (axes[0] === -1 || axes[0] === 2);
}

/**
 * The encoder output: the last value, after the last block's output projection, that every path to a graph
 * output passes through while only the residual Add and LayerNorm arithmetic (on constants and values of this
 * stretch) has been applied. Pooling (Gather/Slice of the first token), heads and masks end the stretch.
 */
function encoderOutputOf(g: Graph, lastLinear: LinearLayer): string {
  const consumers = g.consumers();
  const outputs = new Set(g.outputs.map((o) => o.name));
  const start = lastLinear.output;
  // Does removing value `cut` disconnect `start` from every graph output?
  const isCut = (cut: string) => {
    const seen = new Set<string>();
    const stack = [start];
    while (stack.length) {
      const v = stack.pop()!;
      if (v === cut || seen.has(v)) continue;
      seen.add(v);
      if (outputs.has(v)) return false;
      for (const n of consumers.get(v) ?? []) for (const o of n.outputs) if (o) stack.push(o);
    }
    return true;
  };
  const region = new Set([start]);
  const stretch = [start];
  let residualSeen = false;
  const from = g.nodes.findIndex((n) => n.outputs.includes(start));
  for (const n of g.nodes.slice(from + 1)) {
    if (!n.inputs.some((i) => region.has(i))) continue;
    if (!NORM_OPS.has(n.op) && !reducesFeatures(g, n)) continue;
    const foreign = n.inputs.filter((i) => i && !region.has(i) && !g.initializers.has(i));
    // The first Add may bring the residual (the block's input); afterwards only this stretch's own values.
    if (reducesFeatures(g, n)) foreign.length = 0;
    if (foreign.length > 0) {
      if (n.op !== "Add" || residualSeen || foreign.length !== 1) continue;
      residualSeen = true;
    }
    for (const o of n.outputs)
      if (o) {
        region.add(o);
        stretch.push(o);
      }
  }
  for (let i = stretch.length - 1; i >= 0; i--) if (isCut(stretch[i])) return stretch[i];
  return start;
}

/** Reachable values from `from` (forward). */
function downstream(g: Graph, from: string): Set<string> {
  const consumers = g.consumers();
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    for (const n of consumers.get(v) ?? []) for (const o of n.outputs) if (o) stack.push(o);
  }
  return seen;
}

/** Recognises the encoder; throws ImportError when there is no transformer encoder to gate. */
export function recognizeEncoder(g: Graph): Recognition {
  const { linears, attention, ffn } = analyzeEncoder(g);
  const embeddings = findEmbeddings(g);
  if (attention.length === 0 || ffn.length === 0)
    throw new ImportError(
      `no transformer encoder block recognised (${attention.length} self-attention blocks, ${ffn.length} FFNs among ${linears.length} linear layers): ` +
        "expected Q/K/V linears → MatMul(Q, Kᵀ) → scale/mask → Softmax → MatMul(·, V) → output linear, and linear → activation → linear",
    );
  const order = new Map(g.nodes.map((n, i) => [n.name, i]));
  const blockLinears = [
    ...attention.flatMap((a) => [a.q, a.k, a.v, a.o]),
    ...ffn.flatMap((f) => [f.up, f.down]),
  ];
  const last = blockLinears.reduce((a, b) => (order.get(b.node)! > order.get(a.node)! ? b : a));
  const encoderOutput = encoderOutputOf(g, last);
  const after = downstream(g, encoderOutput);
  const headLinears = linears.filter((l) => after.has(l.input));
  const encoderLinears = linears.filter((l) => !after.has(l.input));
  const inBlock = new Set(blockLinears.map((l) => l.node));
  return {
    linears,
    attention,
    ffn,
    encoderOutput,
    encoderLinears,
    headLinears,
    otherEncoderLinears: encoderLinears.filter((l) => !inBlock.has(l.node)),
    embeddings,
  };
}

/**
 * The default gate set: every encoder linear (attention Q, K, V, output; FFN in, out; others before the encoder
 * output), never the head. `include` patterns choose among all linears instead (so a head can be gated on
 * request); `exclude` removes layers from either set. A shared weight is one gated layer (its first use, with
 * `uses`), selected at all of its uses or at none.
 */
export function selectGatedLayers(graph: Graph, selector: LayerSelector = {}): LinearLayer[] {
  const rec = recognizeEncoder(graph);
  const exclude = selector.exclude ?? [];
  const selected = selector.include?.length
    ? rec.linears.filter((l) => matches(l.node, selector.include!) && !matches(l.node, exclude))
    : rec.encoderLinears.filter((l) => !matches(l.node, exclude));
  return tieSharedLayers(selected, rec.linears);
}
