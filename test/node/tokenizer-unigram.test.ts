// SentencePiece Unigram tokenizer.json files (ALBERT-style and XLM-R-style, written as transformers'
// AlbertConverter / XLMRobertaConverter write them) give the ids sentencepiece itself gives.
//
// test/fixtures/unigram/<style>/ is written by scripts/fixtures/unigram_tokenizers.py: a unigram model trained
// with sentencepiece (nmt_nfkc charsmap), its tokenizer.json, and reference ids from sentencepiece's C++ encode
// wrapped as the slow AlbertTokenizer / XLMRobertaTokenizer wrap it. Nothing here comes from
// @huggingface/tokenizers.
import { readFileSync } from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { PrecompiledCharsmap } from "../../src/core/precompiled-charsmap";
import { encodeBatch, encodeText, loadTokenizer, type TokenizerJson } from "../../src/core/tokenizer";

const DIR = path.resolve(import.meta.dirname, "../fixtures/unigram");
interface Reference {
  vocabSize: number;
  cases: { text: string; ids: number[]; maxLen?: number }[];
}
const read = (style: string) => ({
  json: JSON.parse(readFileSync(path.join(DIR, style, "tokenizer.json"), "utf8")) as TokenizerJson,
  reference: JSON.parse(readFileSync(path.join(DIR, style, "reference.json"), "utf8")) as Reference,
});
const charsmapOf = (json: TokenizerJson) =>
  (json.normalizer as { normalizers: { type: string; precompiled_charsmap?: string }[] }).normalizers.find(
    (n) => n.type === "Precompiled",
  )?.precompiled_charsmap;
const JOINED_EMOJI = "Coding 👩‍💻 together, 👍🏽 fine";

describe.each([
  ["albert", { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 }],
  ["xlmr", { cls: 0, pad: 1, sep: 2, unk: 3, mask: 601 }],
])("%s-style Unigram tokenizer.json", (style, roles) => {
  const { json, reference } = read(style);
  const tok = loadTokenizer(json);

  it("is the converter's file: Unigram model, Precompiled charsmap, Metaspace, the template's specials", () => {
    expect(json.model.type).toBe("Unigram");
    expect(charsmapOf(json)?.length).toBeGreaterThan(1000);
    expect(json.pre_tokenizer).toMatchObject({ type: "Metaspace", prepend_scheme: "always", split: true });
    expect(tok.specialIds).toEqual(roles);
    expect(tok.vocabSize).toBe(reference.vocabSize);
  });

  it("gives sentencepiece's ids for every reference text", () => {
    expect(reference.cases.length).toBeGreaterThan(15);
    for (const { text, ids, maxLen } of reference.cases)
      expect(encodeText(tok, text, maxLen ?? 512), JSON.stringify(text)).toEqual(ids);
  });

  it("gives the same ids with the older converters' pre-tokenizer, Sequence [WhitespaceSplit, Metaspace]", () => {
    const older = structuredClone(json);
    older.pre_tokenizer = {
      type: "Sequence",
      pretokenizers: [
        { type: "WhitespaceSplit" },
        { type: "Metaspace", replacement: "▁", add_prefix_space: true },
      ],
    };
    const tokOlder = loadTokenizer(older);
    for (const { text, ids, maxLen } of reference.cases)
      expect(encodeText(tokOlder, text, maxLen ?? 512), JSON.stringify(text)).toEqual(ids);
  });

  it("pads a batch of them with the file's pad id", () => {
    const cases = reference.cases.filter((c) => !c.maxLen);
    const batch = encodeBatch(
      tok,
      cases.map((c) => c.text),
      512,
    );
    const width = Math.max(...cases.map((c) => c.ids.length));
    expect(batch.seqLen).toBe(width);
    cases.forEach(({ ids }, b) => {
      const row = Array.from(batch.inputIds.slice(b * width, (b + 1) * width), Number);
      expect(row).toEqual([...ids, ...Array(width - ids.length).fill(roles.pad)]);
    });
  });

  it("needs the file's charsmap: the library's own Precompiled turns the emoji joiner into a space", () => {
    const expected = reference.cases.find((c) => c.text === JOINED_EMOJI)?.ids;
    expect(expected).toBeDefined();
    expect(encodeText(tok, JOINED_EMOJI, 512)).toEqual(expected);
    // @huggingface/tokenizers on the same file, without Sluice's charsmap: one unknown more (the joiner split it).
    expect(new Tokenizer(json, {}).encode(JOINED_EMOJI).ids).not.toEqual(expected);
  });
});

