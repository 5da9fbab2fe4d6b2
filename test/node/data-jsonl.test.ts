import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DataFileError, labelsOf, loadJsonlTask, parseJsonlRecords } from "../../src/trainer-node/data/jsonl";

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
