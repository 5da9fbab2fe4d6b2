import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { main } from "../../src/trainer-node/cli";

afterEach(() => vi.restoreAllMocks());

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a) => void out.push(a.join(" ")));
  vi.spyOn(console, "error").mockImplementation((...a) => void err.push(a.join(" ")));
  const code = await main(argv);
  vi.restoreAllMocks();
  return { code, out: out.join("\n"), err: err.join("\n") };
}

it("`data ls --json` lists the built-in tasks with split sizes and fingerprints", async () => {
  const { code, out } = await run("data", "ls", "--json");
  expect(code).toBe(0);
  const tasks = JSON.parse(out) as {
    name: string;
    splits: Record<string, number>;
    fingerprints: Record<string, string>;
  }[];
  expect(tasks.map((t) => t.name)).toEqual(["spam", "sentiment", "genre"]);
  expect(Object.keys(tasks[0].splits)).toEqual(["train", "validation", "test", "hard"]);
  expect(tasks[0].fingerprints.all).toMatch(/^[0-9a-f]{64}$/);
});

it("`data show` prints examples and token-length percentiles, and names a bad split", async () => {
  const shown = await run("data", "show", "sentiment", "--split", "validation", "-n", "2");
  expect(shown.code).toBe(0);
  expect(shown.out).toMatch(/sentiment \/ validation: \d+ examples/);
  expect(shown.out).toMatch(/tokens per example .* p50 \d+ +p90 \d+/);
  expect(shown.out.match(/^\[(negative|positive)\]/gm)).toHaveLength(2);

  const bad = await run("data", "show", "sentiment", "--split", "hard");
  expect(bad.code).toBe(2);
  expect(bad.err).toMatch(/no split 'hard' \(has: train, validation, test\)/);
});

it("`data show --data` reports a bad JSONL line with its number", async () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "sluice-cli-")), "mine.jsonl");
  writeFileSync(
    file,
    '{"text":"fine","label":"a"}\n{"text":"fine too","label":"b"}\n{"text": 3, "label":"a"}\n',
  );
  const { code, err } = await run("data", "show", "--data", file);
  expect(code).toBe(1);
  expect(err).toMatch(/mine\.jsonl:3: field "text" must be a string/);
});
