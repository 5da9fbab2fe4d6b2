/**
 * A user's own task: a JSONL file with one `{"text": string, "label": string | number}` object per line.
 * Blank lines are skipped; anything else that is not such an object is an error naming the line.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { buildTaskDataset } from "./splits";
import type { RawRecord, TaskDataset } from "./types";

export class DataFileError extends Error {}

export function parseJsonlRecords(content: string, fileName = "data"): RawRecord[] {
  const records: RawRecord[] = [];
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
    const { text, label } = value as { text?: unknown; label?: unknown };
    if (typeof text !== "string") throw new DataFileError(`${where}: field "text" must be a string`);
    if (text.trim() === "") throw new DataFileError(`${where}: field "text" is empty`);
    if (typeof label === "number" && Number.isInteger(label)) {
      records.push({ text, label: String(label) });
    } else if (typeof label === "string" && label.trim() !== "") {
      records.push({ text, label: label.trim() });
    } else {
      throw new DataFileError(`${where}: field "label" must be a non-empty string or an integer`);
    }
  }
  if (records.length === 0) throw new DataFileError(`${fileName}: no examples`);
  return records;
}

/** Label set from the data: sorted (numerically when every label is an integer), so it does not depend on order. */
export function labelsOf(records: RawRecord[]): string[] {
  const labels = [...new Set(records.map((r) => r.label))];
  const numeric = labels.every((l) => /^-?\d+$/.test(l));
  return numeric ? labels.sort((a, b) => Number(a) - Number(b)) : labels.sort();
}

export function loadJsonlTask(file: string): TaskDataset {
  let content: string;
  try {
    content = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataFileError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const name = path.basename(file).replace(/\.jsonl?$/i, "");
  const records = parseJsonlRecords(content, file);
  const labels = labelsOf(records);
  if (labels.length < 2)
    throw new DataFileError(`${file}: needs at least two labels, found only '${labels[0]}'`);
  return buildTaskDataset(name, labels, records);
}
