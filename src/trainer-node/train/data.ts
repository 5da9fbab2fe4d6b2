/**
 * Tokenized examples and the mini-batches cut from them. The trainer sees only token ids and labels, so any
 * tokenizer (the project's WordPiece via src/core/tokenizer.ts, or synthetic ids in tests) feeds it.
 */
import type { Rng } from "../../core/random";
import { encodePair, encodeText, type LoadedTokenizer } from "../../core/tokenizer";
import type { Batch } from "./session";

/** A split after tokenization: one id sequence (already truncated, with specials) and one label per example. */
export interface TokenizedSplit {
  ids: number[][];
  /** Token type (segment) ids parallel to `ids`, from the tokenizer's pair template; absent for single texts (all 0). */
  typeIds?: number[][];
  labels: number[];
  padId: number;
  /** Pad every batch to this many tokens (models whose export fixed the sequence length). */
  padTo?: number;
}

/**
 * Tokenizes examples with the model's own tokenizer: one text as its post-processor wraps it, or, with `pairs`,
 * (text, textPair) through its pair template with the template's token type ids, truncated to `seq` in all.
 */
export function tokenizeSplit(
  tok: LoadedTokenizer,
  examples: readonly { text: string; textPair?: string; label: number }[],
  opts: { seq: number; pairs: boolean; padTo?: number },
): TokenizedSplit {
  const labels = examples.map((e) => e.label);
  const base = { labels, padId: tok.specialIds.pad, padTo: opts.padTo };
  if (!opts.pairs) return { ...base, ids: examples.map((e) => encodeText(tok, e.text, opts.seq)) };
  const ids: number[][] = [];
  const typeIds: number[][] = [];
  for (const [i, e] of examples.entries()) {
    if (e.textPair === undefined) throw new Error(`example ${i} of a sentence-pair task has no second text`);
    const enc = encodePair(tok, e.text, e.textPair, opts.seq);
    ids.push(enc.ids);
    typeIds.push(enc.typeIds);
  }
  return { ...base, ids, typeIds };
}

/** Pads the chosen examples to the longest of them (at least 2 tokens). */
export function makeBatch(split: TokenizedSplit, indices: readonly number[]): Batch {
  const seq = split.padTo ?? Math.max(2, ...indices.map((i) => split.ids[i].length));
  const batch = indices.length;
  const inputIds = new BigInt64Array(batch * seq).fill(BigInt(split.padId));
  const attentionMask = new BigInt64Array(batch * seq);
  const tokenTypeIds = new BigInt64Array(batch * seq);
  const labels = new Int32Array(batch);
  indices.forEach((ex, b) => {
    const row = split.ids[ex];
    const types = split.typeIds?.[ex];
    for (let t = 0; t < row.length; t++) {
      inputIds[b * seq + t] = BigInt(row[t]);
      attentionMask[b * seq + t] = 1n;
      if (types) tokenTypeIds[b * seq + t] = BigInt(types[t]);
    }
    labels[b] = split.labels[ex];
  });
  return { batch, seq, inputIds, attentionMask, tokenTypeIds, labels };
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
