import type { DataFields } from "./fields";

/** One labelled text. `label` indexes `TaskDataset.labels`. */
export interface Example {
  text: string;
  /** The second text of a sentence pair (NLI's hypothesis, a paraphrase candidate); only in pair tasks. */
  textPair?: string;
  label: number;
  labelName?: string;
  /** Where the text came from inside its task (e.g. "imdb" for sentiment, "easy-ham-1" for spam). */
  source?: string;
}

/** The three splits every task has; a task may add more held-out sets (spam adds `hard`). */
export type SplitName = "train" | "validation" | "test" | (string & {});

export interface TaskDataset {
  name: string;
  /** Label names; an example's `label` is an index into this list. */
  labels: string[];
  /** Set when every example is a sentence pair (`Example.textPair`), with the data fields it came from. */
  pairFields?: { text: string; textPair: string };
  /** The data fields the texts were read from, for a user's data file (absent for built-in tasks). */
  fields?: DataFields;
  splits: { train: Example[]; validation: Example[]; test: Example[]; [extra: string]: Example[] };
  /** sha256 (hex) per split over its canonical records, plus `all` over the whole task. */
  fingerprints: Record<string, string>;
  /** What was dropped while building the task, so `sluice data ls` can say so. */
  dropped: { duplicates: number; conflictingLabels: number; empty: number };
}

/**
 * A record before splitting: a text with its label name. `split` forces a held-out set (spam's `hard`); `group`
 * (e.g. a document id) is hashed for the split instead of the text, so records of one group share a split.
 */
export interface RawRecord {
  text: string;
  /** The second text of a pair; a record with one is de-duplicated and split on both texts. */
  textPair?: string;
  label: string;
  source?: string;
  split?: string;
  group?: string;
}
