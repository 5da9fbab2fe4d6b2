/**
 * Cross-layer weight sharing (ALBERT: one layer's weights reused by every layer) gated with **tied gates**: one
 * gate vector pair (rows, columns) per shared weight, multiplied in at every linear that reads it, so the
 * gradient of a tied gate is the sum over its uses (the graph autodiff sums the uses of one graph input) and a
 * closed gate removes that row or column from the one shared weight. Export keeps the sharing: every use plans
 * the same kept rows and columns, and surgery writes one pruned initializer that all uses read.
 *
 * Import (`unifySharedWeights`) makes sharing visible as one initializer *name*: torch writes later uses of a
 * shared parameter through Identity nodes (or, with constant folding off, a Transpose per use), which
 * `foldWeightTransforms` folds into several names of one tensor object. After it, the linears of a shared
 * weight are exactly the linears with the same `weight`, in the canonical graph and in any graph built from it.
 *
 * Still refused (`checkSharedWeights`), because one gate vector could not mean the same thing at every use:
 * a weight read by linears of different roles (a Q in one layer and a K in another, an encoder linear and a
 * head linear), with transposition (one use reads it [in, out], another [out, in]), in attention blocks whose
 * other projections are not shared alike (heads must be one structure), and a gated weight also read by
 * something that is not a linear (e.g. an embedding table a Gather reads: tied input/output embeddings).
 */
import type { Graph } from "../../core/onnx/graph";
import type { Tensor } from "../../core/onnx/tensor";
import type { AttentionBlock, FfnBlock } from "./blocks";
import { ImportError } from "./errors";
import type { LinearLayer } from "./linears";

/** What the checks read of a recognised encoder (recognize.ts's Recognition, which imports this module). */
export interface RecognisedLinears {
  linears: LinearLayer[];
  attention: AttentionBlock[];
  ffn: FfnBlock[];
  encoderLinears: LinearLayer[];
  otherEncoderLinears: LinearLayer[];
  headLinears: LinearLayer[];
}

/** A weight read by several linear layers, as `sluice inspect` reports it. */
export interface SharedWeight {
  weight: string;
  /** The linears reading it, in graph order; the first names its gates in checkpoints. */
  uses: string[];
  role: string;
}

/**
 * Gives every initializer that is another name of the same tensor object one name (the one its first reader
 * in graph order uses), so a shared weight is stored and found once. Returns how many names were merged.
 */
export function unifySharedWeights(g: Graph): number {
  g.toposort();
  const first = new Map<Tensor, string>();
  const rename = new Map<string, string>();
  for (const n of g.nodes)
    for (const i of n.inputs) {
      const t = i ? g.initializers.get(i) : undefined;
      if (!t || rename.has(i)) continue;
      const name = first.get(t);
      if (name === undefined) first.set(t, i);
      else if (name !== i) rename.set(i, name);
    }
  if (rename.size === 0) return 0;
  for (const n of g.nodes) n.inputs = n.inputs.map((i) => rename.get(i) ?? i);
  for (const o of g.outputs) if (rename.has(o.name)) o.name = rename.get(o.name)!;
  for (const alias of rename.keys()) g.initializers.delete(alias);
  return rename.size;
}

/** Linears grouped by the weight they read, groups and uses in graph order. */
export function usesByWeight(linears: readonly LinearLayer[]): Map<string, LinearLayer[]> {
  const m = new Map<string, LinearLayer[]>();
  for (const l of linears) {
    const list = m.get(l.weight);
    if (list) list.push(l);
    else m.set(l.weight, [l]);
  }
  return m;
}

/**
 * One entry per weight among `selected`: its first use, carrying `uses` (every linear of `all` reading that
 * weight) when there are several. Selecting some uses of a shared weight but not others is an error.
 */
export function tieSharedLayers(
  selected: readonly LinearLayer[],
  all: readonly LinearLayer[],
): LinearLayer[] {
  const byWeight = usesByWeight(all);
  const chosen = new Set(selected.map((l) => l.node));
  const out: LinearLayer[] = [];
  const seen = new Set<string>();
  for (const l of selected) {
    if (seen.has(l.weight)) continue;
    seen.add(l.weight);
    const uses = byWeight.get(l.weight) ?? [l];
    if (uses.length === 1) {
      out.push(l);
      continue;
    }
    const left = uses.filter((u) => !chosen.has(u.node));
    if (left.length > 0)
      throw new Error(
        `layer selection: ${uses[0].node} shares weight ${l.weight} with ${uses.length - 1} other linears, and ${left.map((u) => u.node).join(", ")} ${left.length === 1 ? "is" : "are"} not selected: a shared weight has one tied gate and is gated at all of its uses or at none`,
      );
    out.push({ ...uses[0], uses });
  }
  return out;
}

/** The uses a gated layer stands for: itself, or every linear of its shared weight. */
export const usesOf = (l: LinearLayer): LinearLayer[] => l.uses ?? [l];

/**
 * The gated layers named by `nodes` (a checkpoint's layers), each with `uses` when its weight is shared: the
 * tied gate of that weight applies at all of them. Two names for one shared weight are an error.
 */
