/**
 * Per-example evidence: which examples of an eval split a variant got right, as a compact bitset (bit i of
 * byte i>>3, least significant first, base64). Two variants evaluated on the same split (same sha256) can then
 * be compared example by example, which is what a paired test needs. Runs in Node and in workerd (atob/btoa).
 */

/** Confidence at which a margin SLA is proven when it does not say (registry default, router policy). */
export const DEFAULT_SLA_CONFIDENCE = 0.95;

export function encodeBitset(bits: ArrayLike<boolean>): string {
  const bytes = new Uint8Array(Math.ceil(bits.length / 8));
  for (let i = 0; i < bits.length; i++) if (bits[i]) bytes[i >> 3] |= 1 << (i & 7);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** The `n` bits of a bitset; throws when the string does not hold exactly ceil(n/8) bytes. */
export function decodeBitset(encoded: string, n: number): boolean[] {
  const raw = atob(encoded);
  if (raw.length !== Math.ceil(n / 8))
    throw new Error(`bitset holds ${raw.length} bytes; ${n} bits need ${Math.ceil(n / 8)}`);
  return Array.from({ length: n }, (_, i) => ((raw.charCodeAt(i >> 3) >> (i & 7)) & 1) === 1);
}

/** The 2×2 table of two variants' correctness on the same examples. */
export interface PairedCounts {
  /** Both right, only the first right, only the second right, both wrong. */
  both: number;
  firstOnly: number;
  secondOnly: number;
  neither: number;
}

export function pairedCounts(first: readonly boolean[], second: readonly boolean[]): PairedCounts {
  if (first.length !== second.length) throw new Error("paired evidence must cover the same examples");
  const c = { both: 0, firstOnly: 0, secondOnly: 0, neither: 0 };
  for (let i = 0; i < first.length; i++) {
    if (first[i] && second[i]) c.both++;
    else if (first[i]) c.firstOnly++;
    else if (second[i]) c.secondOnly++;
    else c.neither++;
  }
  return c;
}
