/**
 * SentencePiece's `precompiled_charsmap` (the `Precompiled` normalizer of a Unigram tokenizer.json), read from the
 * file itself.
 *
 * @huggingface/tokenizers 0.2.0 ignores the charsmap: its Precompiled drops control characters, maps a fixed set
 * of spaces to " " and applies NFKC. The charsmap of SentencePiece's `nmt_nfkc` rule is not NFKC (it keeps some
 * characters NFKC folds, folds some NFKC keeps, and a model may carry its own rules), so ids differ wherever the
 * two disagree. This is what Hugging Face's Rust tokenizers (crate `spm_precompiled`) do with the blob:
 *
 * - the blob is a little-endian u32 byte length of a Darts-clone double-array trie, the trie (u32 units), then
 *   the replacement strings, each ended by a NUL; a trie key is the UTF-8 of the text to replace, its value the
 *   byte offset of the replacement;
 * - the text is walked by extended grapheme clusters: a cluster under 6 UTF-8 bytes whose bytes start with a key
 *   is replaced whole by the first (shortest) key's string; otherwise each character is looked up alone and kept
 *   when no key matches. (The Rust code says it keeps this odd cluster rule because it is what reproduces
 *   SentencePiece's ids on XNLI for XLM-R, mBART and Marian.)
 */

const UTF8 = new TextEncoder();
const UTF8_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export class PrecompiledCharsmap {
  private readonly trie: Uint32Array;
  private readonly strings: Uint8Array;
  private readonly replacementAt = new Map<number, string>();
  /** Replacements of the 128 ASCII characters (undefined: kept), the common case looked up once. */
  private readonly ascii: (string | undefined)[] = [];
  private readonly graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

  /** `base64`: the tokenizer.json's `precompiled_charsmap`; throws when it is not a charsmap. */
  constructor(base64: unknown) {
    const field = "normalizer Precompiled.precompiled_charsmap";
    if (typeof base64 !== "string" || base64.length === 0)
      throw new Error(
        `${field} must be a non-empty base64 string (SentencePiece's normalizer_spec charsmap)`,
      );
    let blob: Uint8Array;
    try {
      blob = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    } catch {
      throw new Error(`${field} is not valid base64`);
    }
    const trieBytes = blob.length >= 4 ? new DataView(blob.buffer).getUint32(0, true) : -1;
    if (trieBytes < 4 || trieBytes % 4 !== 0 || 4 + trieBytes > blob.length)
      throw new Error(
        `${field} is not a SentencePiece charsmap: its trie length (${trieBytes} bytes) does not fit the ` +
          `${blob.length}-byte blob`,
      );
    const view = new DataView(blob.buffer, 4, trieBytes);
    this.trie = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.trie.length; i++) this.trie[i] = view.getUint32(i * 4, true);
    this.strings = blob.subarray(4 + trieBytes);
    for (let c = 0; c < 128; c++) this.ascii.push(this.transform(Uint8Array.of(c)));
  }

  /** The replacement of the shortest key that `key` starts with, or undefined when none does. */
  private transform(key: Uint8Array): string | undefined {
    const trie = this.trie;
    let unit = trie[0];
    let pos = offsetOf(unit);
    for (const byte of key) {
      if (byte === 0) return undefined;
      pos ^= byte;
      if (pos >= trie.length) return undefined;
      unit = trie[pos];
      // label(): the low byte, plus bit 31 so a leaf unit never matches a label.
      if ((unit & 0x800000ff) >>> 0 !== byte) return undefined;
      pos ^= offsetOf(unit);
      if ((unit >>> 8) & 1) return this.replacement(trie[pos] & 0x7fffffff);
    }
    return undefined;
  }

  private replacement(start: number): string {
    let cached = this.replacementAt.get(start);
    if (cached === undefined) {
      let end = start;
      while (end < this.strings.length && this.strings[end] !== 0) end++;
      cached = UTF8_DECODER.decode(this.strings.subarray(start, end));
      this.replacementAt.set(start, cached);
    }
    return cached;
  }

  /**
   * The text normalised. Two adjacent ASCII characters other than CR LF are always separate graphemes (no
   * segmentation rule joins them), so ASCII stretches are looked up a character at a time and only the stretches
   * around other characters (with the ASCII character next to them, which a Prepend or CR may join) are
   * segmented: the same graphemes as segmenting the whole text, at a fraction of the cost on English text.
   */
  normalize(text: string): string {
    let out = "";
    const n = text.length;
    const standalone = (k: number) => {
      // text[k - 1] and text[k] both ASCII and not CR LF: a grapheme boundary between them.
      const a = text.charCodeAt(k - 1);
      const b = text.charCodeAt(k);
      return a < 128 && b < 128 && !(a === 13 && b === 10);
    };
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c < 128 && (i + 1 === n || standalone(i + 1))) {
        out += this.ascii[c] ?? text[i];
        i++;
        continue;
      }
      let k = i + 1;
      while (k < n && !standalone(k)) k++;
      out += this.normalizeGraphemes(text.slice(i, k));
      i = k;
    }
    return out;
  }

  /** The Rust crate's loop, grapheme by grapheme (exported for the test that checks normalize against it). */
  normalizeGraphemes(text: string): string {
    let out = "";
    for (const { segment } of this.graphemes.segment(text)) {
      const bytes = UTF8.encode(segment);
      if (bytes.length < 6) {
        const whole = this.transform(bytes);
        if (whole !== undefined) {
          out += whole;
          continue;
        }
      }
      for (const ch of segment) out += this.transform(UTF8.encode(ch)) ?? ch;
    }
    return out;
  }
}

/** A double-array unit's offset to its children (Darts-clone: 22 bits, shifted left by 8 when bit 9 is set). */
function offsetOf(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}
