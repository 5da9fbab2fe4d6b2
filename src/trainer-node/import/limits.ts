/**
 * The longest sequence an imported encoder accepts, as its graph proves it. Position embeddings are a table
 * gathered with indices the graph computes: a slice of a position-id buffer (BERT), `cumsum(ids != pad) + pad`
 * (RoBERTa, whose 514-row table takes 512 tokens), or an arange. Rather than match each exporter's arithmetic,
 * the index computation alone is cut out of the graph and run in onnxruntime on a short probe; the largest
 * index it produces for L tokens gives the table's offset, and rows − offset is the limit.
 */
import * as ort from "onnxruntime-node";
import { encodeModel } from "../../core/onnx/codec";
import { Graph } from "../../core/onnx/graph";
import { inferShapes } from "../../core/onnx/shape-inference";
import { ImportError } from "./errors";
import { findEmbeddings } from "./recognize";

const PROBE_LENGTH = 8;

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

/** Undefined when no table is gathered with computed indices (nothing limits the length but memory). */
export async function maxSequenceLength(g: Graph): Promise<number | undefined> {
  const lookups = findEmbeddings(g).filter((e) => e.input === undefined);
  const word = findEmbeddings(g).find((e) => e.input === "input_ids");
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
    // tf2onnx's position ids are tf.range's int32; declare what the graph computes, or the probe cannot run.
    const dtype = inferShapes(g).get(gather.inputs[1])?.dtype ?? "int64";
    sub.outputs = [{ name: gather.inputs[1], dtype }];
    // Ids that are no special token's: the last row of the word table.
    const id = BigInt((word?.rows ?? 2) - 1);
    const feeds = Object.fromEntries(
      sub.inputs.map((i) => {
        const value = i.name === "input_ids" ? id : i.name === "attention_mask" ? 1n : 0n;
        return [
          i.name,
          new ort.Tensor("int64", new BigInt64Array(PROBE_LENGTH).fill(value), [1, PROBE_LENGTH]),
        ];
      }),
    );
    let indices: ArrayLike<bigint | number>;
    try {
      const session = await ort.InferenceSession.create(encodeModel(sub));
      try {
        indices = (await session.run(feeds))[gather.inputs[1]].data as BigInt64Array;
      } finally {
        await session.release();
      }
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

/**
 * The sequence length a run uses: a fixed-length export's length; otherwise `requested`, lowered to what the
 * position table takes (with a note) unless the user asked for more explicitly (then a UsageError-worthy
 * message is thrown as ImportError naming `flag`).
 */
export async function resolveSequenceLength(
  model: { graph: Graph; report: { fixedSequenceLength?: number }; file: string },
  requested: number,
  explicit: boolean,
  flag: string,
): Promise<{ seqLen: number; note?: string }> {
  const fixed = model.report.fixedSequenceLength;
  if (fixed !== undefined) {
    if (explicit && requested !== fixed)
      throw new ImportError(
        `${flag}: ${model.file} takes exactly ${fixed} tokens (fixed in its inputs), got ${requested}`,
      );
    return { seqLen: fixed };
  }
  const limit = await maxSequenceLength(model.graph);
  if (limit === undefined || requested <= limit) return { seqLen: requested };
  if (explicit)
    throw new ImportError(
      `${flag}: ${model.file} takes at most ${limit} tokens (its position-embedding table), got ${requested}`,
    );
  return { seqLen: limit, note: `${model.file} takes at most ${limit} tokens: using ${flag} ${limit}` };
}
