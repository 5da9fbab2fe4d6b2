/**
 * A torch ≥ 2.8 dynamo export at opset 23 (SDPA as the ONNX `Attention` op; fixture
 * `dynamo-bert-sdpa-seqcls-o23-attention`, PyTorch reference logits) through the importer: the op is decomposed
 * and recognised as attention, the imported graph reproduces PyTorch, and what it cannot read (a causal
 * Attention, softcap, ops whose meaning changed after opset 20, opsets past 23) is refused by name; through the
 * CLI with exit 2 and nothing left on disk.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { decodeModel, encodeModel } from "../../src/core/onnx/codec";
import type { Graph } from "../../src/core/onnx/graph";
import { ImportError } from "../../src/trainer-node/import/errors";
import { importEncoder, importEncoderBytes } from "../../src/trainer-node/import/import";
import { runSluice } from "./cli-capture";

const FIXTURE = "test/fixtures/hf/dynamo-bert-sdpa-seqcls-o23-attention";
const bytes = new Uint8Array(readFileSync(path.join(FIXTURE, "model.onnx")));
const fixture = JSON.parse(readFileSync(path.join(FIXTURE, "fixture.json"), "utf8"));
const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-attention-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The fixture's graph with `change` applied to it. */
function changed(change: (g: Graph) => void): Graph {
  const g = decodeModel(bytes);
  change(g);
  return g;
}
const firstAttention = (g: Graph) => g.nodes.find((n) => n.op === "Attention")!;

describe("opset-23 Attention exports", () => {
  it("imports: both Attention ops read as attention blocks, and the imported logits equal PyTorch's", async () => {
    const { graph, report } = importEncoderBytes(bytes);
    expect(report.opset.original).toBe(23);
    expect(report.canonical.attention).toBe(2);
    expect(report.attention.map((a) => [a.heads, a.headDim])).toEqual([
      [4, 8],
      [4, 8],
    ]);
    expect(report.ffn).toHaveLength(2);
    expect(report.head.kind).toBe("sequence-classification");
    expect(graph.nodes.some((n) => n.op === "Attention")).toBe(false);
    const session = await ort.InferenceSession.create(encodeModel(graph));
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(fixture.reference.inputs) as [
      string,
      { dims: number[]; data: number[] },
    ][])
      feeds[name] = new ort.Tensor("int64", BigInt64Array.from(t.data.map(BigInt)), t.dims);
    const logits = (await session.run(feeds)).logits.data as Float32Array;
    const ref: number[] = fixture.reference.outputs.logits.data;
    expect(logits).toHaveLength(ref.length);
    for (const [i, v] of ref.entries()) expect(Math.abs(logits[i] - v)).toBeLessThan(1e-4);
  });

  it("refuses softcap and a causal Attention by node", () => {
    const softcap = changed((g) => {
      firstAttention(g).attrs.softcap = { type: "float", value: 50 };
    });
    expect(() => importEncoder(softcap)).toThrow(ImportError);
    expect(() => importEncoder(softcap)).toThrow(
      /^node_Attention_\d+: Attention softcap=50 is not supported/,
    );
    const causal = changed((g) => {
      firstAttention(g).attrs.is_causal = { type: "int", value: 1 };
    });
    expect(() => importEncoder(causal)).toThrow(/^node_Attention_\d+: Attention with is_causal=1 .*decoder/);
  });

  it("refuses an op whose meaning changed after opset 20, and a model past opset 23", () => {
    const groupNorm = changed((g) => {
      g.addNode("GroupNormalization", ["x", "s", "b"], { num_groups: 2 }, { name: "/gn/GroupNorm" });
    });
    expect(() => importEncoder(groupNorm)).toThrow(
      /^\/gn\/GroupNorm: GroupNormalization changed meaning at opset 21 \(the model is at 23\)/,
    );
    const newer = changed((g) => {
      g.opset = 24;
    });
    expect(() => importEncoder(newer)).toThrow(/model opset 24 is past the opsets .* \(≤ 23\)/);
  });

  it("the CLI refuses a causal Attention: exit 2, the node named, no output directory", async () => {
    const file = path.join(dir, "causal.onnx");
    const causal = changed((g) => {
      firstAttention(g).attrs.is_causal = { type: "int", value: 1 };
    });
    writeFileSync(file, encodeModel(causal));
    const out = path.join(dir, "causal-out");
    const train = await runSluice(
      "train",
      "--base",
      file,
      "--tokenizer",
      path.join(FIXTURE, "tokenizer.json"),
      "--task",
      "spam",
      "--out",
      out,
    );
    expect(train.code).toBe(2);
    expect(train.said).toMatch(
      /node_Attention_\d+: Attention with is_causal=1 is causal self-attention: this is a decoder/,
    );
    expect(existsSync(out)).toBe(false);
    expect((await runSluice("inspect", file)).code).toBe(2);
  });
});
