/**
 * Embedding lookups of an encoder graph and the limits they impose on its inputs: the rows of a table indexed
 * by a graph input (token ids, token types) bound that input's values, and the position table bounds the
 * sequence length. Shared by the trainer (inspect, export) and the gateway (which validates requests against
 * them before onnxruntime runs), each running the position probe on its own onnxruntime build.
 */
import { encodeModel } from "./codec";
import { Graph } from "./graph";
import { inferShapes } from "./shape-inference";

export interface EmbeddingLookup {
  /** Gather node and its table (initializer) [rows, width]. */
  node: string;
  table: string;
  rows: number;
  width: number;
  /** Graph input whose ids it looks up (through Cast/Unsqueeze/...), if any. */
  input?: string;
}

const INDEX_PASS = new Set(["Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten"]);

/** The graph input a value is derived from through index-preserving ops (Cast, Unsqueeze, ...), if any. */
export function sourceInput(g: Graph, value: string, producers = g.producers()): string | undefined {
  const inputs = new Set(g.inputs.map((i) => i.name));
  let v = value;
  for (let i = 0; i < 8; i++) {
    if (inputs.has(v)) return v;
    const p = producers.get(v);
    if (!p || !INDEX_PASS.has(p.op)) return undefined;
    v = p.inputs[0];
  }
  return undefined;
}

/** Float-table Gathers whose indices come from a graph input (word, position, token-type embeddings). */
export function findEmbeddings(g: Graph): EmbeddingLookup[] {
  const producers = g.producers();
  const out: EmbeddingLookup[] = [];
  for (const n of g.nodes) {
    if (n.op !== "Gather" || (n.attrs.axis?.value ?? 0) !== 0) continue;
    const t = g.initializers.get(n.inputs[0]);
    if (t?.dtype !== "float32" || t.dims.length !== 2) continue;
    out.push({
      node: n.name,
      table: n.inputs[0],
      rows: t.dims[0],
      width: t.dims[1],
      input: sourceInput(g, n.inputs[1], producers),
    });
  }
  return out.sort((a, b) => b.rows - a.rows);
}

/** The nodes `value` is computed by (in graph order). */
function ancestors(g: Graph, value: string): Graph["nodes"] {
  const producers = g.producers();
  const keep = new Set<Graph["nodes"][number]>();
  const stack = [value];
  while (stack.length > 0) {
    const p = producers.get(stack.pop()!);
    if (!p || keep.has(p)) continue;
    keep.add(p);
    stack.push(...p.inputs.filter((i) => i !== ""));
  }
  return g.nodes.filter((n) => keep.has(n));
}

/**
 * Runs a small int64 model on `[1, length]` feeds and returns output `output`'s data; throws when it cannot.
 * The trainer passes onnxruntime-node, the gateway onnxruntime-web.
 */
export type RunProbe = (
  model: Uint8Array,
  feeds: Record<string, BigInt64Array>,
  length: number,
  output: string,
) => Promise<ArrayLike<bigint | number>>;

const PROBE_LENGTH = 8;

/**
 * The longest sequence the graph accepts, as it proves it. Position embeddings are a table gathered with
 * indices the graph computes: a slice of a position-id buffer (BERT), `cumsum(ids != pad) + pad` (RoBERTa,
 * whose 514-row table takes 512 tokens), or an arange. Rather than match each exporter's arithmetic, the index
 * computation alone is cut out of the graph and run on a short probe; the largest index it produces for L
 * tokens gives the table's offset, and rows − offset is the limit. Undefined when no table is gathered with
 * computed indices (nothing limits the length but memory).
 */
export async function positionLimit(g: Graph, run: RunProbe): Promise<number | undefined> {
  const embeddings = findEmbeddings(g);
  const lookups = embeddings.filter((e) => e.input === undefined);
  const word = embeddings.find((e) => e.input === "input_ids");
  let limit: number | undefined;
  for (const lookup of lookups) {
    const gather = g.nodes.find((n) => n.name === lookup.node)!;
    const nodes = ancestors(g, gather.inputs[1]);
    const sub = new Graph({ name: `${g.name}/positions`, opset: g.opset });
    sub.extraOpsets = g.extraOpsets;
    sub.nodes = nodes;
    const used = new Set(nodes.flatMap((n) => n.inputs));
    sub.inputs = g.inputs.filter((i) => used.has(i.name));
    for (const name of used) {
      const t = g.initializers.get(name);
      if (t) sub.initializers.set(name, t);
    }
    // tf2onnx's position ids are tf.range's int32: declare what the graph computes, or the probe cannot run.
    const dtype = inferShapes(g).get(gather.inputs[1])?.dtype ?? "int64";
    sub.outputs = [{ name: gather.inputs[1], dtype }];
    // Ids that are no special token's: the last row of the word table.
    const id = BigInt((word?.rows ?? 2) - 1);
    const feeds = Object.fromEntries(
      sub.inputs.map((i) => {
        const value = i.name === "input_ids" ? id : i.name === "attention_mask" ? 1n : 0n;
        return [i.name, new BigInt64Array(PROBE_LENGTH).fill(value)];
      }),
    );
    let indices: ArrayLike<bigint | number>;
    try {
      indices = await run(encodeModel(sub), feeds, PROBE_LENGTH, gather.inputs[1]);
    } catch {
      continue; // not computable from the ids alone (no limit proven by this table)
    }
    // One index per position (PROBE_LENGTH of them, or the fixed length an export folded them to).
    const n = indices.length;
    let max = 0;
    for (let i = 0; i < n; i++) max = Math.max(max, Number(indices[i]));
    if (n === 0 || max < n - 1) continue;
    const rows = lookup.rows - (max - (n - 1));
    limit = Math.min(limit ?? rows, rows);
  }
  return limit;
}
