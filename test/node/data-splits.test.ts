import { describe, expect, it } from "vitest";
import {
  buildTaskDataset,
  fingerprintSplit,
  normalizeText,
  splitOf,
} from "../../src/trainer-node/data/splits";
import type { RawRecord } from "../../src/trainer-node/data/types";

const records = (n: number, offset = 0): RawRecord[] =>
  Array.from({ length: n }, (_, i) => ({
    text: `example number ${i + offset} about things`,
    label: i % 3 === 0 ? "b" : "a",
  }));

const splitMap = (ds: ReturnType<typeof buildTaskDataset>) =>
  new Map(Object.entries(ds.splits).flatMap(([s, ex]) => ex.map((e) => [e.text, s] as const)));

describe("hash splits", () => {
  it("puts a text in the same split whatever the order and whatever else is in the set", () => {
    const base = records(500);
    const a = splitMap(buildTaskDataset("t", ["a", "b"], base));
    const shuffled = [...base].reverse();
    const b = splitMap(buildTaskDataset("t", ["a", "b"], [...records(300, 1000), ...shuffled]));
    for (const r of base) expect(b.get(r.text)).toBe(a.get(r.text));
  });

  it("depends on the normalised text only (case, white space)", () => {
    expect(normalizeText("  Hello\n\tWORLD ")).toBe("hello world");
    for (const r of records(50))
      expect(splitOf(r.text.toUpperCase().replace(/ /g, "  "))).toBe(splitOf(r.text));
  });

  it("is roughly 80/10/10", () => {
    const ds = buildTaskDataset("t", ["a", "b"], records(5000));
    expect(ds.splits.train.length / 5000).toBeGreaterThan(0.77);
    expect(ds.splits.train.length / 5000).toBeLessThan(0.83);
    expect(ds.splits.validation.length / 5000).toBeGreaterThan(0.08);
    expect(ds.splits.test.length / 5000).toBeGreaterThan(0.08);
  });

  it("de-duplicates on the normalised text, drops conflicting labels and empty texts, honours forced splits", () => {
    const ds = buildTaskDataset(
      "t",
      ["a", "b"],
      [
        { text: "same text", label: "a" },
        { text: "Same  TEXT", label: "a" },
        { text: "clash", label: "a" },
        { text: "CLASH", label: "b" },
        { text: "   ", label: "a" },
        { text: "held out", label: "b", split: "hard" },
      ],
    );
    const all = Object.values(ds.splits).flat();
    expect(all.map((e) => normalizeText(e.text)).sort()).toEqual(["held out", "same text"]);
    expect(ds.dropped).toEqual({ duplicates: 2, conflictingLabels: 1, empty: 1 });
    expect(ds.splits.hard).toEqual([{ text: "held out", label: 1, labelName: "b" }]);
    expect(ds.fingerprints.hard).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("fingerprints", () => {
  const base = records(200);
  const fp = buildTaskDataset("t", ["a", "b"], base).fingerprints;

  it("do not depend on input order", () => {
    expect(buildTaskDataset("t", ["a", "b"], [...base].reverse()).fingerprints).toEqual(fp);
  });

  it("change when a text, a label or membership changes, and only in the split that changed", () => {
    const target = buildTaskDataset("t", ["a", "b"], base).splits.test[0];
    const split = "test";
    const edited = base.map((r) => (r.text === target.text ? { ...r, text: `${r.text}!` } : r));
    const relabelled = base.map((r) =>
      r.text === target.text ? { ...r, label: r.label === "a" ? "b" : "a" } : r,
    );
    const removed = base.filter((r) => r.text !== target.text);
    for (const variant of [relabelled, removed]) {
      const other = buildTaskDataset("t", ["a", "b"], variant).fingerprints;
      expect(other[split]).not.toBe(fp[split]);
      expect(other.train).toBe(fp.train);
      expect(other.all).not.toBe(fp.all);
    }
    // An edited text may hash into another split; either way the fingerprints move.
    expect(buildTaskDataset("t", ["a", "b"], edited).fingerprints.all).not.toBe(fp.all);
  });

  it("cover the label names: the same records under another label order differ", () => {
    expect(buildTaskDataset("t", ["b", "a"], base).fingerprints.all).not.toBe(fp.all);
    expect(fingerprintSplit("test", ["a"], [{ text: "x", label: 0 }])).not.toBe(
      fingerprintSplit("validation", ["a"], [{ text: "x", label: 0 }]),
    );
  });
});
