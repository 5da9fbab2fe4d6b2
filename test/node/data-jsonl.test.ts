import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  DataFileError,
  labelsOf,
  loadJsonlTask,
  parseJsonl,
  parseJsonlRecords,
} from "../../src/trainer-node/data/jsonl";

const lines = (...rows: unknown[]) =>
  rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n");

describe("user JSONL data", () => {
  it("reads text/label lines, skipping blank lines; integer labels become names", () => {
    const recs = parseJsonlRecords(lines({ text: "good", label: "pos" }, "", { text: "bad", label: 0 }));
    expect(recs).toEqual([
      { text: "good", label: "pos" },
      { text: "bad", label: "0" },
    ]);
  });

  it.each([
    [lines({ text: "ok", label: "a" }, "{not json"), /f\.jsonl:2: not valid JSON/],
    [lines({ text: "ok", label: "a" }, "", "[1,2]"), /f\.jsonl:3: expected an object/],
    [lines({ label: "a" }), /f\.jsonl:1: field "text" must be a string/],
    [lines({ text: "  ", label: "a" }), /f\.jsonl:1: field "text" is empty/],
    [lines({ text: "x", label: 1.5 }), /f\.jsonl:1: field "label" must be a non-empty string or an integer/],
    [lines({ text: "x" }), /f\.jsonl:1: field "label"/],
    ["\n\n", /f\.jsonl: no examples/],
  ])("rejects bad input with the line number: %#", (content, message) => {
    expect(() => parseJsonlRecords(content, "f.jsonl")).toThrow(DataFileError);
    expect(() => parseJsonlRecords(content, "f.jsonl")).toThrow(message);
  });

  it("takes the label set from the data, sorted so line order does not matter", () => {
    expect(
      labelsOf(parseJsonlRecords(lines({ text: "a", label: "pos" }, { text: "b", label: "neg" }))),
    ).toEqual(["neg", "pos"]);
    expect(labelsOf(parseJsonlRecords(lines({ text: "a", label: 10 }, { text: "b", label: 2 })))).toEqual([
      "2",
      "10",
    ]);
  });

  it("loads a file into a task with splits and fingerprints, and needs two labels", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "sluice-data-"));
    const file = path.join(dir, "reviews.jsonl");
    const rows = Array.from({ length: 100 }, (_, i) => ({
      text: `review ${i}`,
      label: i % 2 ? "pos" : "neg",
    }));
    writeFileSync(file, lines(...rows));
    const task = loadJsonlTask(file);
    expect(task.name).toBe("reviews");
    expect(task.labels).toEqual(["neg", "pos"]);
    expect(Object.values(task.splits).flat()).toHaveLength(100);
    expect(task.fingerprints.all).toMatch(/^[0-9a-f]{64}$/);

    const single = path.join(dir, "one.jsonl");
    writeFileSync(single, lines({ text: "a", label: "x" }, { text: "b", label: "x" }));
    expect(() => loadJsonlTask(single)).toThrow(/needs at least two labels/);
    expect(() => loadJsonlTask(path.join(dir, "missing.jsonl"))).toThrow(
      /cannot read .*missing\.jsonl: ENOENT/,
    );
  });
});

describe("sentence-pair JSONL data", () => {
  it.each([
    ["text", "text_pair"],
    ["sentence1", "sentence2"],
    ["premise", "hypothesis"],
    ["question", "sentence"],
  ])("reads %s + %s pairs without flags", (a, b) => {
    const { records, fields } = parseJsonl(lines({ [a]: "A one", [b]: "B one", label: "yes" }));
    expect(fields).toEqual({ text: a, textPair: b });
    expect(records).toEqual([{ text: "A one", textPair: "B one", label: "yes" }]);
  });

  it("takes --text-field / --text-pair-field over the usual names, and a pair flag finds its usual partner", () => {
    const row = { claim: "c", evidence: "e", premise: "p", hypothesis: "h", label: 1 };
    expect(parseJsonl(lines(row), "f", { textField: "claim", textPairField: "evidence" }).records).toEqual([
      { text: "c", textPair: "e", label: "1" },
    ]);
    expect(parseJsonl(lines(row), "f", { textPairField: "hypothesis" }).fields).toEqual({
      text: "premise",
      textPair: "hypothesis",
    });
    expect(parseJsonl(lines(row), "f", { textField: "claim" }).fields).toEqual({ text: "claim" });
  });

  it("needs the second text on every row once the first row made it a pair task, naming line and field", () => {
    const content = lines({ text: "a", text_pair: "b", label: "x" }, { text: "c", label: "y" });
    expect(() => parseJsonlRecords(content, "f.jsonl")).toThrow(
      /f\.jsonl:2: field "text_pair" must be a string/,
    );
    expect(() =>
      parseJsonlRecords(lines({ text: "a", label: "x" }), "f.jsonl", { textPairField: "other" }),
    ).toThrow(/f\.jsonl:1: field "other" must be a string/);
  });

  it("splits and de-duplicates on both texts, and records the pair fields on the task", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "sluice-data-"));
    const file = path.join(dir, "nli.jsonl");
    const rows = Array.from({ length: 60 }, (_, i) => ({
      premise: `the same premise ${i % 3}`,
      hypothesis: `hypothesis ${i}`,
      label: i % 2 ? "entailment" : "neutral",
    }));
    // (a, b) twice is one example; (b, a) is another.
    rows.push({ premise: "the same premise 0", hypothesis: "hypothesis 0", label: "neutral" });
    rows.push({ premise: "hypothesis 0", hypothesis: "the same premise 0", label: "neutral" });
    writeFileSync(file, lines(...rows));
    const task = loadJsonlTask(file);
    expect(task.pairFields).toEqual({ text: "premise", textPair: "hypothesis" });
    const all = Object.values(task.splits).flat();
    expect(all).toHaveLength(61);
    expect(task.dropped.duplicates).toBe(1);
    expect(all.every((e) => typeof e.textPair === "string")).toBe(true);
    // The single-text layout of a fingerprint is unchanged by pairs: a text-only file has no pairFields.
    const single = path.join(dir, "single.jsonl");
    writeFileSync(single, lines({ text: "a", label: "x" }, { text: "b", label: "y" }));
    expect(loadJsonlTask(single).pairFields).toBeUndefined();
  });
});
