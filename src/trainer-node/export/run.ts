/**
 * Running encoders on token batches with onnxruntime-node: feeds built from a graph's inputs, and a synthetic
 * batch (seeded random ids with padding) for checks when no evaluation data is given.
 */
import * as ort from "onnxruntime-node";
import type { Graph } from "../../core/onnx/graph";
import { Rng } from "../../core/random";
import { findEmbeddings } from "../import/recognize";

/** Token ids and mask, row-major [batch, seqLen] (the shape core/tokenizer's EncodedBatch has). */
export interface TokenBatch {
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  /** Token type (segment) ids of sentence pairs; absent: all 0 (single texts). */
  tokenTypeIds?: BigInt64Array;
  batch: number;
  seqLen: number;
}

/**
 * An integer feed in the element type the model's input declares: int64 as given, int32 narrowed (ids,
 * masks and token types are small, so nothing is lost). Anything else is an error naming the input.
 */
export function intFeed(
  input: { name: string; dtype: string },
  data: BigInt64Array,
  dims: number[],
): ort.Tensor {
  if (input.dtype === "int64") return new ort.Tensor("int64", data, dims);
  if (input.dtype === "int32") return new ort.Tensor("int32", Int32Array.from(data, Number), dims);
  throw new Error(`model input '${input.name}' is ${input.dtype}; token inputs must be int64 or int32`);
}

/** Rows of the word-embedding table: the largest Gather table indexed by `input_ids` (fallback: 2). */
export function vocabSizeOf(g: Graph): number {
  return findEmbeddings(g).find((e) => e.input === "input_ids")?.rows ?? 2;
}

/** The sequence length an export fixed in its inputs' shapes (tf2onnx-style), if any. */
export function fixedSequenceOf(g: Pick<Graph, "inputs">): number | undefined {
  const d = g.inputs.find((i) => i.name === "input_ids")?.shape?.[1];
  return typeof d === "number" && d > 0 ? d : undefined;
}

/** A seeded batch of random ids; with `padded`, rows have random lengths (at least 2) and zero-masked tails. */
export function syntheticBatch(
  vocabSize: number,
  batch: number,
  seqLen: number,
  seed = 7,
  padded = true,
): TokenBatch {
  const rng = new Rng(seed);
  const inputIds = new BigInt64Array(batch * seqLen);
  const attentionMask = new BigInt64Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    const len = padded ? Math.min(seqLen, 2 + rng.int(seqLen - 1)) : seqLen;
    for (let s = 0; s < seqLen; s++) {
      const on = s < len;
      inputIds[b * seqLen + s] = on ? BigInt(1 + rng.int(Math.max(1, vocabSize - 1))) : 0n;
      attentionMask[b * seqLen + s] = on ? 1n : 0n;
    }
  }
  return { inputIds, attentionMask, batch, seqLen };
}

/**
 * Feeds for every graph input, each in the dtype the input declares: ids, mask and token types (the pair
 * template's, else zeros) from the batch, zeros for other int inputs.
 */
export function feedsFor(
  g: Pick<Graph, "inputs">,
  batch: TokenBatch,
  extra: Record<string, ort.Tensor> = {},
): Record<string, ort.Tensor> {
  const dims = [batch.batch, batch.seqLen];
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of g.inputs) {
    if (extra[input.name]) feeds[input.name] = extra[input.name];
    else if (input.name === "input_ids") feeds[input.name] = intFeed(input, batch.inputIds, dims);
    else if (input.name === "attention_mask") feeds[input.name] = intFeed(input, batch.attentionMask, dims);
    else if (input.name === "token_type_ids" && batch.tokenTypeIds)
      feeds[input.name] = intFeed(input, batch.tokenTypeIds, dims);
    else if (input.dtype === "int64" || input.dtype === "int32")
      feeds[input.name] = intFeed(input, new BigInt64Array(batch.batch * batch.seqLen), dims);
    else throw new Error(`no feed for model input '${input.name}'`);
  }
  return feeds;
}

export function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  };
}

/** Row-wise argmax of a [rows, cols] logits buffer. */
export function argmaxRows(data: Float32Array, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / cols; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c] > data[r * cols + best]) best = c;
    out.push(best);
  }
  return out;
}