describe("PrecompiledCharsmap", () => {
  const charsmap = new PrecompiledCharsmap(charsmapOf(read("xlmr").json));

  it("applies nmt_nfkc: full width, ligatures, circled digits, spaces and controls", () => {
    expect(charsmap.normalize("ＦＵＬＬ ﬁ ① x² ½ ℃")).toBe("FULL fi 1 x2 1⁄2 °C");
    expect(charsmap.normalize("a\tb\u00a0c\u3000d\u0001e")).toBe("a b c de");
  });

  it("keeps HF's grapheme rule: a cluster of 6 bytes or more is mapped one character at a time", () => {
    // spm_precompiled's own example: halfwidth ｶﾞ is one 6-byte grapheme, so it becomes カ + combining ゙ rather
    // than the precomposed ガ that NFKC (and the cluster's own trie entry) would give.
    expect(charsmap.normalize("\uff76\uff9e")).toBe("\u30ab\u3099");
    expect(charsmap.normalize("\uff76")).toBe("\u30ab");
  });

  it("the ASCII fast path gives what segmenting the whole text gives", () => {
    // Characters that join graphemes across an ASCII neighbour or change under the charsmap: CR LF, combining
    // marks, a Prepend (U+0600), regional indicators, ZWJ emoji, Hangul jamo, halfwidth katakana, controls.
    const alphabet = [..."ab .,\r\n\t\u0001"].concat(
      ["\u0301", "\u0600", "\u{1f1e9}", "\u{1f1ea}", "\u200d", "\u{1f469}", "\u1100", "\u1161"],
      ["\uff76", "\uff9e", "ﬁ", "①", "é", "\u00a0", "\u3000", "漢"],
    );
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    for (let t = 0; t < 3000; t++) {
      const text = Array.from({ length: 1 + (next() % 12) }, () => alphabet[next() % alphabet.length]).join(
        "",
      );
      expect(charsmap.normalize(text), JSON.stringify(text)).toBe(charsmap.normalizeGraphemes(text));
    }
  });

  it("refuses a missing, truncated or non-base64 charsmap, naming the field", () => {
    expect(() => new PrecompiledCharsmap(null)).toThrow(/precompiled_charsmap must be a non-empty base64/);
    expect(() => new PrecompiledCharsmap("")).toThrow(/precompiled_charsmap/);
    expect(() => new PrecompiledCharsmap("!!!")).toThrow(/precompiled_charsmap is not valid base64/);
    expect(() => new PrecompiledCharsmap(btoa("\xff\xff\x00\x00abcd"))).toThrow(
      /does not fit the 8-byte blob/,
    );
  });

  it("a Unigram file with byte_fallback is refused, naming the field", () => {
    const json = structuredClone(read("xlmr").json);
    json.model.byte_fallback = true;
    expect(() => loadTokenizer(json)).toThrow(/model.byte_fallback is true/);
  });

  it("a tokenizer.json whose Precompiled has no charsmap is refused when it is loaded", () => {
    const { json } = read("albert");
    const broken = structuredClone(json);
    for (const n of (broken.normalizer as { normalizers: Record<string, unknown>[] }).normalizers)
      if (n.type === "Precompiled") n.precompiled_charsmap = null;
    expect(() => loadTokenizer(broken)).toThrow(/normalizer Precompiled.precompiled_charsmap/);
  });
});
