/**
 * A user's own task: a JSONL file with one `{"text": string, "label": string | number}` object per line, or for
 * sentence-pair tasks `{"text": ..., "text_pair": ..., "label": ...}` (also sentence1/sentence2,
 * premise/hypothesis, question/sentence, or any fields named by --text-field / --text-pair-field; fields.ts).
 * Blank lines are skipped; anything else that is not such an object is an error naming the line and field.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { type DataFieldFlags, type DataFields, resolveDataFields } from "./fields";
import { buildTaskDataset } from "./splits";
import type { RawRecord, TaskDataset } from "./types";

export class DataFileError extends Error {}

export function parseJsonlRecords(
  content: string,
  fileName = "data",
  flags: DataFieldFlags = {},
): RawRecord[] {
  return parseJsonl(content, fileName, flags).records;
}

/** The records and the text fields they were read from (resolved once, from the flags and the first row). */
export function parseJsonl(
  content: string,
  fileName = "data",
  flags: DataFieldFlags = {},
): { records: RawRecord[]; fields: DataFields } {
  const records: RawRecord[] = [];
  let fields: DataFields | undefined;
  const lines = content.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    const where = `${fileName}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new DataFileError(`${where}: not valid JSON (${(err as Error).message})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new DataFileError(`${where}: expected an object {"text": ..., "label": ...}`);
    }
    const row = value as Record<string, unknown>;
    fields ??= resolveDataFields(flags, row);
    const textOf = (field: string) => {
      const text = row[field];
      if (typeof text !== "string") throw new DataFileError(`${where}: field "${field}" must be a string`);
      if (text.trim() === "") throw new DataFileError(`${where}: field "${field}" is empty`);
      return text;
    };
    const text = textOf(fields.text);
    const textPair = fields.textPair === undefined ? undefined : textOf(fields.textPair);
    const label = row.label;
    let name: string;
    if (typeof label === "number" && Number.isInteger(label)) name = String(label);
    else if (typeof label === "string" && label.trim() !== "") name = label.trim();
    else throw new DataFileError(`${where}: field "label" must be a non-empty string or an integer`);
    records.push(textPair === undefined ? { text, label: name } : { text, textPair, label: name });
  }
  if (records.length === 0 || !fields) throw new DataFileError(`${fileName}: no examples`);
  return { records, fields };
}

/** Label set from the data: sorted (numerically when every label is an integer), so it does not depend on order. */
export function labelsOf(records: RawRecord[]): string[] {
  const labels = [...new Set(records.map((r) => r.label))];
  const numeric = labels.every((l) => /^-?\d+$/.test(l));
  return numeric ? labels.sort((a, b) => Number(a) - Number(b)) : labels.sort();
}

export function loadJsonlTask(file: string, flags: DataFieldFlags = {}): TaskDataset {
  let content: string;
  try {
    content = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataFileError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const name = path.basename(file).replace(/\.jsonl?$/i, "");
  const { records, fields } = parseJsonl(content, file, flags);
  const labels = labelsOf(records);
  if (labels.length < 2)
    throw new DataFileError(`${file}: needs at least two labels, found only '${labels[0]}'`);
  const dataset = buildTaskDataset(name, labels, records);
  dataset.fields = fields;
  if (fields.textPair !== undefined) dataset.pairFields = { text: fields.text, textPair: fields.textPair };
  return dataset;
}
