/**
 * The task table: built-in tasks by name, or a user's JSONL file via `--data`. Parsed datasets are cached per
 * process, so a command that loads `spam` twice pays once.
 */
import path from "node:path";
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

/** A user's JSONL task (see jsonl.ts for the format). */
export function loadDataFile(file: string): TaskDataset {
  return cached(`file:${path.resolve(file)}`, () => loadJsonlTask(file));
}

/** `--data <file>` wins over a task name; one of them is required. */
export function resolveTask(opts: { task?: string; data?: string }): TaskDataset {
  if (opts.data) return loadDataFile(opts.data);
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
