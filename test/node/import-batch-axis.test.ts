/**
 * A fixed batch size made dynamic at import (import/batch-axis.ts). The original file, run by onnxruntime at the
 * batch it was exported with, is the reference: the rewritten graph at batch 1 must equal it, and at batch 3 it
 * must equal three batch-1 runs of the original, row by row. A graph whose batch cannot be proven dynamic is
 * refused naming the node.
 */
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { sluice, TRAIN_ARGS } from "../../bench/lib/corpus";
import { decodeModel, encodeModel, Graph, tensor } from "../../src/core/onnx";
import { BATCH, makeBatchDynamic } from "../../src/trainer-node/import/batch-axis";
import { ImportError } from "../../src/trainer-node/import/errors";
import { importEncoder } from "../../src/trainer-node/import/import";
import { loadUserModel } from "../../src/trainer-node/import/load";

const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/hf");
const TOLERANCE = 1e-5;

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>, output: string) {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    const out = (await session.run(feeds))[output];
    return { dims: [...out.dims], data: Array.from(out.data as Float32Array) };
  } finally {
    await session.release();
  }
}

const maxDiff = (a: number[], b: number[]) => {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i])));
};

const int64 = (rows: number[][]) =>
  new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const int32 = (rows: number[][]) =>
  new ort.Tensor("int32", Int32Array.from(rows.flat()), [rows.length, rows[0].length]);