export function tiedLayersByName(nodes: readonly string[], all: readonly LinearLayer[]): LinearLayer[] {
  const byNode = new Map(all.map((l) => [l.node, l]));
  const byWeight = usesByWeight(all);
  const named = new Map<string, string>();
  return nodes.map((node) => {
    const layer = byNode.get(node);
    if (!layer)
      throw new Error(`checkpoint gates layer '${node}', which is not a linear layer of the base model`);
    const other = named.get(layer.weight);
    if (other)
      throw new Error(
        `checkpoint gates both '${other}' and '${node}', which share weight ${layer.weight}: a shared weight has one tied gate`,
      );
    named.set(layer.weight, node);
    const uses = byWeight.get(layer.weight)!;
    return uses.length > 1 ? { ...layer, uses } : layer;
  });
}

/** A map keyed by gated layer, extended to every use of each layer's shared weight (same value). */
export function expandToUses<T>(
  byLayer: ReadonlyMap<string, T>,
  all: readonly LinearLayer[],
): Map<string, T> {
  const out = new Map<string, T>();
  for (const l of tiedLayersByName([...byLayer.keys()], all))
    for (const u of usesOf(l)) out.set(u.node, byLayer.get(l.node)!);
  return out;
}

/** What each linear is in the recognised encoder, for comparing the uses of one weight. */
function roles(rec: RecognisedLinears): Map<string, { role: string; block?: string }> {
  const m = new Map<string, { role: string; block?: string }>();
  for (const a of rec.attention) {
    // The block's structure: its four weights and heads. Uses of a shared weight must sit in equal blocks.
    const block = `${a.q.weight}|${a.k.weight}|${a.v.weight}|${a.o.weight}|${a.heads}x${a.headDim}`;
    m.set(a.q.node, { role: "attention.q", block });
    m.set(a.k.node, { role: "attention.k", block });
    m.set(a.v.node, { role: "attention.v", block });
    m.set(a.o.node, { role: "attention.output", block });
  }
  for (const f of rec.ffn) {
    const block = `${f.up.weight}|${f.down.weight}`;
    m.set(f.up.node, { role: "ffn.up", block });
    m.set(f.down.node, { role: "ffn.down", block });
  }
  for (const l of rec.otherEncoderLinears) m.set(l.node, { role: "linear" });
  for (const l of rec.headLinears) m.set(l.node, { role: "head" });
  return m;
}

/**
 * Checks that every shared weight can carry one tied gate (see the file comment) and lists the shared ones.
 * Throws ImportError naming the weight and its uses otherwise.
 */
export function checkSharedWeights(g: Graph, rec: RecognisedLinears): SharedWeight[] {
  const role = roles(rec);
  const linearNodes = new Set(rec.linears.map((l) => l.node));
  const encoder = new Set(rec.encoderLinears.map((l) => l.node));
  const shared: SharedWeight[] = [];
  const list = (uses: LinearLayer[]) =>
    `${uses
      .slice(0, 3)
      .map((u) => u.node)
      .join(", ")}${uses.length > 3 ? ", ..." : ""}`;
  for (const [weight, uses] of usesByWeight(rec.linears)) {
    if (uses.some((u) => encoder.has(u.node))) {
      const other = g.nodes.find(
        (n) => n.inputs.includes(weight) && !(linearNodes.has(n.name) && n.inputs[1] === weight),
      );
      if (other)
        throw new ImportError(
          `weight ${weight} is shared by the linear ${uses[0].node} and ${other.op} node ${other.name}, which is not a linear layer: a gate on the linear cannot apply to the other use (tied input/output embeddings are not gated)`,
        );
    }
    if (uses.length === 1) continue;
    const what = `weight ${weight} is shared by ${uses.length} linear layers (${list(uses)})`;
    if (new Set(uses.map((u) => u.weightTransposed)).size > 1)
      throw new ImportError(
        `${what} with transposition (read as [in, out] by one and [out, in] by another): tied gates need the same rows and columns at every use`,
      );
    const r = uses.map((u) => role.get(u.node) ?? { role: "linear" });
    const roleSet = new Set(r.map((x) => x.role));
    if (roleSet.has("head") && roleSet.size > 1)
      throw new ImportError(
        `${what}, some in the encoder and some in the head: the head is never gated, so its weight cannot share a gate`,
      );
    if (roleSet.size > 1)
      throw new ImportError(
        `${what} in different roles (${[...roleSet].join(", ")}): one tied gate cannot prune each role alike`,
      );
    if (new Set(r.map((x) => x.block)).size > 1)
      throw new ImportError(
        `${what} in blocks whose other weights or heads are not shared alike: the kept attention heads and FFN neurons of a shared weight must be the same at every use`,
      );
    shared.push({ weight, uses: uses.map((u) => u.node), role: r[0].role });
  }
  return shared;
}

/** `n` shared weights as inspect states them: layers (attention blocks) reused, and how often. */
export function describeSharing(shared: readonly SharedWeight[], rec: RecognisedLinears): string | undefined {
  if (shared.length === 0) return undefined;
  const sharedWeights = new Set(shared.map((s) => s.weight));
  const layers = new Map<string, number>();
  for (const a of rec.attention) {
    if (!sharedWeights.has(a.q.weight)) continue;
    const key = a.q.weight;
    layers.set(key, (layers.get(key) ?? 0) + 1);
  }
  const uses = shared.reduce((s, w) => s + w.uses.length, 0);
  const layerText = [...layers.values()].map((n) => `1 shared layer used ${n}×`).join(", ");
  return `${layerText ? `${layerText}; ` : ""}${shared.length} shared weights read by ${uses} linears, one tied gate each (its row and column gates apply at every use; export keeps one pruned copy)`;
}
