/**
 * Tokenizer glue shared by the trainer (Node) and the gateway (workerd): load a Hugging Face `tokenizer.json`
 * with @huggingface/tokenizers (pure JS, no fs, no eval, so it runs in both) and turn a batch of texts into the
 * int64 tensors an ONNX encoder takes.
 *
 * Any model's own tokenizer works (WordPiece, byte-level BPE, Unigram): the special tokens are found by role
 * (pad, sequence start, sequence end, unknown, mask) in the file itself, never by their BERT names, and never
 * guessed. See docs/tokenizers.md.
 *
 * The library encodes one text at a time and has no padding or truncation, so those live here, following
 * Hugging Face's rules: truncation drops content tokens from the end but keeps the tokens the post-processor
 * puts after the text (BERT's [SEP], RoBERTa's </s>); padding is to the longest sequence in the batch (at most
 * maxLen) with the pad id, attention mask 0.
 *
 * Sentence pairs follow the file's own pair template (TemplateProcessing `pair`, BertProcessing's
 * `[CLS] A [SEP] B [SEP]` with type ids 0/1, RobertaProcessing's `<s> A </s></s> B </s>` with type ids 0), and
 * are truncated as the Rust tokenizers' "longest_first" strategy truncates them (see truncateLongestFirst). The
 * library's own pair encoding cannot truncate, so both are done here from the content ids of each side.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { PrecompiledCharsmap } from "./precompiled-charsmap";

/** The parts of a `tokenizer.json` this module relies on (the file has more; the library reads it all). */
export interface TokenizerJson {
  version?: string;
  added_tokens: { id: number; content: string; special?: boolean; [key: string]: unknown }[];
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  padding?: unknown;
  model: {
    type: string;
    /** WordPiece and BPE: token -> id; Unigram: [piece, score] in id order. */
    vocab: Record<string, number> | [string, number][];
    unk_token?: string | null;
    unk_id?: number | null;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** The ids a model's input is built from, each found by its role in the tokenizer.json. */
export interface SpecialTokenIds {
  /** Fills the positions after a text (attention mask 0): `padding.pad_id`, else [PAD] / <pad>. */
  pad: number;
  /** Opens every sequence ([CLS], <s>), put there by the post-processor: what a classifier pools. */
  cls: number;
  /** Closes every sequence ([SEP], </s>), put there by the post-processor; truncation keeps it. */
  sep: number;
  /** Stands for text the vocabulary cannot spell; undefined when there is none (byte-level BPE). */
  unk?: number;
  /** Masked-language-model pretraining's mask token; undefined when the tokenizer has none. */
  mask?: number;
}

export interface LoadedTokenizer {
  tokenizer: Tokenizer;
  vocabSize: number;
  /** Ids of the special tokens by role, read from the file (never assumed). */
  specialIds: SpecialTokenIds;
  /** Every id that is not text: the roles above plus each added token marked special, ascending. */
  allSpecialIds: readonly number[];
  /** What the post-processor puts around a single text: ids before it (starting with cls), after it (ending with sep). */
  template: { before: readonly number[]; after: readonly number[] };
  /** What the post-processor makes of a sentence pair, in order; null when it has no pair form. */
  pairTemplate: readonly PairPiece[] | null;
  /**
   * Characters a long text may be cut at before encoding (see prefixForTokens), or null when this tokenizer's
   * pre-tokenizer is not known to split there, in which case long texts are encoded whole.
   */
  cutAt: RegExp | null;
}

/** One piece of a pair template: a special token's id, or where text A / B goes; each with its token type id. */
export type PairPiece = { special: number; typeId: number } | { sequence: "A" | "B"; typeId: number };

/** One encoded sentence pair: ids with the template's specials and the token type id of each. */
export interface EncodedPair {
  ids: number[];
  typeIds: number[];
}

export interface EncodedBatch {
  /** Row-major [batch, seqLen]. */
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  /** Token type (segment) ids: the pair template's per token, 0 for single texts and padding. */
  tokenTypeIds: BigInt64Array;
  batch: number;
  seqLen: number;
}

/** Usual names of the roles that post-processors do not name, tried in this order. */
const ROLE_NAMES = {
  pad: ["[PAD]", "<pad>", "<PAD>", "<|pad|>", "<|padding|>"],
  unk: ["[UNK]", "<unk>", "<UNK>", "<|unk|>"],
  mask: ["[MASK]", "<mask>", "<MASK>", "<|mask|>"],
  cls: ["[CLS]", "<s>", "<cls>", "<|startoftext|>"],
  sep: ["[SEP]", "</s>", "<sep>", "<|endoftext|>"],
} as const;

/** Loads a `tokenizer.json` given as parsed JSON or as its text; throws when a required role is missing. */
export function loadTokenizer(json: TokenizerJson | string): LoadedTokenizer {
  const parsed: TokenizerJson = typeof json === "string" ? JSON.parse(json) : json;
  if (!parsed || typeof parsed !== "object" || !parsed.model || !Array.isArray(parsed.added_tokens))
    throw new Error("not a Hugging Face tokenizer.json (needs 'model' and 'added_tokens')");
  // The library's Unigram ignores byte_fallback and would give unk where Hugging Face gives <0x..> byte pieces.
  if (parsed.model.type === "Unigram" && parsed.model.byte_fallback === true)
    throw new Error(
      "model.byte_fallback is true (unknown characters as <0x..> byte pieces): Sluice's tokenizer library does " +
        "not implement it for Unigram models, so it would feed the model different ids than Hugging Face does",
    );
  const tokenizer = new Tokenizer(parsed, {});
  installCharsmaps(tokenizer, parsed.normalizer);
  const vocab = tokenizer.get_vocab(true);
  const idOf = (token: string | null | undefined) =>
    typeof token === "string" ? tokenizer.token_to_id(token) : undefined;
  const byName = (names: readonly string[]) => {
    for (const name of names) {
      const id = idOf(name);
      if (id !== undefined) return id;
    }
    return undefined;
  };
  const problems: string[] = [];

  // Sequence start and end: only what the post-processor really adds around a text counts.
  const template = templateOf(parsed.post_processor);
  const toIds = (tokens: TemplateToken[]) =>
    tokens.map(({ token, declared }) => {
      const id = idOf(token);
      if (id === undefined)
        throw new Error(`the post_processor adds '${token}', which is not in the tokenizer's vocabulary`);
      if (declared !== undefined && declared !== id)
        throw new Error(
          `the post_processor gives '${token}' id ${declared}, but the vocabulary has it at ${id}; fix one of them`,
        );
      return id;
    });
  const before = toIds(template?.before ?? []);
  const after = toIds(template?.after ?? []);
  const pairConfig = pairTemplateOf(parsed.post_processor);
  const pairTemplate =
    pairConfig?.map(
      (p): PairPiece => ("sequence" in p ? p : { special: toIds([p.special])[0], typeId: p.typeId }),
    ) ?? null;
  // The library must agree: an empty text is exactly the template's tokens.
  const empty = tokenizer.encode("").ids;
  if (template && empty.join() !== [...before, ...after].join())
    throw new Error(
      `the post_processor's template gives [${[...before, ...after].join(", ")}] around a text, but the tokenizer ` +
        `encodes an empty text as [${empty.join(", ")}]`,
    );
  const cls = before[0];
  const sep = after[after.length - 1];
  const unused = (role: "cls" | "sep") => {
    const found = ROLE_NAMES[role].find((name) => idOf(name) !== undefined);
    return found ? ` (the file has ${found}, but its post_processor does not add it)` : "";
  };
  const templateHint =
    "give it a post_processor that wraps the text, e.g. TemplateProcessing '[CLS] $A [SEP]' or " +
    "RobertaProcessing '<s> $A </s>' (for a BERT vocab.txt, `sluice tokenizer from-vocab` builds one)";
  if (cls === undefined)
    problems.push(`no sequence-start token (role cls, like [CLS] or <s>)${unused("cls")}: ${templateHint}`);
  if (sep === undefined)
    problems.push(`no sequence-end token (role sep, like [SEP] or </s>)${unused("sep")}: ${templateHint}`);

  // Padding: the file's padding settings when it has them, else a token with the usual name.
  let pad: number | undefined;
  const padding = parsed.padding as { pad_id?: unknown; pad_token?: unknown } | null | undefined;
  if (padding && typeof padding.pad_id === "number") {
    if (tokenizer.id_to_token(padding.pad_id) === undefined)
      throw new Error(`padding.pad_id ${padding.pad_id} is not an id in the vocabulary`);
    pad = padding.pad_id;
  } else if (padding && typeof padding.pad_token === "string") {
    pad = idOf(padding.pad_token);
    if (pad === undefined)
      throw new Error(`padding.pad_token '${padding.pad_token}' is not in the tokenizer's vocabulary`);
  } else pad = byName(ROLE_NAMES.pad);
  if (pad === undefined)
    problems.push(
      `no padding token (role pad; looked for padding.pad_id and the tokens ${ROLE_NAMES.pad.join(" ")}): ` +
        `set "padding": {"pad_id": <id>, "pad_token": "<token>"} in the tokenizer.json to the model's pad token ` +
        `(its config.json pad_token_id), or add a [PAD] / <pad> token`,
    );
  if (problems.length > 0) throw new Error(problems.join("; "));

  // Unknown: the model's own setting (WordPiece/BPE unk_token, Unigram unk_id), else the usual names.
  const model = parsed.model;
  const unk =
    typeof model.unk_id === "number" && tokenizer.id_to_token(model.unk_id) !== undefined
      ? model.unk_id
      : (idOf(model.unk_token) ?? byName(ROLE_NAMES.unk));
  const mask = byName(ROLE_NAMES.mask);

  const specialIds: SpecialTokenIds = { pad: pad!, cls: cls!, sep: sep! };
  if (unk !== undefined) specialIds.unk = unk;
  if (mask !== undefined) specialIds.mask = mask;
  const all = new Set<number>([...before, ...after, pad!, ...(unk === undefined ? [] : [unk])]);
  if (mask !== undefined) all.add(mask);
  for (const t of parsed.added_tokens) if (t.special) all.add(t.id);
  return {
    tokenizer,
    // Distinct tokens, added ones included (Python's len(tokenizer)); a vocabulary with holes has fewer than its largest id + 1.
    vocabSize: [...vocab.keys()].filter((token) => token !== undefined).length,
    specialIds,
    allSpecialIds: [...all].sort((a, b) => a - b),
    template: { before, after },
    pairTemplate,
    cutAt: cutPattern(parsed),
  };
}

/**
 * The library's `Precompiled` normalizer ignores the file's charsmap (it applies NFKC); each one is given the
 * file's own charsmap instead (precompiled-charsmap.ts), so SentencePiece tokenizers normalise as Hugging Face's
 * Rust tokenizers do. The library builds one normalizer object per config entry (a Sequence keeps them in
 * `normalizers`, in order), whose `normalize` both the Sequence and a bare top-level normalizer call; if a new
 * library version stops doing that, this throws rather than leave the approximation in place. (Added tokens
 * marked `normalized: true` were matched by the library with its own normalizer while it loaded: none of the
 * SentencePiece converters writes such tokens.)
 */
function installCharsmaps(tokenizer: Tokenizer, config: unknown): void {
  type Node = { type?: string; normalizers?: unknown[]; precompiled_charsmap?: unknown } | null;
  type Instance = { config?: Node; normalizers?: unknown[]; normalize?: (text: string) => string } | null;
  let wanted = 0;
  const count = (c: unknown) => {
    const n = c as Node;
    if (n?.type === "Precompiled") wanted++;
    else if (n?.type === "Sequence") (n.normalizers ?? []).forEach(count);
  };
  count(config);
  if (wanted === 0) return;
  let installed = 0;
  const visit = (instance: unknown) => {
    const n = instance as Instance;
    if (n?.config?.type === "Precompiled" && typeof n.normalize === "function") {
      const charsmap = new PrecompiledCharsmap(n.config.precompiled_charsmap);
      n.normalize = (text) => charsmap.normalize(text);
      installed++;
    } else if (n?.config?.type === "Sequence") (n.normalizers ?? []).forEach(visit);
  };
  visit((tokenizer as unknown as { normalizer: unknown }).normalizer);
  if (installed !== wanted)
    throw new Error(
      `the tokenizer.json has ${wanted} Precompiled normalizer(s) but only ${installed} could be given the ` +
        "file's charsmap: @huggingface/tokenizers changed how it builds normalizers (see installCharsmaps)",
    );
}

interface TemplateToken {
  token: string;
  /** The id the post-processor's config states, when it states one. */
  declared?: number;
}

/** The special tokens a post-processor config puts before and after a single text; null when it adds none. */
function templateOf(config: unknown): { before: TemplateToken[]; after: TemplateToken[] } | null {
  if (!config || typeof config !== "object") return null;
  const pp = config as { type?: string; [key: string]: unknown };
  switch (pp.type) {
    case "TemplateProcessing": {
      type Item = { SpecialToken?: { id: string }; Sequence?: { id: string } };
      const single = (pp.single ?? []) as Item[];
      const specials = (pp.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
      const at = single.findIndex((item) => item.Sequence?.id === "A");
      if (at < 0) throw new Error("the post_processor's single template has no $A (the text)");
      const tokens = (items: Item[]) =>
        items.flatMap((item): TemplateToken[] => {
          if (!item.SpecialToken) return [];
          const token = item.SpecialToken.id;
          const ids = specials[token]?.ids;
          if (ids && ids.length !== 1)
            throw new Error(
              `the post_processor's special token '${token}' has ${ids.length} ids; Sluice needs one`,
            );
          return [{ token, declared: ids?.[0] }];
        });
      return { before: tokens(single.slice(0, at)), after: tokens(single.slice(at + 1)) };
    }
    case "BertProcessing":
    case "RobertaProcessing": {
      const pair = (v: unknown): TemplateToken => {
        if (!Array.isArray(v) || typeof v[0] !== "string")
          throw new Error(`the ${pp.type} post_processor needs cls and sep as [token, id]`);
        return { token: v[0], declared: typeof v[1] === "number" ? v[1] : undefined };
      };
      return { before: [pair(pp.cls)], after: [pair(pp.sep)] };
    }
    case "Sequence": {
      const found = ((pp.processors ?? []) as unknown[])
        .map(templateOf)
        .filter((t) => t !== null && t.before.length + t.after.length > 0);
      if (found.length > 1) throw new Error("the post_processor Sequence adds special tokens more than once");
      return found[0] ?? null;
    }
    default:
      return null; // ByteLevel and the like only fix offsets.
  }
}

/**
 * Whether a tokenizer.json's post_processor lays out sentence pairs: the one decision `loadTokenizer` makes for
 * `pairTemplate`, without building the tokenizer (the registry checks it at upload). Throws, saying why, for a
 * pair template that is malformed.
 */
export function encodesPairs(json: { post_processor?: unknown }): boolean {
  return pairTemplateOf(json.post_processor) !== null;
}

type PairConfigPiece = { special: TemplateToken; typeId: number } | { sequence: "A" | "B"; typeId: number };

/**
 * The pieces a post-processor config makes of a sentence pair, in order; null when it has no pair form (no
 * post-processor, ByteLevel only, or a TemplateProcessing without `pair`).
 */
function pairTemplateOf(config: unknown): PairConfigPiece[] | null {
  if (!config || typeof config !== "object") return null;
  const pp = config as { type?: string; [key: string]: unknown };
  const named = (v: unknown): TemplateToken => {
    if (!Array.isArray(v) || typeof v[0] !== "string")
      throw new Error(`the ${pp.type} post_processor needs cls and sep as [token, id]`);
    return { token: v[0], declared: typeof v[1] === "number" ? v[1] : undefined };
  };
  switch (pp.type) {
    case "TemplateProcessing": {
      type Item = {
        SpecialToken?: { id: string; type_id?: number };
        Sequence?: { id: string; type_id?: number };
      };
      if (!Array.isArray(pp.pair)) return null;
      const specials = (pp.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
      const pieces = (pp.pair as Item[]).map((item): PairConfigPiece => {
        if (item.Sequence) {
          const id = item.Sequence.id;
          if (id !== "A" && id !== "B")
            throw new Error(`the post_processor's pair template names sequence '${id}'; only A and B exist`);
          return { sequence: id, typeId: item.Sequence.type_id ?? 0 };
        }
        if (!item.SpecialToken)
          throw new Error("the post_processor's pair template has an item that is neither");
        const token = item.SpecialToken.id;
        const ids = specials[token]?.ids;
        if (ids && ids.length !== 1)
          throw new Error(
            `the post_processor's special token '${token}' has ${ids.length} ids; Sluice needs one`,
          );
        return { special: { token, declared: ids?.[0] }, typeId: item.SpecialToken.type_id ?? 0 };
      });
      const count = (id: "A" | "B") => pieces.filter((p) => "sequence" in p && p.sequence === id).length;
      if (count("A") !== 1 || count("B") !== 1)
        throw new Error("the post_processor's pair template must hold $A and $B once each");
      return pieces;
    }
    // The Rust tokenizers' fixed forms: BERT types the second segment 1, RoBERTa (one token type) types all 0.
    case "BertProcessing": {
      const [cls, sep] = [named(pp.cls), named(pp.sep)];
      return [
        { special: cls, typeId: 0 },
        { sequence: "A", typeId: 0 },
        { special: sep, typeId: 0 },
        { sequence: "B", typeId: 1 },
        { special: sep, typeId: 1 },
      ];
    }
    case "RobertaProcessing": {
      const [cls, sep] = [named(pp.cls), named(pp.sep)];
      return [
        { special: cls, typeId: 0 },
        { sequence: "A", typeId: 0 },
        { special: sep, typeId: 0 },
        { special: sep, typeId: 0 },
        { sequence: "B", typeId: 0 },
        { special: sep, typeId: 0 },
      ];
    }
    case "Sequence": {
      const found = ((pp.processors ?? []) as unknown[]).map(pairTemplateOf).filter((t) => t !== null);
      return found[0] ?? null;
    }
    default:
      return null;
  }
}

/**
 * Long texts (e-mails) would be normalised and split in full only to be truncated. Where the library's
 * pre-tokenizer splits at white space (BertPreTokenizer, Whitespace, WhitespaceSplit, ByteLevel with its regex),
 * a token never spans it, so the tokens of a prefix cut at white space are exactly the first tokens of the
 * whole text, provided the normalizer cannot remove white space (a Replace might). Text here averages 3-5
 * characters per token, so 8 per token nearly always gives enough; when it does not (fewer than maxLen tokens),
 * encodeText encodes the whole text, so the result never depends on the cut. Metaspace (SentencePiece) is not
 * split by this library, so Unigram tokenizers encode long texts whole.
 */
export const PREFIX_CHARS_PER_TOKEN = 8;

const SPLITS_AT_WHITESPACE = new Set(["BertPreTokenizer", "Whitespace", "WhitespaceSplit", "ByteLevel"]);
const LOCAL_NORMALIZERS = new Set([
  "BertNormalizer",
  "NFC",
  "NFD",
  "NFKC",
  "NFKD",
  "Lowercase",
  "StripAccents",
  "Strip",
  "Prepend",
  "Precompiled",
]);

function cutPattern(parsed: TokenizerJson): RegExp | null {
  const splits = (c: unknown): boolean => {
    const p = c as { type?: string; use_regex?: boolean; pretokenizers?: unknown[] } | null;
    if (!p) return false;
    if (p.type === "Sequence") return (p.pretokenizers ?? []).some(splits);
    if (p.type === "ByteLevel") return p.use_regex !== false;
    return SPLITS_AT_WHITESPACE.has(p.type ?? "");
  };
  const keepsWhitespace = (c: unknown): boolean => {
    const n = c as { type?: string; normalizers?: unknown[] } | null;
    if (!n) return true;
    if (n.type === "Sequence") return (n.normalizers ?? []).every(keepsWhitespace);
    return LOCAL_NORMALIZERS.has(n.type ?? "");
  };
  return splits(parsed.pre_tokenizer) && keepsWhitespace(parsed.normalizer) ? /[ \t\n\r]+[^ \t\n\r]*$/ : null;
}

function prefixForTokens(tok: LoadedTokenizer, text: string, maxLen: number): string {
  const budget = maxLen * PREFIX_CHARS_PER_TOKEN;
  if (!tok.cutAt || text.length <= budget) return text;
  // The start of the last white-space run in the budget: the prefix ends on a word, not on white space.
  const cut = text.slice(0, budget).search(tok.cutAt);
  return cut > 0 ? text.slice(0, cut) : text;
}

/**
 * Ids of one text as the file's post-processor wraps it ([CLS] tokens... [SEP], <s> tokens... </s>), truncated
 * to maxLen by dropping content tokens from the end, so the closing tokens stay.
 */
export function encodeText(tok: LoadedTokenizer, text: string, maxLen: number): number[] {
  const { before, after } = tok.template;
  const specials = before.length + after.length;
  if (maxLen < Math.max(2, specials))
    throw new Error(
      `maxLen must be at least ${Math.max(2, specials)} (room for the tokens around a text), got ${maxLen}`,
    );
  const prefix = prefixForTokens(tok, text, maxLen);
  let ids = tok.tokenizer.encode(prefix).ids;
  if (prefix.length < text.length && ids.length < maxLen) ids = tok.tokenizer.encode(text).ids;
  if (ids.length <= maxLen) return ids;
  return [...ids.slice(0, maxLen - after.length), ...ids.slice(ids.length - after.length)];
}

/**
 * The content ids of one text (no special tokens): all of them, or, for a long text cut at white space (see
 * prefixForTokens), at least its first `atLeast`; `whole` says which.
 */
function contentIds(tok: LoadedTokenizer, text: string, atLeast: number): { ids: number[]; whole: boolean } {
  const plain = (t: string) => tok.tokenizer.encode(t, { add_special_tokens: false }).ids;
  const prefix = prefixForTokens(tok, text, atLeast);
  if (prefix.length === text.length) return { ids: plain(text), whole: true };
  const ids = plain(prefix);
  return ids.length < atLeast ? { ids: plain(text), whole: true } : { ids, whole: false };
}

/**
 * How many tokens of A and of B stay so that both fit `budget`, as the Rust tokenizers' "longest_first"
 * truncation decides (tokenizers/src/utils/truncation.rs): when only the longer side is too long it is cut to
 * what the shorter one leaves; when both must be cut, each keeps half, the odd token going to the longer side
 * (to B when they are equally long). (Python's slow tokenizers give a tie's odd token to A instead.)
 */
export function truncateLongestFirst(lenA: number, lenB: number, budget: number): [number, number] {
  if (lenA + lenB <= budget) return [lenA, lenB];
  const swap = lenA > lenB;
  let [n1, n2] = swap ? [lenB, lenA] : [lenA, lenB];
  n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = Math.floor(budget / 2);
    n2 = n1 + (budget % 2);
  }
  return swap ? [n2, n1] : [n1, n2];
}

/**
 * A sentence pair as the file's pair template lays it out (BERT: [CLS] A [SEP] B [SEP], type ids 0 then 1;
 * RoBERTa: <s> A </s></s> B </s>, type ids 0), truncated "longest_first" to maxLen tokens in all.
 */
export function encodePair(tok: LoadedTokenizer, a: string, b: string, maxLen: number): EncodedPair {
  const template = tok.pairTemplate;
  if (!template)
    throw new Error(
      "this tokenizer's post_processor has no pair template (TemplateProcessing 'pair', BertProcessing or " +
        "RobertaProcessing), so it cannot encode a text pair",
    );
  const specials = template.filter((p) => "special" in p).length;
  if (maxLen < specials + 2)
    throw new Error(
      `maxLen must be at least ${specials + 2} (the pair template's ${specials} special tokens and one token of each text), got ${maxLen}`,
    );
  const budget = maxLen - specials;
  let sideA = contentIds(tok, a, budget);
  let sideB = contentIds(tok, b, budget);
  // A cut text's length is only a lower bound (at least the budget). That decides everything while the other
  // side is shorter than the budget; when it is not, both are halved and the odd token goes to the really
  // longer one, so both are encoded whole.
  const cutBesideLong = (cut: typeof sideA, other: typeof sideA) => !cut.whole && other.ids.length >= budget;
  if (cutBesideLong(sideA, sideB) || cutBesideLong(sideB, sideA)) {
    sideA = contentIds(tok, a, Number.POSITIVE_INFINITY);
    sideB = contentIds(tok, b, Number.POSITIVE_INFINITY);
  }
  const [idsA, idsB] = [sideA.ids, sideB.ids];
  const [keepA, keepB] = truncateLongestFirst(idsA.length, idsB.length, budget);
  const sides = { A: idsA.slice(0, keepA), B: idsB.slice(0, keepB) };
  const out: EncodedPair = { ids: [], typeIds: [] };
  for (const piece of template) {
    const ids = "special" in piece ? [piece.special] : sides[piece.sequence];
    for (const id of ids) {
      out.ids.push(id);
      out.typeIds.push(piece.typeId);
    }
  }
  return out;
}

/** Encodes a batch (of single texts, or of pairs when `pairs` gives each text its second), padded to its longest sequence (at most maxLen) with the pad id. */
export function encodeBatch(
  tok: LoadedTokenizer,
  texts: string[],
  maxLen: number,
  /** A model exported with a fixed sequence length takes exactly that many tokens: truncate and pad to it. */
  fixedLen?: number,
  /** The second text of each pair, parallel to `texts`. */
  pairs?: readonly string[],
): EncodedBatch {
  if (pairs && pairs.length !== texts.length)
    throw new Error(`${texts.length} texts but ${pairs.length} second texts of pairs`);
  const len = fixedLen ?? maxLen;
  const rows: EncodedPair[] = texts.map((t, i) =>
    pairs ? encodePair(tok, t, pairs[i], len) : { ids: encodeText(tok, t, len), typeIds: [] },
  );
  const { before, after } = tok.template;
  const seqLen = fixedLen ?? Math.max(2, before.length + after.length, ...rows.map((r) => r.ids.length));
  const batch = texts.length;
  const inputIds = new BigInt64Array(batch * seqLen).fill(BigInt(tok.specialIds.pad));
  const attentionMask = new BigInt64Array(batch * seqLen);
  const tokenTypeIds = new BigInt64Array(batch * seqLen);
  rows.forEach((row, b) => {
    for (let i = 0; i < row.ids.length; i++) {
      inputIds[b * seqLen + i] = BigInt(row.ids[i]);
      attentionMask[b * seqLen + i] = 1n;
      if (row.typeIds.length) tokenTypeIds[b * seqLen + i] = BigInt(row.typeIds[i]);
    }
  });
  return { inputIds, attentionMask, tokenTypeIds, batch, seqLen };
}
