/**
 * BERT's masked-language-modelling corruption (Devlin et al. 2019, as Hugging Face's
 * DataCollatorForLanguageModeling does it): each ordinary token is selected with probability 15%; a selected
 * token becomes [MASK] 80% of the time, a random ordinary token 10%, and stays itself 10%. Special tokens and
 * padding are never selected. The model predicts the original token at the selected positions only, so the
 * batch carries those positions (flat indices into [batch, seq]) and their labels, and nothing else.
 */
import type { Rng } from "../../core/random";

export interface MaskingOptions {
  /** Probability that an ordinary token is selected for prediction (0.15). */
  selectRate: number;
  /** Of the selected: fraction replaced by [MASK] (0.8) and by a random token (0.1); the rest stay. */
  maskRate: number;
  randomRate: number;
  maskId: number;
  /** Ids never selected and never drawn as random replacements ([PAD], [UNK], [CLS], [SEP], [MASK]). */
  specialIds: readonly number[];
  vocabSize: number;
}

export const BERT_MASKING = { selectRate: 0.15, maskRate: 0.8, randomRate: 0.1 } as const;

export interface MaskedBatch {
  batch: number;
  seq: number;
  /** Corrupted ids, row-major [batch, seq]. */
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  /** Flat indices (b·seq + t) of the selected tokens, ascending. */
  positions: BigInt64Array;
  /** Original ids at those positions. */
  labels: BigInt64Array;
  /** What happened at each selected position (for tests and statistics). */
  kinds: Uint8Array;
}

export const MASK_KIND = { mask: 0, random: 1, kept: 2 } as const;

/**
 * Pads `rows` to the longest (at least 2) and corrupts them. At least one token is selected per batch (the
 * loss needs one); a batch where the draw selected none gets its first ordinary token selected.
 */
export function maskBatch(
  rows: readonly ArrayLike<number>[],
  padId: number,
  opts: MaskingOptions,
  rng: Rng,
): MaskedBatch {
  const batch = rows.length;
  let seq = 2;
  for (const r of rows) seq = Math.max(seq, r.length);
  const special = new Set(opts.specialIds);
  special.add(padId);
  const ordinary: number[] = [];
  for (let id = 0; id < opts.vocabSize; id++) if (!special.has(id)) ordinary.push(id);

  const inputIds = new BigInt64Array(batch * seq).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(batch * seq);
  const positions: number[] = [];
  const labels: number[] = [];
  const kinds: number[] = [];
  let firstOrdinary = -1;
  for (let b = 0; b < batch; b++) {
    const row = rows[b];
    for (let t = 0; t < row.length; t++) {
      const flat = b * seq + t;
      const id = row[t];
      attentionMask[flat] = 1n;
      inputIds[flat] = BigInt(id);
      if (special.has(id)) continue;
      if (firstOrdinary < 0) firstOrdinary = flat;
      if (rng.next() >= opts.selectRate) continue;
      positions.push(flat);
      labels.push(id);
      const u = rng.next();
      if (u < opts.maskRate) {
        inputIds[flat] = BigInt(opts.maskId);
        kinds.push(MASK_KIND.mask);
      } else if (u < opts.maskRate + opts.randomRate) {
        inputIds[flat] = BigInt(ordinary[rng.int(ordinary.length)]);
        kinds.push(MASK_KIND.random);
      } else {
        kinds.push(MASK_KIND.kept);
      }
    }
  }
  if (positions.length === 0) {
    if (firstOrdinary < 0) throw new Error("a batch has no ordinary tokens to mask");
    positions.push(firstOrdinary);
    labels.push(Number(inputIds[firstOrdinary]));
    inputIds[firstOrdinary] = BigInt(opts.maskId);
    kinds.push(MASK_KIND.mask);
  }
  return {
    batch,
    seq,
    inputIds,
    attentionMask,
    positions: BigInt64Array.from(positions, BigInt),
    labels: BigInt64Array.from(labels, BigInt),
    kinds: Uint8Array.from(kinds),
  };
}
