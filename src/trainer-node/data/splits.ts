/**
 * Deterministic splits, de-duplication and fingerprints.
 *
 * A text's split is a function of the text alone (sha256 of its normalised form -> bucket 0..99), so adding,
 * removing or reordering other examples never moves it, and the same text can never sit in both train and test.
 * A record with a `group` (genre: its document) is bucketed by the group instead, so no group straddles splits.
 */
import { createHash } from "node:crypto";
import type { Example, RawRecord, TaskDataset } from "./types";

/** Train / validation / test as percentages of the 100 hash buckets. */
export const SPLIT_PERCENT = { train: 80, validation: 10, test: 10 } as const;

/** The form two texts are compared in: Unicode NFKC, lower case, runs of white space collapsed, trimmed. */
export function normalizeText(text: string): string {
  return text.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();
}

function sha256Hex(data: string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Bucket 0..99 of a text: the first 32 bits of sha256(normalised text) modulo 100. */
export function hashBucket(text: string): number {
  return bucketOfNormalized(normalizeText(text));
}

function bucketOfNormalized(key: string): number {
  return createHash("sha256").update(key).digest().readUInt32BE(0) % 100;
}

/** Which of train / validation / test a text belongs to. */
export function splitOf(text: string): "train" | "validation" | "test" {
  return splitOfNormalized(normalizeText(text));
}

function splitOfNormalized(key: string): "train" | "validation" | "test" {
  const b = bucketOfNormalized(key);
  if (b < SPLIT_PERCENT.train) return "train";
  if (b < SPLIT_PERCENT.train + SPLIT_PERCENT.validation) return "validation";
  return "test";
}

/**
 * sha256 over the canonical records of one split: one JSON line `[split, labelName, text]` per example, in order
 * of (normalised text, label). Any change of a text, a label or membership changes it; input order does not.
 */
export function fingerprintSplit(split: string, labels: string[], examples: Example[]): string {
  // A pair adds its second text; single-text lines stay as they were, so their fingerprints do not move.
  const lines = examples.map((e) =>
    JSON.stringify(
      e.textPair === undefined
        ? [split, labels[e.label], e.text]
        : [split, labels[e.label], e.text, e.textPair],
    ),
  );
  lines.sort();
  return sha256Hex(lines.join("\n"));
}

/**
 * Builds a task: drops empty texts, de-duplicates on the normalised text (identical texts with different labels
 * are ambiguous, so all copies are dropped), assigns each text its hash split (of its `group` when it has one;
 * or the forced one) and fingerprints every split. `labels` fixes the label order; records with a label outside
 * it are a bug upstream.
 */
export function buildTaskDataset(name: string, labels: string[], records: Iterable<RawRecord>): TaskDataset {
  const labelIndex = new Map(labels.map((l, i) => [l, i]));
  const byKey = new Map<string, { record: RawRecord; conflict: boolean }>();
  const dropped = { duplicates: 0, conflictingLabels: 0, empty: 0 };
  for (const record of records) {
    if (!labelIndex.has(record.label))
      throw new Error(`${name}: label '${record.label}' is not one of ${labels}`);
    const key = recordKey(record);
    if (key.length === 0) {
      dropped.empty++;
      continue;
    }
    const seen = byKey.get(key);
    if (!seen) {
      byKey.set(key, { record, conflict: false });
      continue;
    }
    dropped.duplicates++;
    if (seen.record.label !== record.label) seen.conflict = true;
    // Keep the same copy whatever the input order: the smallest (split, text, source) wins.
    if (recordOrderKey(record) < recordOrderKey(seen.record)) seen.record = record;
  }

  const splits: TaskDataset["splits"] = { train: [], validation: [], test: [] };
  // Canonical order inside a split (by normalised text), so consumers see the same sequence every run.
  const keys = [...byKey.keys()].sort(compareStrings);
  for (const key of keys) {
    const { record, conflict } = byKey.get(key)!;
    if (conflict) {
      dropped.conflictingLabels++;
      continue;
    }
    const split =
      record.split ?? (record.group !== undefined ? splitOf(record.group) : splitOfNormalized(key));
    const label = labelIndex.get(record.label)!;
    const example: Example = { text: record.text, label, labelName: record.label };
    if (record.textPair !== undefined) example.textPair = record.textPair;
    if (record.source !== undefined) example.source = record.source;
    if (!splits[split]) splits[split] = [];
    splits[split].push(example);
  }
  const fingerprints: Record<string, string> = {};
  for (const [split, examples] of Object.entries(splits)) {
    fingerprints[split] = fingerprintSplit(split, labels, examples);
  }
  const splitNames = Object.keys(fingerprints).sort();
  fingerprints.all = sha256Hex(
    JSON.stringify({ name, labels, splits: splitNames.map((s) => [s, fingerprints[s]]) }),
  );
  return { name, labels, splits, fingerprints, dropped };
}

/**
 * What de-duplication and the split hash see: the normalised text, or for a pair both normalised texts joined by
 * a NUL (so (a, b) and (b, a) are different examples); empty when a text of it is empty.
 */
function recordKey(r: RawRecord): string {
  const text = normalizeText(r.text);
  if (r.textPair === undefined) return text;
  const pair = normalizeText(r.textPair);
  return text && pair ? `${text}\u0000${pair}` : "";
}

function recordOrderKey(r: RawRecord): string {
  const text = r.textPair === undefined ? r.text : `${r.text}\u0000${r.textPair}`;
  const key = `${r.split ?? ""}\u0000${text}\u0000${r.source ?? ""}`;
  return r.group === undefined ? key : `${key}\u0000${r.group}`;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
