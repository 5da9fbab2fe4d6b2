/**
 * The pretraining corpus as token ids, tokenized once and cached on disk: tokenizing ~20k segments takes
 * about 18 s, which every pretraining run and test would otherwise pay. The cache key is the corpus
 * fingerprint, the tokenizer file's sha256 and the sequence length, so any change to those re-tokenizes.
 * The cache lives in node_modules/.cache/sluice (git-ignored, the usual place for tool caches).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { encodeText } from "../../core/tokenizer";
import { loadPretrainingCorpus } from "../data/corpus";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../data/tokenizer-file";

export const CACHE_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../node_modules/.cache/sluice",
);

/** Token id sequences ([CLS] ... [SEP], truncated to seq) packed into one array with offsets. */
export interface IdSequences {
  offsets: Uint32Array;
  ids: Int32Array;
}

export const sequenceCount = (s: IdSequences) => s.offsets.length - 1;
export const sequenceAt = (s: IdSequences, i: number) => s.ids.subarray(s.offsets[i], s.offsets[i + 1]);

export interface CorpusIds {
  train: IdSequences;
  validation: IdSequences;
  corpusFingerprint: string;
  tokenizerSha256: string;
  seq: number;
}

/** Packs id sequences into one array with offsets. */
export function packSequences(seqs: number[][]): IdSequences {
  const offsets = new Uint32Array(seqs.length + 1);
  for (let i = 0; i < seqs.length; i++) offsets[i + 1] = offsets[i] + seqs[i].length;
  const ids = new Int32Array(offsets[seqs.length]);
  for (let i = 0; i < seqs.length; i++) ids.set(seqs[i], offsets[i]);
  return { offsets, ids };
}

// File layout (little-endian uint32/int32): nTrain, nVal, train offsets, val offsets, train ids, val ids.
export function serialiseIds(train: IdSequences, validation: IdSequences): Buffer {
  const parts = [
    Uint32Array.of(sequenceCount(train), sequenceCount(validation)),
    train.offsets,
    validation.offsets,
    train.ids,
    validation.ids,
  ];
  return Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
}

export function deserialiseIds(buf: Buffer): { train: IdSequences; validation: IdSequences } {
  const words = new Uint32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const [nTrain, nVal] = words;
  const trainOffsets = words.slice(2, 3 + nTrain);
  const valOffsets = words.slice(3 + nTrain, 4 + nTrain + nVal);
  let at = 4 + nTrain + nVal;
  const trainIds = new Int32Array(words.buffer, at * 4, trainOffsets[nTrain]);
  at += trainOffsets[nTrain];
  const valIds = new Int32Array(words.buffer, at * 4, valOffsets[nVal]);
  if (at + valOffsets[nVal] !== words.length) throw new Error("corrupt corpus id cache");
  return {
    train: { offsets: trainOffsets, ids: trainIds },
    validation: { offsets: valOffsets, ids: valIds },
  };
}

/** Tokenized train and validation segments of the pretraining corpus (from the cache when it matches). */
export function loadCorpusIds(opts: { seq: number; tokenizerFile?: string; cacheDir?: string }): CorpusIds {
  const tokenizerFile = opts.tokenizerFile ?? DEFAULT_TOKENIZER_PATH;
  const tokenizerSha256 = createHash("sha256").update(readFileSync(tokenizerFile)).digest("hex");
  const corpus = loadPretrainingCorpus();
  const key = createHash("sha256")
    .update(`${corpus.fingerprint}\n${tokenizerSha256}\n${opts.seq}\nv1`)
    .digest("hex")
    .slice(0, 16);
  const dir = opts.cacheDir ?? CACHE_DIR;
  const file = path.join(dir, `corpus-ids-${key}.bin`);
  const meta = { corpusFingerprint: corpus.fingerprint, tokenizerSha256, seq: opts.seq };
  if (existsSync(file)) {
    try {
      return { ...deserialiseIds(readFileSync(file)), ...meta };
    } catch {
      // A truncated or stale file: fall through and rebuild it.
    }
  }
  const tok = loadTokenizerFile(tokenizerFile);
  const train = packSequences(corpus.train.map((t) => encodeText(tok, t, opts.seq)));
  const validation = packSequences(corpus.validation.map((t) => encodeText(tok, t, opts.seq)));
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, serialiseIds(train, validation));
  renameSync(tmp, file);
  return { train, validation, ...meta };
}
