/**
 * The task table: built-in tasks by name, or a user's JSONL file via `--data`. Parsed datasets are cached per
 * process, so a command that loads `spam` twice pays once.
 */
import path from "node:path";
import { type DataFieldFlags, fieldsKey } from "./fields";
import { loadGenre } from "./genre";
import { loadJsonlTask } from "./jsonl";
import { loadSentiment } from "./sentiment";
import { loadSpam } from "./spam";
import type { TaskDataset } from "./types";

export const BUILTIN_TASKS: Record<string, { summary: string; load: () => TaskDataset }> = {
  spam: { summary: "SpamAssassin e-mails, ham/spam; extra split `hard` = hard ham", load: loadSpam },
  sentiment: {
    summary: "UCI labelled sentences (imdb, yelp, amazon), negative/positive",
    load: loadSentiment,
  },
  genre: {
    summary: "Brown Corpus chunks of 50-90 words, press/general/learned/fiction; split by document",
    load: loadGenre,
  },
};

const cache = new Map<string, TaskDataset>();

/** A built-in task by name (`spam`, `sentiment`, `genre`). */
export function loadTask(name: string): TaskDataset {
  const task = BUILTIN_TASKS[name];
  if (!task)
    throw new Error(
      `unknown task '${name}' (built-in: ${Object.keys(BUILTIN_TASKS).join(", ")}; or --data <file.jsonl>)`,
    );
  return cached(`task:${name}`, task.load);
}

/** A user's JSONL task (see jsonl.ts for the format), its text fields as `fields` names them. */
export function loadDataFile(file: string, fields: DataFieldFlags = {}): TaskDataset {
  return cached(`file:${path.resolve(file)}:${fieldsKey(fields)}`, () => loadJsonlTask(file, fields));
}

/** `--data <file>` wins over a task name; one of them is required. Field flags apply to `--data` files only. */
export function resolveTask(opts: { task?: string; data?: string; fields?: DataFieldFlags }): TaskDataset {
  if (opts.data) return loadDataFile(opts.data, opts.fields);
  if (opts.fields?.textField !== undefined || opts.fields?.textPairField !== undefined)
    throw new Error(
      "--text-field and --text-pair-field name fields of a --data file; built-in tasks have their own",
    );
  if (opts.task) return loadTask(opts.task);
  throw new Error("give a task name or --data <file.jsonl>");
}

function cached(key: string, load: () => TaskDataset): TaskDataset {
  let dataset = cache.get(key);
  if (!dataset) {
    dataset = load();
    cache.set(key, dataset);
  }
  return dataset;
}
