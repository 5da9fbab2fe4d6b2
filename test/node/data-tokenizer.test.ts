import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { encodeBatch, encodeText, loadTokenizer } from "../../src/core/tokenizer";
import { buildTokenizerJson, DEFAULT_VOCAB_SIZE } from "../../src/trainer-node/data/build-tokenizer";
import { corpusSegments } from "../../src/trainer-node/data/corpus";
import { loadTask } from "../../src/trainer-node/data/tasks";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import { trainWordPiece } from "../../src/trainer-node/data/wordpiece-trainer";

const tok = loadTokenizerFile();
const PARITY_FIXTURE = path.resolve(import.meta.dirname, "../fixtures/tokenizer-parity.json");

describe("committed tokenizer (models/tokenizer.json)", () => {
  it("has the special tokens first and the documented vocabulary size", () => {
    expect(tok.specialIds).toEqual({ pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 });
    expect(tok.allSpecialIds).toEqual([0, 1, 2, 3, 4]);
    expect(tok.vocabSize).toBe(DEFAULT_VOCAB_SIZE);
  });

  it("maps known words to their own ids and wraps the text in [CLS] ... [SEP]", () => {
    const ids = encodeText(tok, "The Whale and the President.", 64);
    const expected = ["[CLS]", "the", "whale", "and", "the", "president", ".", "[SEP]"].map((t) =>
      tok.tokenizer.token_to_id(t),
    );
    expect(expected.every((id) => typeof id === "number")).toBe(true);
    expect(ids).toEqual(expected);
  });

  it("splits unknown words into ## pieces and decodes back to the normalised text", () => {
    const text = "the harpooneer was unbelievably seaworthy.";
    const { tokens, ids } = tok.tokenizer.encode(text);
    expect(tokens.some((t) => t.startsWith("##"))).toBe(true);
    expect(ids).not.toContain(tok.specialIds.unk);
    expect(tok.tokenizer.decode(ids, { skip_special_tokens: true })).toBe(text);
    // Accents are stripped and case folded, as bert-base-uncased does.
    expect(tok.tokenizer.encode("CAFÉ").tokens).toEqual(tok.tokenizer.encode("cafe").tokens);
  });

  it("pads to the longest text, masks the padding and truncates keeping [SEP] last", () => {
    const texts = ["a short one", "this sentence is quite a lot longer than the first one is", ""];
    const maxLen = 8;
    const batch = encodeBatch(tok, texts, maxLen);
    expect(batch.batch).toBe(3);
    expect(batch.seqLen).toBe(maxLen);
    expect(batch.inputIds).toHaveLength(3 * maxLen);
    const row = (a: BigInt64Array, b: number) => Array.from(a.slice(b * maxLen, (b + 1) * maxLen), Number);
    const short = tok.tokenizer.encode(texts[0]).ids;
    expect(row(batch.inputIds, 0)).toEqual([...short, ...Array(maxLen - short.length).fill(0)]);
    expect(row(batch.attentionMask, 0)).toEqual([
      ...short.map(() => 1),
      ...Array(maxLen - short.length).fill(0),
    ]);
    const long = tok.tokenizer.encode(texts[1]).ids;
    expect(row(batch.inputIds, 1)).toEqual([...long.slice(0, maxLen - 1), tok.specialIds.sep]);
    expect(row(batch.attentionMask, 1)).toEqual(Array(maxLen).fill(1));
    expect(row(batch.inputIds, 2)).toEqual([2, 3, 0, 0, 0, 0, 0, 0]);

    const narrow = encodeBatch(tok, ["a b", "c"], 64);
    expect(narrow.seqLen).toBe(4); // the longest row, not maxLen
  });

  it("truncates long e-mails exactly as encoding the whole text would", () => {
    // Last text: words longer than 100 chars are one [UNK] each, so the quick prefix is too short and the
    // whole text must be encoded.
    const longWords = `${"x".repeat(101)} `.repeat(40);
    const spam = [...loadTask("spam").splits.test.slice(0, 60), { text: longWords }];
    for (const e of spam) {
      for (const maxLen of [16, 128]) {
        const full = tok.tokenizer.encode(e.text).ids;
        const expected = full.length <= maxLen ? full : [...full.slice(0, maxLen - 1), full[full.length - 1]];
        expect(encodeText(tok, e.text, maxLen)).toEqual(expected);
      }
    }
  });

  it("is rebuilt byte for byte by `npm run build:tokenizer`", () => {
    const rebuilt = `${JSON.stringify(buildTokenizerJson(corpusSegments(), DEFAULT_VOCAB_SIZE))}\n`;
    expect(sha256(rebuilt)).toBe(sha256(readFileSync(DEFAULT_TOKENIZER_PATH, "utf8")));
  });

  it("agrees with the parity fixture the workerd test checks (SLUICE_UPDATE_FIXTURES=1 rewrites it)", () => {
    const fixture = parityFixture();
    if (process.env.SLUICE_UPDATE_FIXTURES === "1")
      writeFileSync(PARITY_FIXTURE, `${JSON.stringify(fixture, null, 1)}\n`);
    expect(JSON.parse(readFileSync(PARITY_FIXTURE, "utf8"))).toEqual(fixture);
  });
});

