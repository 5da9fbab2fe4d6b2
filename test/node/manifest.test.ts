import { describe, expect, it } from "vitest";
import {
  ManifestError,
  manifestGraphOptimization,
  manifestPrecision,
  manifestTakesPairs,
  parseManifest,
} from "../../src/core/manifest";
import { exampleManifest } from "./fixtures";

describe("parseManifest", () => {
  it("accepts a complete manifest", () => {
    expect(parseManifest(exampleManifest()).model.name).toBe("spam");
  });
  it("rejects unknown schema versions by name", () => {
    expect(() => parseManifest({ ...exampleManifest(), schemaVersion: 2 })).toThrow(
      /unsupported manifest schemaVersion 2/,
    );
  });
  it("names the offending field", () => {
    const bad = exampleManifest();
    bad.sparsity.removed = 1.5;
    try {
      parseManifest(bad);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ManifestError);
      expect((e as ManifestError).field).toBe("sparsity.removed");
    }
  });
  it("reads a manifest without precision (written before int8 variants) as fp32, and checks the field", () => {
    const old = exampleManifest();
    expect("precision" in old).toBe(false);
    expect(manifestPrecision(parseManifest(old))).toBe("fp32");
    expect(manifestPrecision(parseManifest({ ...old, precision: "int8" }))).toBe("int8");
    expect(() => parseManifest({ ...old, precision: "int4" })).toThrow(/manifest\.precision/);
  });
  it("reads a manifest without input (single texts, built-in tasks and older variants) as single-text, and checks the field", () => {
    const old = exampleManifest();
    expect("input" in old).toBe(false);
    expect(manifestTakesPairs(parseManifest(old))).toBe(false);
    const fields = { text: "premise", textPair: "hypothesis" };
    expect(manifestTakesPairs(parseManifest({ ...old, input: { textPairs: true, fields } }))).toBe(true);
    expect(
      manifestTakesPairs(parseManifest({ ...old, input: { textPairs: false, fields: { text: "text" } } })),
    ).toBe(false);
    expect(() => parseManifest({ ...old, input: { textPairs: "yes" } })).toThrow(
      /manifest\.input\.textPairs/,
    );
  });
  it("reads a manifest without graphOptimization (written before it) as none, and checks the field", () => {
    const old = exampleManifest();
    expect("graphOptimization" in old).toBe(false);
    expect(manifestGraphOptimization(parseManifest(old))).toBe("none");
    expect(manifestGraphOptimization(parseManifest({ ...old, graphOptimization: "edge" }))).toBe("edge");
    expect(() => parseManifest({ ...old, graphOptimization: "all" })).toThrow(/manifest\.graphOptimization/);
  });
});
