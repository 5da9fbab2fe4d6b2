/**
 * `sentiment`: UCI "Sentiment Labelled Sentences" (Kotzias et al. 2015) as shipped in the `sentiment` package's
 * test fixtures: 1,000 sentences each from imdb, yelp and amazon, class 0/1. Each fixture ends with an empty
 * record (`{"text":"","class":null}`), which is skipped.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { packageDir } from "./packages";
import { buildTaskDataset } from "./splits";
import type { RawRecord, TaskDataset } from "./types";

export const SENTIMENT_LABELS = ["negative", "positive"];
export const SENTIMENT_SOURCES = ["imdb", "yelp", "amazon"] as const;

export function* sentimentRecords(): Generator<RawRecord> {
  const fixtures = path.join(packageDir("sentiment"), "test", "fixtures");
  for (const source of SENTIMENT_SOURCES) {
    const rows = JSON.parse(readFileSync(path.join(fixtures, `${source}.json`), "utf8")) as {
      text: string;
      class: number | null;
    }[];
    for (const row of rows) {
      if (row.class !== 0 && row.class !== 1) continue; // the empty trailing record
      yield { text: row.text.trim(), label: SENTIMENT_LABELS[row.class], source };
    }
  }
}

export function loadSentiment(): TaskDataset {
  return buildTaskDataset("sentiment", SENTIMENT_LABELS, sentimentRecords());
}
