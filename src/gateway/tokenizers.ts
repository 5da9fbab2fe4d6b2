/**
 * Tokenizers per isolate, loaded only by routes that tokenize (classify), never with a session: a variant's
 * tokenizer.json is often one object shared by the whole family, and a broken one must not stop /v2 infer,
 * which never tokenizes. Verified against the registry's sha256 like the model, parsed once, and kept in a
 * small LRU keyed by that sha256 (bounded by count: a tokenizer is a few hundred KB).
 *
 * As with the catalog (catalog.ts), only settled tokenizers are shared between requests, never a load in
 * flight (workerd cancels a request that awaits another request's I/O): concurrent misses each load.
 */
import { type LoadedTokenizer, loadTokenizer } from "../core/tokenizer";
import { GatewayError } from "./errors";
import { ArtifactError, fetchVerified } from "./sessions";

export interface TokenizerRef {
  tokenizerKey: string | null;
  tokenizerSha256: string | null;
}

export class TokenizerCache {
  /** Map order is recency order: the first key is the least recently used. */
  private readonly entries = new Map<string, LoadedTokenizer>();
  /** Loads made (observable so a test can prove the cache works). */
  loads = 0;

  constructor(private readonly maxEntries = 8) {}

  /**
   * The variant's tokenizer; a 503 naming `tokenizer` when it is missing from R2, fails its sha256 check or
   * does not parse (the variant's files are at fault, not the request). `variant` names it in the message.
   */
  async get(bucket: R2Bucket, ref: TokenizerRef, variant: string): Promise<LoadedTokenizer> {
    if (!ref.tokenizerKey || !ref.tokenizerSha256) {
      throw new GatewayError(503, "tokenizer_unavailable", `${variant} has no tokenizer.json`, "tokenizer");
    }
    const hit = this.entries.get(ref.tokenizerSha256);
    if (hit) {
      this.entries.delete(ref.tokenizerSha256);
      this.entries.set(ref.tokenizerSha256, hit);
      return hit;
    }
    this.loads++;
    let tokenizer: LoadedTokenizer;
    try {
      const bytes = await fetchVerified(bucket, ref.tokenizerKey, ref.tokenizerSha256, "tokenizer.json", {
        r2: 0,
        verify: 0,
        session: 0,
      });
      try {
        tokenizer = loadTokenizer(new TextDecoder().decode(bytes));
      } catch (err) {
        console.warn(`gateway: ${variant} tokenizer.json does not load: ${(err as Error).message}`);
        throw new ArtifactError("invalid", "tokenizer.json is not a tokenizer the gateway can load");
      }
    } catch (err) {
      if (!(err instanceof ArtifactError)) throw err;
      throw new GatewayError(
        503,
        "tokenizer_unavailable",
        `the tokenizer of ${variant} cannot be loaded: ${err.message}`,
        "tokenizer",
      );
    }
    this.entries.set(ref.tokenizerSha256, tokenizer);
    while (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value as string);
    }
    return tokenizer;
  }
}
