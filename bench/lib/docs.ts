/**
 * What every bench script calls once it has written its JSON: docs/benchmarks.md is regenerated from the
 * committed bench results (scripts/docs/benchmarks.ts), so its figures are never older than the JSON.
 */
export { replaceBlock, updateBenchmarksPage } from "../../scripts/docs/benchmarks";
