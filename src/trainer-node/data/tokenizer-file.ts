/** The committed tokenizer (`models/tokenizer.json`, rebuilt by `npm run build:tokenizer`), loaded once per process. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type LoadedTokenizer, loadTokenizer } from "../../core/tokenizer";

export const DEFAULT_TOKENIZER_PATH = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../models/tokenizer.json",
);

const cache = new Map<string, LoadedTokenizer>();

export function loadTokenizerFile(file = DEFAULT_TOKENIZER_PATH): LoadedTokenizer {
  const key = path.resolve(file);
  let tok = cache.get(key);
  if (!tok) {
    tok = loadTokenizer(readFileSync(key, "utf8"));
    cache.set(key, tok);
  }
  return tok;
}
