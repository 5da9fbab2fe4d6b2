import { describe, expect, it } from "vitest";
import { Rng } from "../../src/core/random";
import { loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import {
  BERT_MASKING,
  MASK_KIND,
  type MaskingOptions,
  maskBatch,
} from "../../src/trainer-node/pretrain/masking";

const tok = loadTokenizerFile();
const ids = tok.specialIds;
const specials = [...tok.allSpecialIds];
const opts: MaskingOptions = {
  ...BERT_MASKING,
  maskId: ids.mask!,
  specialIds: specials,
  vocabSize: tok.vocabSize,
};

/** Rows like the tokenizer's: [CLS] ordinary... (some [UNK]) [SEP], of varied lengths (so the batch has pads). */
function rows(n: number, rng: Rng): number[][] {
  const out: number[][] = [];
  for (let r = 0; r < n; r++) {
    const len = 4 + rng.int(60);
    const row = [ids.cls];
    for (let t = 0; t < len; t++) row.push(rng.next() < 0.03 ? ids.unk! : 5 + rng.int(tok.vocabSize - 5));
    row.push(ids.sep);
    out.push(row);
  }
  return out;
}

/** |observed − np| within z standard deviations of Binomial(n, p) (z = 4: a false alarm about once in 16,000). */
function withinBinomial(k: number, n: number, p: number, z = 4) {
  expect(Math.abs(k - n * p)).toBeLessThan(z * Math.sqrt(n * p * (1 - p)));
}

describe("MLM masking", () => {
  it("selects 15% of ordinary tokens; 80/10/10 mask/random/kept, within binomial bounds", () => {
    const rng = new Rng(7);
    let ordinary = 0;
    let selected = 0;
    const kinds = [0, 0, 0];
    for (let k = 0; k < 40; k++) {
      const batchRows = rows(32, rng);
      for (const r of batchRows) for (const id of r) if (!specials.includes(id)) ordinary++;
      const b = maskBatch(batchRows, ids.pad, opts, new Rng(1000 + k));
      selected += b.positions.length;
      for (const kind of b.kinds) kinds[kind]++;
    }
    expect(ordinary).toBeGreaterThan(30_000);
    withinBinomial(selected, ordinary, 0.15);
    withinBinomial(kinds[MASK_KIND.mask], selected, 0.8);
    withinBinomial(kinds[MASK_KIND.random], selected, 0.1);
    withinBinomial(kinds[MASK_KIND.kept], selected, 0.1);
  });

  it("never selects special tokens or padding; labels and changes only at selected positions", () => {
    const batchRows = rows(64, new Rng(3));
    const b = maskBatch(batchRows, ids.pad, opts, new Rng(11));
    const selected = new Set(Array.from(b.positions, Number));
    expect([...selected]).toEqual([...selected].sort((x, y) => x - y));
    expect(b.labels.length).toBe(b.positions.length);
    let padCells = 0;
    for (let r = 0; r < b.batch; r++) {
      for (let t = 0; t < b.seq; t++) {
        const flat = r * b.seq + t;
        const original = t < batchRows[r].length ? batchRows[r][t] : undefined;
        if (original === undefined) {
          padCells++;
          expect(b.attentionMask[flat]).toBe(0n);
          expect(b.inputIds[flat]).toBe(BigInt(ids.pad));
          expect(selected.has(flat)).toBe(false);
          continue;
        }
        expect(b.attentionMask[flat]).toBe(1n);
        if (specials.includes(original)) expect(selected.has(flat)).toBe(false);
        if (!selected.has(flat)) expect(b.inputIds[flat]).toBe(BigInt(original));
      }
    }
    expect(padCells).toBeGreaterThan(0);
    b.positions.forEach((p, i) => {
      const flat = Number(p);
      const original = batchRows[Math.floor(flat / b.seq)][flat % b.seq];
      expect(b.labels[i]).toBe(BigInt(original));
      const now = Number(b.inputIds[flat]);
      if (b.kinds[i] === MASK_KIND.mask) expect(now).toBe(ids.mask!);
      if (b.kinds[i] === MASK_KIND.kept) expect(now).toBe(original);
      if (b.kinds[i] === MASK_KIND.random) expect(specials.includes(now)).toBe(false);
    });
  });

  it("is deterministic per seed and differs across seeds", () => {
    const batchRows = rows(16, new Rng(5));
    const a = maskBatch(batchRows, ids.pad, opts, new Rng(42));
    const b = maskBatch(batchRows, ids.pad, opts, new Rng(42));
    const c = maskBatch(batchRows, ids.pad, opts, new Rng(43));
    expect(b.inputIds).toEqual(a.inputIds);
    expect(b.positions).toEqual(a.positions);
    expect(b.labels).toEqual(a.labels);
    expect(c.positions).not.toEqual(a.positions);
  });

  it("selects one token when the draw selected none, and refuses a batch of specials only", () => {
    const b = maskBatch([[ids.cls, 100, ids.sep]], ids.pad, { ...opts, selectRate: 0 }, new Rng(1));
    expect(Array.from(b.positions)).toEqual([1n]);
    expect(Array.from(b.labels)).toEqual([100n]);
    expect(b.inputIds[1]).toBe(BigInt(ids.mask!));
    expect(() => maskBatch([[ids.cls, ids.sep]], ids.pad, opts, new Rng(1))).toThrow(/no ordinary/);
  });
});
