/**
 * `sluice measure`: an exported variant's latency re-measured in onnxruntime-node and in onnxruntime-web's wasm
 * build (a child process), rewritten into its manifest atomically. Variants are the shared test ONNX classifiers
 * (test/shared/variant-files.ts), run by the real runtimes.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseManifest } from "../../src/core/manifest";
import { encodeModel } from "../../src/core/onnx";
import { main } from "../../src/trainer-node/cli";
import { compareEdgeLatency } from "../../src/trainer-node/export/edge-latency";
import { makeVariantFiles, tinyModelBytes, tinyModelGraph } from "../shared/variant-files";

let root: string;

/** A variant directory as export writes one (manifest.json without latency.edge, model.onnx, tokenizer.json). */
async function variantDir(name: string): Promise<string> {
  const dir = path.join(root, name);
  mkdirSync(dir);
  const files = await makeVariantFiles("m", { withTokenizer: true });
  writeFileSync(path.join(dir, "model.onnx"), files.model);
  writeFileSync(path.join(dir, "tokenizer.json"), files.tokenizer!);
  writeFileSync(path.join(dir, "manifest.json"), `${JSON.stringify(files.manifest, null, 2)}\n`);
  return dir;
}

const read = (dir: string) => readFileSync(path.join(dir, "manifest.json"), "utf8");

beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), "sluice-measure-"));
});

describe("sluice measure", () => {
  it("adds the wasm figure and re-times onnxruntime-node; nothing else in the manifest changes", async () => {
    const dir = await variantDir("ok");
    const before = parseManifest(JSON.parse(read(dir)));
    expect(before.latency.edge).toBeUndefined();
    expect(await main(["measure", dir, "--runs", "15"])).toBe(0);
    const after = parseManifest(JSON.parse(read(dir)));
    expect({ ...after, latency: before.latency }).toEqual(before);
    expect(after.latency).toMatchObject({
      batch: 1,
      seqLen: 8,
      runtime: "onnxruntime-node 1.30.0 cpu 1 thread",
    });
    expect(after.latency.p50Ms).not.toBe(before.latency.p50Ms); // the fixture's 1 ms is not a measurement
    expect(after.latency.edge).toMatchObject({
      batch: 1,
      seqLen: 8,
      runtime: "onnxruntime-web 1.30.0 wasm, 1 thread",
    });
    expect(readdirSync(dir).sort()).toEqual(["manifest.json", "model.onnx", "tokenizer.json"]);
  }, 60_000);

  it("refuses a bad flag, a non-variant and a model that does not match its manifest, touching nothing", async () => {
    const dir = await variantDir("refused");
    const manifest = read(dir);
    expect(await main(["measure", dir, "--runs", "0"])).toBe(2);
    expect(await main(["measure", dir, "--repeat", "3"])).toBe(2);
    expect(await main(["measure"])).toBe(2);
    expect(await main(["measure", root])).toBe(2);
    writeFileSync(path.join(dir, "model.onnx"), tinyModelBytes({ seed: 9 }));
    expect(await main(["measure", dir])).toBe(2);
    expect(read(dir)).toBe(manifest);
    expect(readdirSync(dir).sort()).toEqual(["manifest.json", "model.onnx", "tokenizer.json"]);
  });
});

describe("compareEdgeLatency (onnxruntime-web wasm, child process)", () => {
  it("times models interleaved: a 1024-wide classifier costs more than a 4-wide one", async () => {
    const r = await compareEdgeLatency(
      {
        small: { bytes: tinyModelBytes({ hidden: 4 }), fusedAtExport: false },
        wide: { bytes: tinyModelBytes({ hidden: 1024, labels: 1024, vocab: 64 }), fusedAtExport: false },
      },
      { batch: 1, seq: 32, runs: 15 },
    );
    expect(r.small.runs).toBe(15);
    expect(r.wide.p50Ms).toBeGreaterThan(2 * r.small.p50Ms);
  }, 60_000);

  it("names the model onnxruntime-web cannot run", async () => {
    // A valid ONNX file with an op no runtime has.
    const unknownOp = tinyModelGraph();
    unknownOp.op("NoSuchOp", [unknownOp.outputs[0].name]);
    await expect(
      compareEdgeLatency(
        { broken: { bytes: encodeModel(unknownOp), fusedAtExport: false } },
        { batch: 1, seq: 8 },
      ),
    ).rejects.toThrow(/could not time 'broken'/);
  }, 60_000);
});
