/**
 * What bench scripts call once they have written their JSON: docs/benchmarks.md is regenerated from the
 * committed bench results (scripts/docs/benchmarks.ts), and a bench's own generated block in its detail page
 * (between `<!-- name:start -->` and `<!-- name:end -->`) is rewritten, so figures in docs always come from the
 * JSON and never from hand-copied numbers.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { replaceBlock } from "../../scripts/docs/benchmarks";

export { replaceBlock, updateBenchmarksPage } from "../../scripts/docs/benchmarks";

/** Rewrites block `name` of the Markdown file at `file` in place. */
export function writeDocsBlock(file: string, name: string, body: string): void {
  writeFileSync(file, replaceBlock(readFileSync(file, "utf8"), name, body));
}
