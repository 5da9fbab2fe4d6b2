/**
 * Tokenizer glue shared by the trainer (Node) and the gateway (workerd): load a Hugging Face `tokenizer.json`
 * with @huggingface/tokenizers (pure JS, no fs, no eval, so it runs in both) and turn a batch of texts into the
 * int64 tensors a BERT-style ONNX encoder takes.
 *
 * The library encodes one text at a time and has no padding or truncation, so those live here, following
 * Hugging Face's rules: truncation drops content tokens from the end but keeps the closing [SEP]; padding is
 * to the longest sequence in the batch (at most maxLen) with the pad id, attention mask 0.
 */
import { Tokenizer } from "@huggingface/tokenizers";

export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

/** The parts of a `tokenizer.json` this module relies on (the file has more; the library reads it all). */
export interface TokenizerJson {
  version?: string;
  added_tokens: { id: number; content: string; special?: boolean }[];
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: { type: string; vocab: Record<string, number>; unk_token?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface LoadedTokenizer {
  tokenizer: Tokenizer;
  vocabSize: number;
  /** Ids of the special tokens, read from the file (never assumed). */
  ids: Record<SpecialToken, number>;
}

export interface EncodedBatch {
  /** Row-major [batch, seqLen]. */
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  batch: number;
  seqLen: number;
}

/** Loads a `tokenizer.json` given as parsed JSON or as its text. */
export function loadTokenizer(json: TokenizerJson | string): LoadedTokenizer {
  const parsed: TokenizerJson = typeof json === "string" ? JSON.parse(json) : json;
  const tokenizer = new Tokenizer(parsed, {});
  const ids = {} as Record<SpecialToken, number>;
  for (const token of SPECIAL_TOKENS) {
    const id = tokenizer.token_to_id(token);
    if (id === undefined) throw new Error(`tokenizer.json has no ${token} token`);
    ids[token] = id;
  }
  return { tokenizer, vocabSize: tokenizer.get_vocab(true).size, ids };
}

/** Ids of one text: [CLS] tokens... [SEP] (by the file's post-processor), truncated to maxLen keeping [SEP]. */
export function encodeText(tok: LoadedTokenizer, text: string, maxLen: number): number[] {
  if (maxLen < 2) throw new Error(`maxLen must be at least 2 (room for [CLS] and [SEP]), got ${maxLen}`);
  const prefix = prefixForTokens(text, maxLen);
  let ids = tok.tokenizer.encode(prefix).ids;
  if (prefix.length < text.length && ids.length < maxLen) ids = tok.tokenizer.encode(text).ids;
  if (ids.length <= maxLen) return ids;
  return [...ids.slice(0, maxLen - 1), ids[ids.length - 1]];
}

/**
 * Long texts (e-mails) would be normalised and split in full only to be truncated. Tokens never span white
 * space, so the tokens of a prefix cut at white space are exactly the first tokens of the whole text. Text here
 * averages 3-5 characters per token, so 8 per token nearly always gives enough; when it does not (fewer than
 * maxLen tokens), encodeText encodes the whole text, so the result never depends on the cut.
 */
export const PREFIX_CHARS_PER_TOKEN = 8;

function prefixForTokens(text: string, maxLen: number): string {
  const budget = maxLen * PREFIX_CHARS_PER_TOKEN;
  if (text.length <= budget) return text;
  const cut = text.slice(0, budget).search(/\s\S*$/);
  return cut > 0 ? text.slice(0, cut) : text;
}

/** Encodes a batch, padded to its longest sequence (at most maxLen). */
export function encodeBatch(tok: LoadedTokenizer, texts: string[], maxLen: number): EncodedBatch {
  const rows = texts.map((t) => encodeText(tok, t, maxLen));
  const seqLen = Math.max(2, ...rows.map((r) => r.length));
  const batch = texts.length;
  const inputIds = new BigInt64Array(batch * seqLen).fill(BigInt(tok.ids["[PAD]"]));
  const attentionMask = new BigInt64Array(batch * seqLen);
  rows.forEach((row, b) => {
    for (let i = 0; i < row.length; i++) {
      inputIds[b * seqLen + i] = BigInt(row[i]);
      attentionMask[b * seqLen + i] = 1n;
    }
  });
  return { inputIds, attentionMask, batch, seqLen };
}
