import { describe, expect, it } from "vitest";
import { loadPretrainingCorpus, sentencesOf } from "../../src/trainer-node/data/corpus";
import { cleanEmail } from "../../src/trainer-node/data/email";
import { normalizeText } from "../../src/trainer-node/data/splits";
import { loadTask, resolveTask } from "../../src/trainer-node/data/tasks";
import type { TaskDataset } from "../../src/trainer-node/data/types";

const all = (t: TaskDataset) => Object.values(t.splits).flat();
/** Every input record is either kept or counted in `dropped`. */
const inputCount = (t: TaskDataset) =>
  all(t).length + t.dropped.duplicates + t.dropped.conflictingLabels + t.dropped.empty;

describe("built-in tasks from the npm dataset packages", () => {
  it("spam: 6,046 messages, hard ham only in the `hard` split, no text in two splits", () => {
    const spam = loadTask("spam");
    expect(spam.labels).toEqual(["ham", "spam"]);
    expect(inputCount(spam)).toBe(6046);
    expect(spam.splits.hard.length).toBeGreaterThan(200);
    expect(spam.splits.hard.every((e) => e.source === "hard-ham-1" && e.labelName === "ham")).toBe(true);
    for (const split of ["train", "validation", "test"]) {
      expect(spam.splits[split].some((e) => e.source === "hard-ham-1")).toBe(false);
      expect(new Set(spam.splits[split].map((e) => e.label)).size).toBe(2);
    }
    const seen = new Set<string>();
    for (const e of all(spam)) {
      const key = normalizeText(e.text);
      expect(seen.has(key)).toBe(false);
      seen.add(key);
    }
  });

  it("spam texts are cleaned: no routing headers, capped length", () => {
    const texts = all(loadTask("spam")).map((e) => e.text);
    expect(texts.every((t) => t.length <= 2000)).toBe(true);
    expect(texts.filter((t) => /^Received: from/m.test(t) || /Return-Path:/.test(t)).length).toBeLessThan(20);
  });

  it("sentiment: 3,000 sentences minus duplicates, both labels, source kept", () => {
    const s = loadTask("sentiment");
    expect(s.labels).toEqual(["negative", "positive"]);
    expect(inputCount(s)).toBe(3000);
    expect(new Set(all(s).map((e) => e.source))).toEqual(new Set(["imdb", "yelp", "amazon"]));
    expect(all(s).every((e) => e.text.length > 0)).toBe(true);
  });

  it("caches per process and resolves --data over a task name", () => {
    expect(loadTask("sentiment")).toBe(loadTask("sentiment"));
    expect(resolveTask({ task: "sentiment" })).toBe(loadTask("sentiment"));
    expect(() => loadTask("nope")).toThrow(/unknown task 'nope'/);
  });
});

describe("pretraining corpus", () => {
  it("holds SOTU and Moby-Dick as sentence-packed segments with a stable held-out part", () => {
    const c = loadPretrainingCorpus();
    expect(c.train.length).toBeGreaterThan(20_000);
    expect(c.validation.length / (c.train.length + c.validation.length)).toBeCloseTo(0.05, 1);
    expect(c.train.every((s) => s.length > 0)).toBe(true);
    expect(c.train.some((s) => s.includes("Ishmael"))).toBe(true);
    expect(c.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(loadPretrainingCorpus()).toBe(c);
  });

  it("splits sentences but not after abbreviations", () => {
    expect(sentencesOf('Mr. Smith went to Washington. He said "Hello!" Then he left.')).toEqual([
      "Mr. Smith went to Washington.",
      'He said "Hello!"',
      "Then he left.",
    ]);
  });
});

describe("e-mail cleaning", () => {
  const crlf = (s: string) => s.replace(/\n/g, "\r\n");

  it("keeps the decoded subject and the plain-text alternative, drops headers", () => {
    const raw = crlf(
      [
        "From someone@example.com  Mon Jan 1 00:00:00 2002",
        "Received: from relay.example.com",
        "Subject: =?utf-8?B?Q2Fmw6kgb2ZmZXI=?=",
        'Content-Type: multipart/alternative; boundary="XX"',
        "",
        "preamble",
        "--XX",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Caf=C3=A9 prices =",
        "are low.",
        "> quoted reply line",
        "--XX",
        "Content-Type: text/html",
        "",
        "<p>HTML version</p>",
        "--XX--",
      ].join("\n"),
    );
    expect(cleanEmail(raw)).toBe("Café offer Café prices are low.");
  });

  it("falls back to HTML without tags and entities, decodes base64, skips attachments", () => {
    const html = Buffer.from(
      "<html><style>p{}</style><p>Buy&nbsp;now &amp; save</p><br>Today</html>",
    ).toString("base64");
    const raw = [
      "Subject: Deal",
      'Content-Type: multipart/mixed; boundary="B"',
      "",
      "--B",
      "Content-Type: text/html; charset=iso-8859-1",
      "Content-Transfer-Encoding: base64",
      "",
      html,
      "--B",
      "Content-Type: application/zip",
      "Content-Transfer-Encoding: base64",
      "",
      "UEsDBAoAAAAAAA==",
      "--B--",
    ].join("\n");
    expect(cleanEmail(raw)).toBe("Deal Buy now & save Today");
  });

  it("caps long messages at a word boundary", () => {
    const raw = `Subject: long\n\n${"word ".repeat(1000)}`;
    const text = cleanEmail(raw, 100);
    expect(text.length).toBeLessThanOrEqual(100);
    expect(text.endsWith("word")).toBe(true);
  });
});
