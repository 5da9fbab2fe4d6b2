/**
 * `sluice data ls` and `sluice data show <task>`: what the tasks hold (sizes, label balance, fingerprints) and
 * what their examples look like after cleaning and tokenization.
 */
import { encodePair, encodeText } from "../../core/tokenizer";
import { loadPretrainingCorpus } from "../data/corpus";
import { BUILTIN_TASKS, loadTask, resolveTask } from "../data/tasks";
import { loadTokenizerFile } from "../data/tokenizer-file";
import type { Example, TaskDataset } from "../data/types";
import { type Command, UsageError } from "./command";
import { numberFlag, parseFlags } from "./options";

const USAGE = `usage:
  sluice data ls [--data <file.jsonl>] [--json]
  sluice data show <task> [--split test] [-n 5] [--max-len 128] [--tokenizer models/tokenizer.json]
  sluice data show --data <file.jsonl> [...]`;

export const command: Command = {
  summary: "list tasks (sizes, label balance, fingerprints) or show a task's examples",
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "ls") return ls(rest);
    if (sub === "show") return show(rest);
    throw new UsageError(sub ? `unknown subcommand '${sub}'\n${USAGE}` : USAGE);
  },
};

function parse(argv: string[]) {
  return parseFlags(
    {
      args: argv,
      allowPositionals: true,
      options: {
        data: { type: "string" },
        split: { type: "string", default: "test" },
        n: { type: "string", short: "n", default: "5" },
        "max-len": { type: "string", default: "128" },
        tokenizer: { type: "string" },
        json: { type: "boolean", default: false },
      },
    },
    USAGE,
  );
}

/** "ham 3073 (68.5%) · spam 1416 (31.5%)" */
function balance(task: TaskDataset, examples: Example[]): string {
  const counts = task.labels.map(() => 0);
  for (const e of examples) counts[e.label]++;
  return task.labels
    .map((l, i) => `${l} ${counts[i]} (${((100 * counts[i]) / Math.max(1, examples.length)).toFixed(1)}%)`)
    .join(" · ");
}

async function ls(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  if (positionals.length > 0) throw new UsageError(`'data ls' takes no task name\n${USAGE}`);
  const tasks = values.data ? [resolveTask({ data: values.data })] : Object.keys(BUILTIN_TASKS).map(loadTask);
  if (values.json) {
    const out = tasks.map((t) => ({
      name: t.name,
      labels: t.labels,
      splits: Object.fromEntries(Object.entries(t.splits).map(([s, ex]) => [s, ex.length])),
      fingerprints: t.fingerprints,
      dropped: t.dropped,
    }));
    console.log(JSON.stringify(out, null, 2));
    return 0;
  }
  for (const task of tasks) {
    const summary = BUILTIN_TASKS[task.name]?.summary ?? "from --data";
    console.log(`${task.name}  (${summary})`);
    console.log(`  labels: ${task.labels.join(", ")}   fingerprint: ${task.fingerprints.all}`);
    const d = task.dropped;
    console.log(
      `  dropped: ${d.duplicates} duplicates, ${d.conflictingLabels} texts with conflicting labels, ${d.empty} empty`,
    );
    const rows = Object.entries(task.splits).map(([split, examples]) => ({
      split,
      size: String(examples.length),
      balance: balance(task, examples),
      fingerprint: `${task.fingerprints[split].slice(0, 16)}…`,
    }));
    const width = Math.max(13, ...rows.map((r) => r.balance.length));
    console.log(
      `  ${"split".padEnd(11)} ${"size".padStart(6)}  ${"label balance".padEnd(width)}  fingerprint`,
    );
    for (const r of rows) {
      console.log(
        `  ${r.split.padEnd(11)} ${r.size.padStart(6)}  ${r.balance.padEnd(width)}  ${r.fingerprint}`,
      );
    }
    console.log();
  }
  if (!values.data) {
    const corpus = loadPretrainingCorpus();
    console.log("pretraining corpus  (State of the Union addresses + Moby-Dick, sentence-packed segments)");
    console.log(
      `  segments (whole sentences packed to ~${corpus.maxChars} chars): train ${corpus.train.length}, validation ${corpus.validation.length}` +
        `   fingerprint: ${corpus.fingerprint}`,
    );
  }
  return 0;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function show(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  if (positionals.length > 1) throw new UsageError(`'data show' takes one task\n${USAGE}`);
  const task = resolveTask({ task: positionals[0], data: values.data });
  const split = values.split!;
  const examples = task.splits[split];
  if (!examples)
    throw new UsageError(
      `task '${task.name}' has no split '${split}' (has: ${Object.keys(task.splits).join(", ")})`,
    );
  const n = numberFlag(values, "n", (x) => Number.isInteger(x) && x >= 0, "a non-negative integer", "-n")!;
  const maxLen = numberFlag(values, "max-len", (x) => Number.isInteger(x) && x >= 2, "an integer >= 2")!;

  console.log(
    `${task.name} / ${split}: ${examples.length} examples   fingerprint ${task.fingerprints[split]}`,
  );
  console.log(`labels: ${balance(task, examples)}`);

  const tok = loadTokenizerFile(values.tokenizer);
  // Full lengths (no truncation) show how much a given --max-len cuts off.
  // A pair counts both texts with its template's specials, as training encodes it.
  const tokensOf = (e: Example, len: number) =>
    (e.textPair === undefined ? encodeText(tok, e.text, len) : encodePair(tok, e.text, e.textPair, len).ids)
      .length;
  const lengths = examples.map((e) => tokensOf(e, Number.MAX_SAFE_INTEGER)).sort((a, b) => a - b);
  const mean = lengths.reduce((a, b) => a + b, 0) / Math.max(1, lengths.length);
  const truncated = lengths.filter((l) => l > maxLen).length;
  console.log(
    `tokens per example (with [CLS]/[SEP], vocab ${tok.vocabSize}): mean ${mean.toFixed(1)}  p50 ${percentile(lengths, 50)}  ` +
      `p90 ${percentile(lengths, 90)}  p99 ${percentile(lengths, 99)}  max ${lengths[lengths.length - 1]}  ` +
      `truncated at --max-len ${maxLen}: ${((100 * truncated) / Math.max(1, lengths.length)).toFixed(1)}%`,
  );
  // Evenly spaced picks over the canonical order, so the sample is the same every run and not all from one end.
  const picks = Array.from(
    { length: Math.min(n, examples.length) },
    (_, i) => examples[Math.floor((i * examples.length) / n)],
  );
  for (const e of picks) {
    const clip = (t: string) => (t.length > 240 ? `${t.slice(0, 240)}…` : t);
    const text = clip(e.text) + (e.textPair === undefined ? "" : `\n  + ${clip(e.textPair)}`);
    const tokens = tokensOf(e, maxLen);
    console.log(`\n[${task.labels[e.label]}]${e.source ? ` (${e.source})` : ""} ${tokens} tokens\n  ${text}`);
  }
  return 0;
}
