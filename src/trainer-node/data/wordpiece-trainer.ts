/**
 * A small WordPiece vocabulary trainer.
 *
 * Hugging Face's own WordPieceTrainer (Rust `tokenizers`) learns the vocabulary with byte-pair-encoding merges on
 * words split into a first character and "##"-prefixed continuation characters, then keeps the merged pieces as
 * a WordPiece vocabulary; this does the same. @huggingface/tokenizers (JS) only runs tokenizers, it cannot train
 * them, hence this file.
 *
 * Each step merges the most frequent adjacent pair of pieces (ties: the alphabetically smaller merged piece), so
 * the result depends only on the word counts. Pair counts are kept incrementally with a lazy max-heap: a merge
 * only touches the words that contain the pair.
 */

export interface WordPieceTrainerOptions {
  vocabSize: number;
  /** Put first, in this order (ids 0, 1, ...). */
  specialTokens: readonly string[];
  /** Characters always in the alphabet (as word-initial and as "##" pieces), whether or not the corpus has them. */
  initialAlphabet?: string;
  /** At most this many corpus characters (most frequent first) join the alphabet; words with others are skipped. */
  limitAlphabet?: number;
  /** A pair seen fewer times than this is never merged. */
  minPairFrequency?: number;
  continuingSubwordPrefix?: string;
}

/** Trains on word -> count; returns the vocabulary in id order. */
export function trainWordPiece(wordCounts: Map<string, number>, opts: WordPieceTrainerOptions): string[] {
  const prefix = opts.continuingSubwordPrefix ?? "##";
  const minPair = opts.minPairFrequency ?? 2;

  // Alphabet: forced characters plus the most frequent corpus characters.
  const charCounts = new Map<string, number>();
  for (const [word, count] of wordCounts) {
    for (const ch of word) charCounts.set(ch, (charCounts.get(ch) ?? 0) + count);
  }
  const ranked = [...charCounts].sort((a, b) => b[1] - a[1] || compare(a[0], b[0])).map(([ch]) => ch);
  const alphabet = new Set([
    ...(opts.initialAlphabet ?? ""),
    ...ranked.slice(0, opts.limitAlphabet ?? ranked.length),
  ]);
  const sortedAlphabet = [...alphabet].sort(compare);

  const pieces: string[] = [...opts.specialTokens];
  const idOf = new Map<string, number>(pieces.map((p, i) => [p, i]));
  const addPiece = (piece: string): number => {
    let id = idOf.get(piece);
    if (id === undefined) {
      id = pieces.length;
      pieces.push(piece);
      idOf.set(piece, id);
    }
    return id;
  };
  for (const ch of sortedAlphabet) addPiece(ch);
  for (const ch of sortedAlphabet) addPiece(prefix + ch);

  // Words as arrays of piece ids, in a fixed order so heap ties and updates never depend on Map order.
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [word, count] of [...wordCounts].sort((a, b) => compare(a[0], b[0]))) {
    const chars = [...word];
    if (!chars.every((ch) => alphabet.has(ch))) continue;
    words.push(chars.map((ch, i) => idOf.get(i === 0 ? ch : prefix + ch)!));
    counts.push(count);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const key = (a: number, b: number) => a * 0x100000 + b;
  const addPairs = (w: number, sign: 1 | -1, touched: Set<number>) => {
    const symbols = words[w];
    for (let i = 0; i + 1 < symbols.length; i++) {
      const k = key(symbols[i], symbols[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * counts[w]);
      if (sign === 1) {
        const set = pairWords.get(k);
        if (set) set.add(w);
        else pairWords.set(k, new Set([w]));
      }
      touched.add(k);
    }
  };
  const heap = new MaxHeap();
  const mergedText = (k: number) =>
    pieces[Math.floor(k / 0x100000)] + pieces[k % 0x100000].slice(prefix.length);
  const pushPairs = (touched: Set<number>) => {
    for (const k of touched) {
      const c = pairCount.get(k)!;
      if (c >= minPair) heap.push({ count: c, key: k, text: mergedText(k) });
    }
  };
  const initial = new Set<number>();
  for (let w = 0; w < words.length; w++) addPairs(w, 1, initial);
  pushPairs(initial);

  while (pieces.length < opts.vocabSize) {
    const top = heap.pop();
    if (!top) break; // no pair left above minPairFrequency
    if (pairCount.get(top.key) !== top.count) continue; // stale entry
    const a = Math.floor(top.key / 0x100000);
    const b = top.key % 0x100000;
    const merged = addPiece(top.text);
    const touched = new Set<number>();
    for (const w of pairWords.get(top.key)!) {
      const symbols = words[w];
      addPairs(w, -1, touched);
      const next: number[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          next.push(merged);
          i++;
        } else {
          next.push(symbols[i]);
        }
      }
      words[w] = next;
      addPairs(w, 1, touched);
    }
    pairWords.delete(top.key);
    pushPairs(touched);
  }
  return pieces;
}

interface HeapEntry {
  count: number;
  key: number;
  text: string;
}

/** Max-heap on (count desc, merged text asc): the pair a merge step takes. */
class MaxHeap {
  private items: HeapEntry[] = [];

  push(e: HeapEntry) {
    const items = this.items;
    items.push(e);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): HeapEntry | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && before(items[l], items[best])) best = l;
        if (r < items.length && before(items[r], items[best])) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best], items[i]];
        i = best;
      }
    }
    return top;
  }
}

function before(x: HeapEntry, y: HeapEntry): boolean {
  return (
    x.count > y.count || (x.count === y.count && (x.text < y.text || (x.text === y.text && x.key < y.key)))
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