describe("WordPiece trainer", () => {
  const counts = new Map([
    ["lower", 5],
    ["lowest", 3],
    ["newer", 6],
    ["wider", 2],
    ["new", 4],
  ]);

  it("starts with the special tokens and the alphabet, then learns frequent pieces", () => {
    const vocab = trainWordPiece(counts, { vocabSize: 40, specialTokens: ["[PAD]", "[UNK]"] });
    expect(vocab.slice(0, 2)).toEqual(["[PAD]", "[UNK]"]);
    expect(vocab).toContain("d"); // alphabet: first letters...
    expect(vocab).toContain("##d"); // ...and continuation letters
    // 10 letters, each as a first and a "##" piece, then merges, most frequent pair first:
    // ##w+##e occurs in lower/lowest/newer (14), then ##we+##r (11), n+##e (10), l+##o (8), ne+##wer (6)...
    expect(vocab.slice(22, 27)).toEqual(["##we", "##wer", "ne", "lo", "newer"]);
    expect(vocab).toContain("wider");
    expect(new Set(vocab).size).toBe(vocab.length);
    // It stops early when no pair is seen at least minPairFrequency (2) times.
    expect(vocab.length).toBeLessThan(40);
  });

  it("depends only on the counts, not on their order", () => {
    const reversed = new Map([...counts].reverse());
    const opts = { vocabSize: 40, specialTokens: ["[PAD]"] };
    expect(trainWordPiece(reversed, opts)).toEqual(trainWordPiece(counts, opts));
  });
});

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/** Texts the Node and workerd tokenizers must agree on: hand-picked edge cases plus real task examples. */
function parityFixture() {
  const maxLen = 64;
  const texts = [
    "The Whale and the President.",
    "FREE money!!! Click http://win.example.com/?id=42&x=y NOW",
    "Naïve café résumé — “quoted” ‘text’ … ½ £5 €10",
    "日本語のテキスト and 中文 mixed",
    "emoji 🐋🚀 and control\u0000chars\u200b here\ttab\nnewline",
    "[CLS] literal special tokens [MASK] in text [SEP]",
    "supercalifragilisticexpialidocious".repeat(4),
    "",
    ...loadTask("sentiment")
      .splits.test.slice(0, 20)
      .map((e) => e.text),
    ...loadTask("spam")
      .splits.test.slice(0, 6)
      .map((e) => e.text),
  ];
  return {
    tokenizerSha256: sha256(readFileSync(DEFAULT_TOKENIZER_PATH, "utf8")),
    maxLen,
    cases: texts.map((text) => ({ text, ids: encodeText(tok, text, maxLen) })),
  };
}

// Also exercised: loading from the JSON text rather than the cached file.
it("loads from the JSON text as well as the parsed object", () => {
  const text = readFileSync(DEFAULT_TOKENIZER_PATH, "utf8");
  expect(loadTokenizer(text).specialIds).toEqual(tok.specialIds);
});
