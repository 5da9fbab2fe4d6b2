/**
 * Tokenized examples and the mini-batches cut from them. The trainer sees only token ids and labels, so any
 * tokenizer (the project's WordPiece via src/core/tokenizer.ts, or synthetic ids in tests) feeds it.
 */
import type { Rng } from "../../core/random";
import type { Batch } from "./session";

/** A split after tokenization: one id sequence (already truncated, with specials) and one label per example. */
export interface TokenizedSplit {
  ids: number[][];
  labels: number[];
  padId: number;
  /** Pad every batch to this many tokens (models whose export fixed the sequence length). */
  padTo?: number;
}

/** Pads the chosen examples to the longest of them (at least 2 tokens). */
export function makeBatch(split: TokenizedSplit, indices: readonly number[]): Batch {
  const seq = split.padTo ?? Math.max(2, ...indices.map((i) => split.ids[i].length));
  const batch = indices.length;
  const inputIds = new BigInt64Array(batch * seq).fill(BigInt(split.padId));
  const attentionMask = new BigInt64Array(batch * seq);
  const labels = new Int32Array(batch);
  indices.forEach((ex, b) => {
    const row = split.ids[ex];
    for (let t = 0; t < row.length; t++) {
      inputIds[b * seq + t] = BigInt(row[t]);
      attentionMask[b * seq + t] = 1n;
    }
    labels[b] = split.labels[ex];
  });
  return { batch, seq, inputIds, attentionMask, labels };
}

/** The training batches of one epoch: a seeded shuffle, cut into full batches (the remainder is dropped). */
export function epochBatches(n: number, batchSize: number, rng: Rng): number[][] {
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  const out: number[][] = [];
  for (let i = 0; i + batchSize <= n; i += batchSize) out.push(order.slice(i, i + batchSize));
  return out;
}

/** Consecutive batches over a whole split (evaluation; the last one may be short). */
export function sequentialBatches(n: number, batchSize: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < n; i += batchSize)
    out.push(Array.from({ length: Math.min(batchSize, n - i) }, (_, k) => i + k));
  return out;
}
