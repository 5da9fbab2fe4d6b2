/** bench:edge keeps the models (and bundle) a partial run did not measure (bench/lib/edge-merge.ts). */
import { describe, expect, it } from "vitest";
import { mergeEdgeResults } from "../../bench/lib/edge-merge";

const file = (command: string, models: string[], bundle: unknown) => ({
  command,
  generatedAt: `${command}-time`,
  machine: "m",
  loadAverage: { before: [1, 1, 1], after: [2, 2, 2] },
  models: models.map((model) => ({ model, variants: [command] })),
  bundle,
});

describe("mergeEdgeResults", () => {
  it("replaces the measured models, keeps the others in their order with the run that measured them", () => {
    const old = file("full", ["demo", "reference", "bert-base"], { total: 1 });
    const merged = mergeEdgeResults(old, file("partial", ["reference"], null));
    expect(merged.models.map((m: { model: string }) => m.model)).toEqual(["demo", "reference", "bert-base"]);
    expect(merged.models.map((m: { variants: string[] }) => m.variants[0])).toEqual([
      "full",
      "partial",
      "full",
    ]);
    expect(merged.models.map((m: { run: { command: string } }) => m.run.command)).toEqual([
      "full",
      "partial",
      "full",
    ]);
    expect(merged.bundle).toEqual({ total: 1 }); // --no-bundle keeps the measured one
    expect(merged.command).toBe("partial");
  });
  it("a first run, or a run of every model, is the run itself", () => {
    const fresh = file("full", ["demo"], { total: 2 });
    expect(mergeEdgeResults(undefined, fresh).models[0].run.command).toBe("full");
    expect(mergeEdgeResults(file("old", ["demo"], { total: 1 }), fresh).bundle).toEqual({ total: 2 });
  });
});
