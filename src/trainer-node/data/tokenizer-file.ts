/**
 * Tokenizer files in the trainer: the committed one (`models/tokenizer.json`, rebuilt by
 * `npm run build:tokenizer`) or a model's own, loaded once per process, and the check that a tokenizer fits a
 * model's embedding table.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type LoadedTokenizer, loadTokenizer } from "../../core/tokenizer";

export const DEFAULT_TOKENIZER_PATH = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../models/tokenizer.json",
);

const cache = new Map<string, LoadedTokenizer>();

/** Loads (once per process) a tokenizer.json; a file that cannot be used is an error that names it. */
export function loadTokenizerFile(file = DEFAULT_TOKENIZER_PATH): LoadedTokenizer {
  const key = path.resolve(file);
  let tok = cache.get(key);
  if (!tok) {
    let text: string;
    try {
      text = readFileSync(key, "utf8");
    } catch (err) {
      throw new Error(`cannot read tokenizer ${file}: ${(err as Error).message}`);
    }
    try {
      tok = loadTokenizer(text);
    } catch (err) {
      throw new Error(`tokenizer ${file}: ${(err as Error).message}`);
    }
    cache.set(key, tok);
  }
  return tok;
}

/**
 * Hugging Face often pads a model's embedding table to a multiple (of 8, 64, 128) past the tokenizer's
 * vocabulary; those extra rows are never looked up. A gap this large or larger means another tokenizer.
 */
export const EMBEDDING_PADDING_LIMIT = 128;

/**
 * Throws unless the tokenizer's ids index the model's embedding table (`embeddingRows` rows) as the model's own
 * tokenizer would: never more tokens than rows, every id below the row count, and at most
 * EMBEDDING_PADDING_LIMIT - 1 unused rows at the end (HF's padding to a multiple).
 */
export function checkTokenizerFitsModel(
  tok: LoadedTokenizer,
  embeddingRows: number,
  tokenizerPath: string,
): void {
  let largestId = -1;
  for (const [token, id] of tok.tokenizer.get_vocab(true))
    if (token !== undefined && id > largestId) largestId = id;
  const fix =
    "pass the model's own tokenizer.json with --tokenizer, or build one from its vocab.txt with " +
    "`sluice tokenizer from-vocab <vocab.txt> --out tokenizer.json`";
  const sizes = `tokenizer ${tokenizerPath} has ${tok.vocabSize} tokens, the model's embedding table ${embeddingRows} rows`;
  if (tok.vocabSize > embeddingRows)
    throw new Error(
      `${sizes}: the tokenizer is larger than the model's vocabulary, so it is not the model's; ${fix}`,
    );
  if (largestId >= embeddingRows)
    throw new Error(`${sizes}, but its largest id is ${largestId}, past the table's end; ${fix}`);
  const gap = embeddingRows - tok.vocabSize;
  if (gap >= EMBEDDING_PADDING_LIMIT)
    throw new Error(
      `${sizes}: ${gap} rows would never be used, more than Hugging Face's padding of the embedding to a ` +
        `multiple (fewer than ${EMBEDDING_PADDING_LIMIT}), so the tokenizer is probably not the model's; ${fix}`,
    );
}