describe("fixed-batch exports in the corpus", () => {
  // Three rows of the fixture's sequence length: the reference row, a permuted one, and a short padded one.
  const rowsOf = (ids: number[], vocab: number) => {
    const n = ids.length;
    const other = ids.map((v, i) => (i === 0 || i === n - 1 ? v : 25 + ((v * 7 + i) % (vocab - 25))));
    const short = ids.map((v, i) => (i < Math.max(2, n - 5) ? v : 0));
    const mask = (row: number[], len: number) => row.map((_, i) => (i < len ? 1 : 0));
    const refLen = ids.filter((v) => v !== 0).length;
    return {
      ids: [ids, other, short],
      mask: [mask(ids, refLen), mask(other, n), mask(short, Math.max(2, n - 5))],
    };
  };

  // tf2onnx's tensordot at a fixed batch: 12 flattens and 12 restores, 6 head splits, 2 merges, the mask.
  it.each([
    ["bert-seqcls-o14-fixed1x16", 8],
    ["bert-seqcls-o14-batch1", 0],
    ["distilbert-seqcls-o11-nofold-batch1", 0],
    ["tf2onnx-tensordot-bert-seqcls-o13-fixed1x16", 33],
    ["tf2onnx-tensordot-bert-seqcls-o13-batch1", 21],
  ])("%s: batch 1 equals the original, batch 3 equals three batch-1 runs", async (id, rewrites) => {
    const dir = path.join(FIXTURES, id);
    const fx = JSON.parse(readFileSync(path.join(dir, "fixture.json"), "utf8"));
    const model = loadUserModel(path.join(dir, "model.onnx"));
    expect(model.report.fixedBatchSize).toBe(1);
    expect(model.report.notes.join("\n")).toContain(`(${rewrites} shape constants rewritten)`);
    for (const input of model.graph.inputs) expect(input.shape?.[0]).toBe(BATCH);
    expect(model.graph.outputs.find((o) => o.name === "logits")?.shape?.[0]).toBe(BATCH);

    const original = model.bytes;
    const imported = encodeModel(model.graph);
    // The original's own input names and types (tf2onnx: `input_ids:0`, int32); the import's are canonical.
    const roles = model.report.inputs;
    const role = (name: string) => roles.find((i) => i.original === name)?.name;
    const original32 = (name: string) => fx.reference.inputs[name].dtype === "int32";
    const idsName = roles.find((i) => i.name === "input_ids")!.original;
    const { ids, mask } = rowsOf(fx.reference.inputs[idsName].data, fx.config.vocab);
    const names = Object.keys(fx.reference.inputs);
    const feeds = (rows: number[], canonical: boolean) => {
      const f: Record<string, ort.Tensor> = {};
      for (const name of names) {
        const r = role(name);
        const values = rows.map((i) =>
          r === "input_ids" ? ids[i] : r === "attention_mask" ? mask[i] : ids[i].map(() => 0),
        );
        f[canonical ? r! : name] = !canonical && original32(name) ? int32(values) : int64(values);
      }
      return f;
    };
    const single = [];
    for (const r of [0, 1, 2]) {
      const want = await run(original, feeds([r], false), "logits");
      const got = await run(imported, feeds([r], true), "logits");
      expect(maxDiff(got.data, want.data)).toBeLessThanOrEqual(TOLERANCE);
      single.push(...want.data);
    }
    // The reference row is the fixture's own: the original's logits are PyTorch's.
    expect(maxDiff(single.slice(0, 2), fx.reference.outputs.logits.data)).toBeLessThanOrEqual(1e-4);
    const batched = await run(imported, feeds([0, 1, 2], true), "logits");
    expect(batched.dims).toEqual([3, 2]);
    expect(maxDiff(batched.data, single)).toBeLessThanOrEqual(TOLERANCE);
  });

  /**
   * The fixture with `[1, 16, 32] → flatten → back` spliced in after the embeddings' LayerNorm; `seqFirst`
   * transposes to [16, 1, 32] before the flatten (at batch 1 the same values, at batch B not).
   */
  const withFlatten = (flatTarget: number[], backTarget: number[], seqFirst = false) => {
    const g = decodeModel(
      new Uint8Array(readFileSync(path.join(FIXTURES, "bert-seqcls-o14-fixed1x16/model.onnx"))),
    );
    const ln = g.nodes.find((n) => n.name === "/bert/embeddings/LayerNorm/Add_1")!;
    const hidden = ln.outputs[0];
    const x = seqFirst
      ? g.op("Transpose", [hidden], { perm: [1, 0, 2] }, { name: "/test/SeqFirst" })
      : hidden;
    const flat = g.op("Reshape", [x, g.constInts(flatTarget)], {}, { name: "/test/Flatten" });
    const back = g.op("Reshape", [flat, g.constInts(backTarget)], {}, { name: "/test/Unflatten" });
    const spliced = new Set(["/test/Flatten", "/test/SeqFirst"]);
    for (const n of g.nodes)
      if (!spliced.has(n.name)) n.inputs = n.inputs.map((i) => (i === hidden ? back : i));
    g.toposort();
    return encodeModel(g);
  };

  it("proves a constant flatten of batch·seq and its restore ([16, 32] → [1, 16, 32]) and rewrites both", async () => {
    const bytes = withFlatten([16, 32], [1, 16, 32]);
    const { graph, report } = importEncoder(decodeModel(bytes));
    // The fixture's 8, plus the flatten (→ [-1, 32]) and the restore (→ [-1, 16, 32]).
    expect(report.notes.join("\n")).toContain("(10 shape constants rewritten)");
    const fx = JSON.parse(
      readFileSync(path.join(FIXTURES, "bert-seqcls-o14-fixed1x16/fixture.json"), "utf8"),
    );
    const row = fx.reference.inputs.input_ids.data as number[];
    const feeds = (n: number) => ({
      input_ids: int64(Array(n).fill(row)),
      attention_mask: int64(Array(n).fill(fx.reference.inputs.attention_mask.data)),
      token_type_ids: int64(Array(n).fill(row.map(() => 0))),
    });
    const want = await run(bytes, feeds(1), "logits");
    const got = await run(encodeModel(graph), feeds(3), "logits");
    expect(got.dims).toEqual([3, 2]);
    expect(maxDiff(got.data, [...want.data, ...want.data, ...want.data])).toBeLessThanOrEqual(TOLERANCE);
  });

  it("refuses a flatten of batch·seq restored to other dims ([16, 32] → [2, 8, 32]), naming the node", () => {
    const bytes = withFlatten([16, 32], [2, 8, 32]);
    expect(() => importEncoder(decodeModel(bytes))).toThrow(ImportError);
    expect(() => importEncoder(decodeModel(bytes))).toThrow(
      /input input_ids has a fixed batch size 1 that cannot be made dynamic: \/test\/Unflatten \(Reshape\) drops the batch axis: .* is \[batch\*16, 32\] but .* is \[2, 8, 32\].*dynamic_axes/,
    );
  });

  it("refuses a sequence-first flatten restored batch-first through the CLI: exit 2, the node named, nothing left", async () => {
    // [16, 1, 32] → [-1, 32] → [1, 16, 32] is the identity at batch 1, but at batch B it would interleave the
    // rows of different texts: [16*batch, 32] does not split into [batch, 16, 32].
    const work = mkdtempSync(path.join(tmpdir(), "sluice-batch-axis-"));
    try {
      const file = path.join(work, "model.onnx");
      writeFileSync(file, withFlatten([-1, 32], [1, 16, 32], true));
      copyFileSync(
        path.join(FIXTURES, "bert-seqcls-o14-fixed1x16/tokenizer.json"),
        path.join(work, "tokenizer.json"),
      );
      const message =
        /fixed batch size 1 that cannot be made dynamic: \/test\/Unflatten \(Reshape\) drops the batch axis: .* is \[16\*batch, 32\] but .* is \[1, 16, 32\]/;
      const inspect = await sluice(["inspect", file]);
      expect(inspect.code, inspect.stderr).toBe(2);
      expect(inspect.stderr).toMatch(message);
      const out = path.join(work, "out");
      const train = await sluice(["train", "--base", file, "--out", out, ...TRAIN_ARGS]);
      expect(train.code, train.stderr).toBe(2);
      expect(train.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(work).sort()).toEqual(["model.onnx", "tokenizer.json"]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});

/**
 * One graph with each kind of baked-in batch `b`: a Reshape target (copy), an Expand shape (keep; at b = 1 it
 * broadcasts as it is), a ConstantOfShape and a Tile concatenated with the data (run-time batch), a Slice [0:b]
 * along the batch axis, and a Concat-built Reshape target whose folded batch piece is a constant.
 */
function bakedBatchGraph(b: number): Graph {
  const g = new Graph();
  g.addInput("input_ids", "int64", [b, 4]);
  const e = g.op("Cast", ["input_ids"], { to: 1 }, { name: "Cast" });
  const r = g.op("Reshape", [e, g.constInts([b, 4, 1])], {}, { name: "Reshape" });
  const ex = g.op("Expand", [r, g.constInts([b, 4, 3])], {}, { name: "Expand" });
  const cos = g.op(
    "ConstantOfShape",
    [g.constInts([b, 4, 2])],
    { value: tensor("float32", [1], [0.5]) },
    { name: "ConstantOfShape" },
  );
  const tile = g.op(
    "Tile",
    [g.constant(tensor("float32", [1, 4, 1], [1, 2, 3, 4]), "pattern"), g.constInts([b, 1, 1])],
    {},
    { name: "Tile" },
  );
  const cat = g.op("Concat", [cos, ex, tile], { axis: 2 }, { name: "Concat" });
  const sl = g.op(
    "Slice",
    [cat, g.constInts([0]), g.constInts([b]), g.constInts([0])],
    {},
    { name: "Slice" },
  );
  const seq = g.op("Unsqueeze", [
    g.op("Gather", [g.op("Shape", [sl]), g.constant(tensor("int64", [], [1]))], { axis: 0 }),
    g.constInts([0]),
  ]);
  const target = g.op("Concat", [g.constInts([b]), seq, g.constInts([-1])], { axis: 0 }, { name: "Target" });
  g.op("Reshape", [sl, target], {}, { name: "Reshape_2", output: "y" });
  g.addOutput("y", "float32", [b, 4, 6]);
  return g;
}

describe("makeBatchDynamic", () => {
  const REWRITTEN = ["ConstantOfShape", "Reshape", "Reshape_2", "Slice", "Tile"];
  it.each([
    [1, REWRITTEN],
    [2, [...REWRITTEN, "Expand"].sort()],
  ])("exported at batch %i: rewrites %j; batch 1 and 3 equal the original's rows", async (b, expected) => {
    const original = encodeModel(bakedBatchGraph(b));
    const g = bakedBatchGraph(b);
    g.inputs[0].shape = [BATCH, 4];
    g.outputs[0].shape = [BATCH, 4, 6];
    const { rewritten } = makeBatchDynamic(g, b, "re-export it");
    expect(rewritten.sort()).toEqual(expected);
    const rows = [
      [3, 1, 4, 1],
      [5, 9, 2, 6],
      [5, 3, 5, 8],
    ];
    const rewrittenBytes = encodeModel(g);
    // Each row through the original at its own batch size (the row repeated), first copy kept.
    const single: number[] = [];
    for (const row of rows) {
      const want = await run(original, { input_ids: int64(Array(b).fill(row)) }, "y");
      const got = await run(rewrittenBytes, { input_ids: int64([row]) }, "y");
      const rowValues = want.data.slice(0, want.data.length / b);
      expect(got.data).toEqual(rowValues);
      single.push(...rowValues);
    }
    const batched = await run(rewrittenBytes, { input_ids: int64(rows) }, "y");
    expect(batched.dims).toEqual([3, 4, 6]);
    expect(batched.data).toEqual(single);
  });

  it("refuses a graph that reduces over the batch, naming the node and ending with the advice", () => {
    const g = new Graph();
    g.addInput("input_ids", "int64", [BATCH, 4]);
    const e = g.op("Cast", ["input_ids"], { to: 1 });
    g.op("ReduceSum", [e, g.constInts([0])], { keepdims: 0 }, { name: "SumOverBatch", output: "y" });
    g.addOutput("y", "float32", [4]);
    expect(() => makeBatchDynamic(g, 1, "re-export it")).toThrow(
      /fixed batch size 1 that cannot be made dynamic: SumOverBatch \(ReduceSum\) drops the batch axis.*; re-export it$/,
    );
  });
});
