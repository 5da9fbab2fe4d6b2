/**
 * The longest sequence an imported encoder accepts, as its graph proves it (core/onnx/embeddings.ts
 * `positionLimit`, run here on onnxruntime-node).
 */
import * as ort from "onnxruntime-node";
import { positionLimit } from "../../core/onnx/embeddings";
import type { Graph } from "../../core/onnx/graph";
import { ImportError } from "./errors";

/** Undefined when no table is gathered with computed indices (nothing limits the length but memory). */
export async function maxSequenceLength(g: Graph): Promise<number | undefined> {
  return positionLimit(g, async (model, feeds, length, output) => {
    const session = await ort.InferenceSession.create(model);
    try {
      const inputs = Object.fromEntries(
        Object.entries(feeds).map(([name, data]) => [name, new ort.Tensor("int64", data, [1, length])]),
      );
      return (await session.run(inputs))[output].data as BigInt64Array;
    } finally {
      await session.release();
    }
  });
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
