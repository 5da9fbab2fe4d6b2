/**
 * docs/benchmarks.md is generated from the committed bench results: regenerating it in memory must give the
 * committed page byte for byte, so a bench result committed without its page (or a page edited by hand between
 * the markers) fails here. Fix: npm run docs:benchmarks.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  PAGE,
  REPO_ROOT,
  readBenchResults,
  renderBenchmarks,
  renderBenchmarksPage,
  replaceBlock,
} from "../../scripts/docs/benchmarks";

describe("docs/benchmarks.md", () => {
  it("is what npm run docs:benchmarks writes from the committed bench-results/*.json", () => {
    const committed = readFileSync(path.join(REPO_ROOT, PAGE), "utf8");
    const files = readBenchResults();
    expect(files.length).toBeGreaterThan(0);
    expect(renderBenchmarksPage(committed, files), "stale: run npm run docs:benchmarks").toBe(committed);
  });

  it("has one section per committed result file, each naming its command and JSON", () => {
    const page = readFileSync(path.join(REPO_ROOT, PAGE), "utf8");
    for (const { name } of readBenchResults()) expect(page).toContain(`\`bench-results/${name}.json\``);
  });

  it("gives an unknown or unreadable bench result a generic section instead of failing", () => {
    const md = renderBenchmarks([
      {
        name: "newbench",
        data: { date: "2026-12-07T08:00:00.000Z", machine: "test box", p50Ms: 12.345678, ok: true },
      },
      { name: "quantize", data: { rows: "not an array" } },
    ]);
    expect(md).toContain("## newbench");
    expect(md).toContain("| p50Ms | 12.35 |");
    expect(md).toContain("Measured: 2026-12-07 08:00 UTC, test box.");
    expect(md).toContain("`npm run bench:newbench`");
    expect(md).toContain("the quantize formatter could not read this file");
  });

  it("replaces only the marked block", () => {
    const doc = "intro\n\n<!-- x:start -->\nold\n<!-- x:end -->\n\noutro\n";
    expect(replaceBlock(doc, "x", "new")).toBe("intro\n\n<!-- x:start -->\nnew\n<!-- x:end -->\n\noutro\n");
    expect(replaceBlock("intro\n", "x", "new")).toBe("intro\n\n<!-- x:start -->\nnew\n<!-- x:end -->\n");
  });
});
