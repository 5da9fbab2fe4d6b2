// Inference inside workerd with onnxruntime-web, end to end: models registered through the registry API (real
// local D1 and R2), served by the gateway, compared with onnxruntime-node's outputs for the same bytes.
// This is one of the two test files that load ORT's wasm (each costs ~10 s and ~1.8 GB), so it holds every
// check that needs a real session.
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import tokenizerJson from "../../models/tokenizer.json";
import { buildEncoder } from "../../src/core/models/encoder";
import { encodeModel, f32, Graph } from "../../src/core/onnx";
import { DEFAULT_CONFIG } from "../../src/gateway/config";
import { createGatewayState } from "../../src/gateway/inference-routes";
import { loadOrt } from "../../src/gateway/ort-wasm";
import { ArtifactError, type GraphOptimizationLevel, SessionCache } from "../../src/gateway/sessions";
import { artifactKey } from "../../src/registry/artifacts";
import { findModel, registryDb } from "../../src/registry/store";
import { storeVariant } from "../../src/registry/upload";
import expected from "../fixtures/gateway-expected.json";
import {
  CLASSIFY_ENCODER,
  CLASSIFY_LABELS,
  CLASSIFY_MAX_TOKENS,
  CLASSIFY_TEXTS,
  INFER_ENCODER,
  INFER_INPUTS,
  PAIR_ENCODER,
  PAIR_LABELS,
  PAIR_MAX_TOKENS,
  PAIR_TOKENIZER,
} from "../fixtures/gateway-models";
import pairTokenizerJson from "../fixtures/hf/bert-seqcls-o14/tokenizer.json";
import tokenizerPairs from "../fixtures/tokenizer-pairs.json";
import { graphVariantFiles } from "../shared/variant-files";
import { ensureModel, registerGraph, serverTiming, setSla, setStatus, testGateway } from "./gateway-helpers";
import { sha256Hex, tinyTokenizerJson } from "./helpers";

const TOKENIZER = JSON.stringify(tokenizerJson);
const PAIR_TOKENIZER_JSON = JSON.stringify(pairTokenizerJson);

interface InferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
}

function maxAbsDiff(a: readonly number[], b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i])));
}

const inferBody = (ids = INFER_INPUTS.inputIds, mask = INFER_INPUTS.attentionMask) => ({
  inputs: [
    { name: "input_ids", datatype: "INT64", shape: [ids.length, ids[0].length], data: ids.flat() },
    { name: "attention_mask", datatype: "INT64", shape: [mask.length, mask[0].length], data: mask.flat() },
  ],
});

describe("the workerd shim", () => {
  it("runs onnxruntime-web on the precompiled wasm module", async () => {
    const ort = loadOrt();
    expect(ort.env.wasm.numThreads).toBe(1);
    const session = await ort.InferenceSession.create(encodeModel(buildEncoder(INFER_ENCODER)));
    expect(session.inputNames).toEqual(["input_ids", "attention_mask"]);
    expect(session.outputNames).toEqual(["logits"]);
  });
});

describe("Open Inference Protocol v2 inference", () => {
  const state = createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0 });
  const gw = testGateway(state);
  const graph = buildEncoder(INFER_ENCODER);

  beforeAll(async () => {
    await ensureModel("enc", "enc-task", ["a", "b", "c"], graph);
    // v1: the fixture model, fastest; v2: other weights, slower. Routing must pick v1.
    await registerGraph("enc", "enc-task", ["a", "b", "c"], graph, {
      accuracy: 0.9,
      p50Ms: 2,
      sparsity: 0.4,
    });
    await registerGraph("enc", "enc-task", ["a", "b", "c"], buildEncoder({ ...INFER_ENCODER, seed: 8 }), {
      accuracy: 0.95,
      p50Ms: 9,
    });
  });

  it("serves the bytes the fixture was computed from", async () => {
    expect(await sha256Hex(encodeModel(graph))).toBe(expected.infer.modelSha256);
  });

  it("matches onnxruntime-node on the same model and inputs (max abs diff <= 1e-5)", async () => {
    const res = await gw.infer("/v2/models/enc/infer", inferBody());
    expect(res.status).toBe(200);
    const body = (await res.json()) as InferResponse;
    expect(body.model_name).toBe("enc");
    expect(body.model_version).toBe("1");
    const [logits] = body.outputs;
    expect(logits).toMatchObject({ name: "logits", datatype: "FP32", shape: expected.infer.logits.shape });
    const diff = maxAbsDiff(logits.data, expected.infer.logits.data);
    expect(diff).toBeLessThanOrEqual(1e-5);
    // The first request loaded the session, and says where the time went.
    expect(res.headers.get("x-sluice-session")).toBe("cold");
    const t = serverTiming(res);
    expect(Object.keys(t).sort()).toEqual([
      "auth",
      "body",
      "infer",
      "load",
      "pre",
      "r2",
      "route",
      "session",
      "tokenize",
      "total",
      "verify",
    ]);
    expect(t.load).toBeGreaterThanOrEqual(t.session + t.verify + t.r2 - 0.01);
  });

  it("labels the response: variant, sparsity, SLA and server-timing stages", async () => {
    const res = await gw.infer("/v2/models/enc/infer", inferBody());
    expect(res.headers.get("x-sluice-variant")).toBe("enc@1");
    expect(res.headers.get("x-sluice-sparsity")).toBe("0.4");
    expect(res.headers.get("x-sluice-sla")).toBe("met");
    expect(res.headers.get("x-sluice-session")).toBe("warm"); // loaded by the previous test
    const t = serverTiming(res);
    expect(Object.keys(t).sort()).toEqual([
      "auth",
      "body",
      "infer",
      "load",
      "pre",
      "route",
      "tokenize",
      "total",
    ]);
    // workerd's clock has 1 ms resolution here, so a tiny model's stages may read 0; check consistency only.
    expect(t.total).toBeGreaterThanOrEqual(t.infer);
    // `pre` spans the middleware before the handler, the API-key check among it; `body` is inside `total`.
    expect(t.pre).toBeGreaterThanOrEqual(t.auth - 0.01);
    expect(t.total).toBeGreaterThanOrEqual(t.body + t.infer + t.route - 0.01);
    expect(Math.min(...Object.values(t))).toBeGreaterThanOrEqual(0);
  });

  it("accepts nested data, echoes the id, filters outputs, and serves a pinned version", async () => {
    const body = inferBody();
    const nested = {
      id: "req-42",
      inputs: body.inputs.map((i, k) => ({
        ...i,
        data: k === 0 ? INFER_INPUTS.inputIds : INFER_INPUTS.attentionMask,
      })),
      outputs: [{ name: "logits" }],
    };
    const res = await gw.infer("/v2/models/enc/versions/1/infer", nested);
    expect(res.status).toBe(200);
    const out = (await res.json()) as InferResponse;
    expect(out.id).toBe("req-42");
    expect(maxAbsDiff(out.outputs[0].data, expected.infer.logits.data)).toBeLessThanOrEqual(1e-5);
    expect(res.headers.get("x-sluice-sla")).toBeNull(); // pinned requests are not routed

    // `outputs: []` names no output in particular: all of them, as when the field is absent (OIP v2).
    const all = await gw.infer("/v2/models/enc/versions/1/infer", { ...body, outputs: [] });
    expect(all.status).toBe(200);
    const allOut = (await all.json()) as InferResponse;
    expect(allOut.outputs.map((o) => o.name)).toContain("logits");
    expect(
      maxAbsDiff(allOut.outputs.find((o) => o.name === "logits")!.data, expected.infer.logits.data),
    ).toBeLessThanOrEqual(1e-5);

    const v2 = await gw.infer("/v2/models/enc/versions/2/infer", body);
    expect(v2.headers.get("x-sluice-variant")).toBe("enc@2");
    const logits2 = ((await v2.json()) as InferResponse).outputs[0].data;
    expect(maxAbsDiff(logits2, expected.infer.logits.data)).toBeGreaterThan(1e-3); // really another model
  });

  it("answers metadata and readiness", async () => {
    const meta = await (await gw.fetch("/v2/models/enc")).json();
    expect(meta).toEqual({
      name: "enc",
      versions: ["1", "2"],
      platform: "onnx",
      inputs: [
        { name: "input_ids", datatype: "INT64", shape: [-1, -1] },
        { name: "attention_mask", datatype: "INT64", shape: [-1, -1] },
      ],
      outputs: [{ name: "logits", datatype: "FP32", shape: [-1, 3] }],
    });
    expect(await (await gw.fetch("/v2/models/enc/ready")).json()).toEqual({ name: "enc", ready: true });
    expect((await gw.fetch("/v2/health/ready")).status).toBe(200);
  });

  it("refuses a token id past the embedding table before the runtime, naming input and element", async () => {
    // Token id 1000 is outside the fixture's 64-row word table (INFER_ENCODER.vocabSize): a 400 from the
    // table size read off the graph at load, not onnxruntime's Gather error.
    const res = await gw.infer("/v2/models/enc/infer", inferBody([[2, 63, 1000]], [[1, 1, 1]]));
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: string };
    expect(error).toMatch(/^inputs\[0\]\.data: element 2 is 1000/);
    expect(error).toContain(`[0, ${INFER_ENCODER.vocabSize})`);
    expect(error).not.toMatch(/onnxruntime|Gather|\.cc|\//);
    const route = (await (await gw.fetch("/v1/models/enc/route")).json()) as { coolingDown: number[] };
    expect(route.coolingDown).toEqual([]);
    // The last row is still a valid id.
    const edge = await gw.infer("/v2/models/enc/infer", inferBody([[2, 63, 3]], [[1, 1, 1]]));
    expect(edge.status).toBe(200);
  });

  it("refuses a sequence longer than the position table the graph proves (no maxSequenceLength in its manifest)", async () => {
    const n = INFER_ENCODER.maxPositions!; // 32, well under the gateway's MAX_SEQUENCE of 512
    const row = (len: number) => [Array.from({ length: len }, (_, i) => (i === 0 ? 2 : 5))];
    const ones = (len: number) => [Array(len).fill(1)];
    const over = await gw.infer("/v2/models/enc/infer", inferBody(row(n + 1), ones(n + 1)));
    expect(over.status).toBe(400);
    const { error } = (await over.json()) as { error: string };
    expect(error).toMatch(/^inputs\[0\]\.shape\[1\]: 33 exceeds the model's maximum sequence length of 32/);
    const fits = await gw.infer("/v2/models/enc/infer", inferBody(row(n), ones(n)));
    expect(fits.status).toBe(200);
  });

  it("derives a RoBERTa layout's limit from its offset position table (rows - 2), on onnxruntime-web", async () => {
    const maxPositions = 20;
    const g = buildEncoder({ ...INFER_ENCODER, layout: "roberta", maxPositions, seed: 9 });
    await ensureModel("rob", "rob-task", ["a", "b", "c"], g);
    await registerGraph("rob", "rob-task", ["a", "b", "c"], g, { accuracy: 0.9, p50Ms: 1 });
    const seq = (len: number) => inferBody([Array(len).fill(5)], [Array(len).fill(1)]);
    expect((await gw.infer("/v2/models/rob/infer", seq(maxPositions))).status).toBe(200);
    const over = await gw.infer("/v2/models/rob/infer", seq(maxPositions + 1));
    expect(over.status).toBe(400);
    expect(((await over.json()) as { error: string }).error).toMatch(
      /^inputs\[0\]\.shape\[1\]: 21 exceeds the model's maximum sequence length of 20/,
    );
  });

  it("refuses ragged nested data instead of flattening it", async () => {
    const body = inferBody();
    const ragged = {
      inputs: [
        {
          ...body.inputs[0],
          shape: [3, 6],
          data: [
            [2, 10, 11, 12, 3, 0],
            [2, 40, 41, 3, 0, 0, 0],
            [2, 5, 6, 7, 8],
          ],
        },
        body.inputs[1],
      ],
    };
    const res = await gw.infer("/v2/models/enc/infer", ragged);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(
      /^inputs\[0\]\.data\[1\]: has 7 elements/,
    );
  });

  it("refuses a negative token id before the runtime (Gather would wrap it to the table's end)", async () => {
    const res = await gw.infer("/v2/models/enc/infer", inferBody([[2, -1, 3]], [[1, 1, 1]]));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toMatch(/inputs\[0\]\.data/);
    expect(body.error).toMatch(/element 1 is -1/);
  });

  it("serves concurrent requests on one session correctly", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, async () => (await gw.infer("/v2/models/enc/infer", inferBody())).json()),
    );
    for (const r of results as InferResponse[]) {
      expect(maxAbsDiff(r.outputs[0].data, expected.infer.logits.data)).toBeLessThanOrEqual(1e-5);
    }
  });

  it("two requests in flight for a cold variant on one isolate share one load of its session", async () => {
    // A fresh state: its session cache has never loaded anything, so both requests find the variant cold.
    const cold = createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0 });
    const coldGw = testGateway(cold);
    expect(cold.sessions.stats().loads).toBe(0);
    const [a, b] = await Promise.all([
      coldGw.infer("/v2/models/enc/infer", inferBody()),
      coldGw.infer("/v2/models/enc/infer", inferBody()),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    for (const res of [a, b]) {
      const body = (await res.json()) as InferResponse;
      expect(maxAbsDiff(body.outputs[0].data, expected.infer.logits.data)).toBeLessThanOrEqual(1e-5);
      expect(res.headers.get("x-sluice-variant")).toBe("enc@1");
    }
    const stats = cold.sessions.stats();
    expect(stats.loads).toBe(1); // the second request waited for the first one's load (isolate-wait.ts)
    expect(stats.keys).toHaveLength(1);
  });
});

describe("classify", () => {
  const state = createGatewayState({
    ...DEFAULT_CONFIG,
    catalogTtlMs: 0,
    classifyMaxTokens: CLASSIFY_MAX_TOKENS,
  });
  const gw = testGateway(state);
  const graph = buildEncoder(CLASSIFY_ENCODER);

  beforeAll(async () => {
    await ensureModel("clf", "clf-task", CLASSIFY_LABELS, graph);
    await registerGraph("clf", "clf-task", CLASSIFY_LABELS, graph, {
      accuracy: 0.9,
      p50Ms: 1,
      sparsity: 0.3,
      tokenizer: TOKENIZER,
    });
  });

  /** Softmax of onnxruntime-node's logits for the same texts, tokenized in Node. */
  const expectedProbs = () => {
    const [batch, k] = expected.classify.logits.shape;
    return Array.from({ length: batch }, (_, b) => {
      const row = expected.classify.logits.data.slice(b * k, (b + 1) * k);
      const m = Math.max(...row);
      const e = row.map((x) => Math.exp(x - m));
      const z = e.reduce((a, x) => a + x, 0);
      return e.map((x) => x / z);
    });
  };

  it("tokenizes with the variant's tokenizer.json and matches onnxruntime-node", async () => {
    expect(await sha256Hex(encodeModel(graph))).toBe(expected.classify.modelSha256);
    const res = await gw.infer("/v1/models/clf/classify", { texts: CLASSIFY_TEXTS });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      model: string;
      version: number;
      results: { label: string; score: number; scores: Record<string, number> }[];
    };
    expect(body.model).toBe("clf");
    expect(body.results).toHaveLength(CLASSIFY_TEXTS.length);
    expectedProbs().forEach((probs, b) => {
      const r = body.results[b];
      const best = probs[1] > probs[0] ? 1 : 0;
      expect(r.label).toBe(CLASSIFY_LABELS[best]);
      expect(Math.abs(r.score - probs[best])).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff([r.scores.ham, r.scores.spam], probs)).toBeLessThanOrEqual(1e-5);
    });
    expect(res.headers.get("x-sluice-variant")).toBe("clf@1");
    expect(res.headers.get("x-sluice-sparsity")).toBe("0.3");
    expect(serverTiming(res)).toHaveProperty("tokenize");
  });

  it("never feeds a fixed batch axis more rows than it declares: 4 texts at batch 3 run as 3 + 1 (filled up)", async () => {
    // The same encoder declaring batch 3 (an export that was not made dynamic): onnxruntime refuses other sizes.
    const fixed = graph.clone();
    for (const input of fixed.inputs) input.shape = [3, ...(input.shape ?? []).slice(1)];
    await ensureModel("clf-b3", "clf-b3-task", CLASSIFY_LABELS, fixed);
    await registerGraph("clf-b3", "clf-b3-task", CLASSIFY_LABELS, fixed, {
      accuracy: 0.9,
      p50Ms: 1,
      sparsity: 0.3,
      tokenizer: TOKENIZER,
    });
    for (const texts of [CLASSIFY_TEXTS, CLASSIFY_TEXTS.slice(0, 1)]) {
      const res = await gw.infer("/v1/models/clf-b3/classify", { texts });
      expect(res.status, await res.clone().text()).toBe(200);
      const body = (await res.json()) as { results: { scores: Record<string, number> }[] };
      expect(body.results).toHaveLength(texts.length);
      body.results.forEach((r, b) => {
        expect(maxAbsDiff([r.scores.ham, r.scores.spam], expectedProbs()[b])).toBeLessThanOrEqual(1e-5);
      });
    }
  });

  it("accepts a single text", async () => {
    const res = await gw.infer("/v1/models/clf/classify", { text: CLASSIFY_TEXTS[0] });
    const body = (await res.json()) as { results: { scores: Record<string, number> }[] };
    expect(body.results).toHaveLength(1);
    expect(Math.abs(body.results[0].scores.spam - expectedProbs()[0][1])).toBeLessThanOrEqual(1e-5);
  });
});

describe("classify sentence pairs", () => {
  const state = createGatewayState({
    ...DEFAULT_CONFIG,
    catalogTtlMs: 0,
    classifyMaxTokens: PAIR_MAX_TOKENS,
  });
  const gw = testGateway(state);
  const graph = buildEncoder(PAIR_ENCODER);
  const cases = tokenizerPairs[PAIR_TOKENIZER].cases.filter((c) => c.maxLen === PAIR_MAX_TOKENS);
  const texts = cases.map((c) => c.text);
  const pairs = cases.map((c) => c.textPair);
  const fields = { text: "premise", textPair: "hypothesis" };

  beforeAll(async () => {
    await ensureModel("nli", "nli-task", PAIR_LABELS, graph);
    await registerGraph("nli", "nli-task", PAIR_LABELS, graph, {
      accuracy: 0.9,
      p50Ms: 1,
      tokenizer: PAIR_TOKENIZER_JSON,
      input: { textPairs: true, fields },
    });
  });

  /** Softmax rows of onnxruntime-node's logits on the Python tokenizer's ids and token types (gateway-fixture.test.ts). */
  const probsOf = (logits: number[]) =>
    Array.from({ length: cases.length }, (_, b) => {
      const row = logits.slice(b * 3, (b + 1) * 3);
      const m = Math.max(...row);
      const e = row.map((x) => Math.exp(x - m));
      const z = e.reduce((a, x) => a + x, 0);
      return e.map((x) => x / z);
    });
  type Results = { results: { label: string; scores: Record<string, number> }[] };
  const scoresOf = (r: Results["results"][number]) => PAIR_LABELS.map((l) => r.scores[l]);

  it("tokenizes text/text_pairs with the variant's pair template, feeds token_type_ids, and matches onnxruntime-node", async () => {
    expect(await sha256Hex(encodeModel(graph))).toBe(expected.pairs.modelSha256);
    const res = await gw.infer("/v1/models/nli/classify", { texts, text_pairs: pairs });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as Results;
    expect(body.results).toHaveLength(cases.length);
    const want = probsOf(expected.pairs.logits.data);
    const zeroTypes = probsOf(expected.pairs.zeroTypeLogits);
    body.results.forEach((r, b) => {
      expect(maxAbsDiff(scoresOf(r), want[b])).toBeLessThanOrEqual(1e-5);
      expect(r.label).toBe(PAIR_LABELS[want[b].indexOf(Math.max(...want[b]))]);
    });
    // Answers with every token type 0 would be this far off: the comparison above can tell.
    expect(Math.max(...body.results.map((r, b) => maxAbsDiff(scoresOf(r), zeroTypes[b])))).toBeGreaterThan(
      1e-3,
    );
  });

  it("takes one pair as text/text_pair", async () => {
    const res = await gw.infer("/v1/models/nli/classify", { text: texts[1], text_pair: pairs[1] });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as Results;
    expect(maxAbsDiff(scoresOf(body.results[0]), probsOf(expected.pairs.logits.data)[1])).toBeLessThanOrEqual(
      1e-5,
    );
  });

  it("answers 400 naming the field when the body does not fit the variant", async () => {
    const cases: [string, unknown, string, RegExp][] = [
      ["/v1/models/nli/classify", { texts }, "text_pairs", /classifies sentence pairs/],
      ["/v1/models/nli/classify", { text: texts[0] }, "text_pair", /classifies sentence pairs/],
      ["/v1/models/nli/classify", { texts, text_pairs: pairs.slice(1) }, "text_pairs", /one per text/],
      ["/v1/models/nli/classify", { texts, text_pair: pairs[0] }, "text_pair", /give "text_pairs"/],
      ["/v1/models/nli/classify", { text: texts[0], text_pairs: pairs }, "text_pairs", /give "text_pair"/],
      ["/v1/models/nli/classify", { texts, text_pairs: [...pairs.slice(1), ""] }, "text_pairs[4]", /empty/],
      ["/v1/models/nli/classify", { text: texts[0], text_pair: 7 }, "text_pair", /string/],
    ];
    for (const [path, body, field, message] of cases) {
      const res = await gw.infer(path, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const err = ((await res.json()) as { error: { field: string; message: string } }).error;
      expect(err.field).toBe(field);
      expect(err.message).toMatch(message);
    }
  });

  it("refuses a pair sent to a single-text variant with a 400 naming text_pair", async () => {
    const single = buildEncoder({ ...PAIR_ENCODER, seed: 14 });
    await ensureModel("nli-single", "nli-single-task", PAIR_LABELS, single);
    await registerGraph("nli-single", "nli-single-task", PAIR_LABELS, single, {
      accuracy: 0.9,
      p50Ms: 1,
      tokenizer: PAIR_TOKENIZER_JSON,
    });
    const res = await gw.infer("/v1/models/nli-single/classify", { text: texts[0], text_pair: pairs[0] });
    expect(res.status).toBe(400);
    const err = ((await res.json()) as { error: { field: string; message: string } }).error;
    expect(err.field).toBe("text_pair");
    expect(err.message).toMatch(/nli-single@1 classifies single texts/);
    // The same variant still answers single texts (token types all 0).
    expect((await gw.infer("/v1/models/nli-single/classify", { text: texts[0] })).status).toBe(200);
  });

  it("answers 422 naming the model when a pair variant's tokenizer has no pair template", async () => {
    const g = buildEncoder({ ...PAIR_ENCODER, seed: 15 });
    const { post_processor: pp, ...rest } = pairTokenizerJson as typeof pairTokenizerJson;
    const tokenizer = JSON.stringify({ ...rest, post_processor: { ...pp, pair: null } });
    await ensureModel("nli-nopair", "nli-nopair-task", PAIR_LABELS, g);
    // The upload refuses such a variant now (registry-variants.test.ts); one registered before that check is
    // stored as the store keeps it, past the upload validation.
    const files = await graphVariantFiles("nli-nopair", "nli-nopair-task", PAIR_LABELS, g, {
      accuracy: 0.9,
      p50Ms: 1,
      tokenizer,
      input: { textPairs: true, fields },
    });
    const db = registryDb(env.DB);
    const { variant } = await storeVariant(env.ARTIFACTS, db, (await findModel(db, "nli-nopair"))!, {
      manifest: files.manifest,
      model: files.model,
      sha256: files.manifest.artifact.sha256,
      tokenizer: { bytes: files.tokenizer!, sha256: files.manifest.tokenizer!.sha256 },
    });
    await setStatus("nli-nopair", variant.version, "active");
    const res = await gw.infer("/v1/models/nli-nopair/classify", { text: texts[0], text_pair: pairs[0] });
    expect(res.status).toBe(422);
    const err = ((await res.json()) as { error: { code: string; field: string; message: string } }).error;
    expect(err).toMatchObject({ code: "no_pair_template", field: "model" });
    expect(err.message).toMatch(/no pair template/);
  });
});

describe("routing, SLA and fallback", () => {
  const state = createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0, cooldownMs: 60_000 });
  const gw = testGateway(state);
  const fast = buildEncoder({ ...INFER_ENCODER, seed: 17 });
  const slow = buildEncoder({ ...INFER_ENCODER, seed: 18 });
  const impostor = encodeModel(buildEncoder({ ...INFER_ENCODER, seed: 19 }));
  let fastKey = "";

  beforeAll(async () => {
    await ensureModel("fb", "fb-task", ["a", "b", "c"], fast);
    fastKey = (await registerGraph("fb", "fb-task", ["a", "b", "c"], fast, { accuracy: 0.93, p50Ms: 2 }))
      .artifactKey;
    await registerGraph("fb", "fb-task", ["a", "b", "c"], slow, { accuracy: 0.96, p50Ms: 9 });
    await setSla("fb-task", { min: 0.9 });
  });

  it("routes to the fastest variant meeting the SLA, and a request can raise the bar", async () => {
    const res = await gw.infer("/v2/models/fb/infer", inferBody());
    expect(res.headers.get("x-sluice-variant")).toBe("fb@1");
    const strictReq = await gw.infer("/v2/models/fb/infer", inferBody(), { "x-sluice-min-accuracy": "0.95" });
    expect(strictReq.headers.get("x-sluice-variant")).toBe("fb@2");
    expect(strictReq.headers.get("x-sluice-sla")).toBe("met");
  });

  it("falls back when the chosen variant's artifact is corrupted in R2, and cools it down", async () => {
    // Another valid model under v1's content address: loading it would serve the wrong weights.
    await env.ARTIFACTS.put(fastKey, impostor);
    const fresh = createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0, cooldownMs: 60_000 });
    const gw2 = testGateway(fresh);

    const res = await gw2.infer("/v2/models/fb/infer", inferBody());
    expect(res.status).toBe(200);
    expect(res.headers.get("x-sluice-variant")).toBe("fb@2");
    expect(res.headers.get("x-sluice-fallback")).toBe("1:load");
    expect(res.headers.get("x-sluice-sla")).toBe("met");
    const served = ((await res.json()) as InferResponse).outputs[0].data;
    const pinned2 = (
      (await (await gw2.infer("/v2/models/fb/versions/2/infer", inferBody())).json()) as InferResponse
    ).outputs[0].data;
    expect(served).toEqual(pinned2);

    // The corrupted variant is never served, even pinned: its bytes fail the sha256 check.
    const pinned1 = await gw2.infer("/v2/models/fb/versions/1/infer", inferBody());
    expect(pinned1.status).toBe(503);
    expect(((await pinned1.json()) as { error: string }).error).toMatch(/sha256/);

    // Cooling down: the route explains it, and the next request goes straight to v2.
    const route = (await (await gw2.fetch("/v1/models/fb/route")).json()) as {
      chosen: number;
      coolingDown: number[];
      candidates: { version: number; verdict: string }[];
    };
    expect(route.chosen).toBe(2);
    expect(route.coolingDown).toEqual([1]);
    expect(route.candidates.find((c) => c.version === 1)?.verdict).toBe("cooling_down");
    const next = await gw2.infer("/v2/models/fb/infer", inferBody());
    expect(next.headers.get("x-sluice-variant")).toBe("fb@2");
    expect(next.headers.get("x-sluice-fallback")).toBeNull();
  });

  it("decides again when a version starts cooling down or the request asks for more, with the entry still cached", async () => {
    // Decisions are reused per cached catalog entry (inference-routes.ts): a long TTL keeps the entry.
    const state = createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 60_000, cooldownMs: 60_000 });
    const gw2 = testGateway(state);
    type Route = {
      chosen: number;
      meetsSla: Record<string, boolean>;
      candidates: { version: number; verdict: string }[];
    };
    const route = async (query = "") =>
      (await (await gw2.fetch(`/v1/models/fb/route${query}`)).json()) as Route;
    const first = await route();
    expect(first.chosen).toBe(1);
    expect(Object.values((await route("?minAccuracy=1")).meetsSla)).not.toContain(true);
    expect((await route()).meetsSla).toEqual(first.meetsSla);
    const entry = await state.catalog.lookup(env.DB, "fb");
    state.cooldowns.mark(entry!.model.id, 1);
    const cooled = await route();
    expect(cooled.chosen).toBe(2);
    expect(cooled.candidates.find((c) => c.version === 1)?.verdict).toBe("cooling_down");
    expect(state.catalog.queries).toBe(1);
  });

  it("serves the most accurate variant with x-sluice-sla: unmet, or 503 when the SLA is strict", async () => {
    await setSla("fb-task", { min: 0.99 });
    const unmet = await gw.infer("/v2/models/fb/infer", inferBody());
    expect(unmet.status).toBe(200);
    expect(unmet.headers.get("x-sluice-variant")).toBe("fb@2");
    expect(unmet.headers.get("x-sluice-sla")).toBe("unmet");

    await setSla("fb-task", { min: 0.99, strict: true });
    const refused = await gw.infer("/v2/models/fb/infer", inferBody());
    expect(refused.status).toBe(503);
    expect(refused.headers.get("x-sluice-sla")).toBe("unmet");
    expect(((await refused.json()) as { error: string }).error).toMatch(/no active variant meets .* strict/);
    await setSla("fb-task", { min: 0.9 });
  });
});

describe("session cache", () => {
  const models = [31, 32, 33].map((seed) => encodeModel(buildEncoder({ ...INFER_ENCODER, seed })));
  const refs: {
    artifactKey: string;
    sha256: string;
    bytes: number;
    tokenizerKey: null;
    tokenizerSha256: null;
  }[] = [];

  beforeAll(async () => {
    for (const bytes of models) {
      const sha256 = await sha256Hex(bytes);
      const artifactKey = `test/sessions/${sha256}`;
      await env.ARTIFACTS.put(artifactKey, bytes);
      refs.push({ artifactKey, sha256, bytes: bytes.byteLength, tokenizerKey: null, tokenizerSha256: null });
    }
  });

  it("shares one load among concurrent first requests", async () => {
    const cache = new SessionCache(64 * 1024 * 1024);
    const leases = await Promise.all(Array.from({ length: 6 }, () => cache.acquire(env.ARTIFACTS, refs[0])));
    expect(cache.stats().loads).toBe(1);
    expect(new Set(leases.map((l) => l.variant.session)).size).toBe(1);
    for (const l of leases) l.release();
  });

  it("fails every request sharing a load with the load's own error, after one attempt", async () => {
    const cache = new SessionCache(64 * 1024 * 1024);
    const wrong = { ...refs[0], artifactKey: refs[1].artifactKey }; // bytes that do not match the sha256
    const errors = await Promise.all(
      Array.from({ length: 4 }, () => cache.acquire(env.ARTIFACTS, wrong).catch((e) => e)),
    );
    for (const err of errors) expect((err as ArtifactError).problem).toBe("checksum");
    expect(new Set(errors).size).toBe(1); // one load failed, the others saw its error
    expect(cache.stats()).toMatchObject({ loads: 0, keys: [] });
    (await cache.acquire(env.ARTIFACTS, refs[0])).release(); // nothing left pending: the next load runs
    expect(cache.stats().loads).toBe(1);
  });

  it("takes over a load that never lands (its request was cancelled) after loadWaitMs", async () => {
    // The first creation never settles, as when workerd cancels the loading request; the real one follows.
    let calls = 0;
    const create = (model: Uint8Array) =>
      calls++ === 0
        ? new Promise<never>(() => {})
        : loadOrt().InferenceSession.create(model, { executionProviders: ["wasm"] });
    const cache = new SessionCache(64 * 1024 * 1024, create, 50);
    void cache.acquire(env.ARTIFACTS, refs[2]); // stuck forever
    const waiters = await Promise.all([0, 1].map(() => cache.acquire(env.ARTIFACTS, refs[2])));
    expect(calls).toBe(2); // the two waiters gave up on the stuck load and shared one new load
    expect(waiters[0].variant.session).toBe(waiters[1].variant.session);
    expect(cache.stats()).toMatchObject({ loads: 1, keys: [refs[2].sha256] });
    for (const l of waiters) l.release();
  });

  it("creates an edge-optimized graph's session without re-optimising it, any other at level all", async () => {
    const levels: GraphOptimizationLevel[] = [];
    const create = (model: Uint8Array, level: GraphOptimizationLevel) => {
      levels.push(level);
      return loadOrt().InferenceSession.create(model, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: level,
      });
    };
    const cache = new SessionCache(64 * 1024 * 1024, create);
    (await cache.acquire(env.ARTIFACTS, { ...refs[0], manifest: { graphOptimization: "edge" } })).release();
    (await cache.acquire(env.ARTIFACTS, { ...refs[1], manifest: { graphOptimization: "none" } })).release();
    (await cache.acquire(env.ARTIFACTS, { ...refs[2], manifest: {} })).release(); // a manifest from before
    expect(levels).toEqual(["disabled", "all", "all"]);
    // The gateway's own creation at level disabled loads and runs the model.
    const lease = await new SessionCache(64 * 1024 * 1024).acquire(env.ARTIFACTS, {
      ...refs[0],
      manifest: { graphOptimization: "edge" },
    });
    const ort = loadOrt();
    const [ids, mask] = [INFER_INPUTS.inputIds, INFER_INPUTS.attentionMask];
    const dims = [ids.length, ids[0].length];
    const out = await lease.variant.session.run({
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.flat(), BigInt), dims),
      attention_mask: new ort.Tensor("int64", BigInt64Array.from(mask.flat(), BigInt), dims),
    });
    expect(out.logits.dims[0]).toBe(ids.length);
    lease.release();
  });

  it("evicts least recently used sessions to stay within the byte budget", async () => {
    const budget = Math.floor(models[0].byteLength * 2.5); // room for two
    const cache = new SessionCache(budget);
    const use = async (i: number) => (await cache.acquire(env.ARTIFACTS, refs[i])).release();
    await use(0);
    await use(1);
    await use(0); // 0 is now more recent than 1
    await use(2); // over budget: 1 goes
    let s = cache.stats();
    expect(s.keys).toEqual([refs[0].sha256, refs[2].sha256]);
    expect(s.evictions).toBe(1);
    expect(s.usedBytes).toBeLessThanOrEqual(budget);
    await use(1); // reloaded; 0 (least recent) goes
    s = cache.stats();
    expect(s.loads).toBe(4);
    expect(s.keys).toEqual([refs[2].sha256, refs[1].sha256]);
  });

  it("never evicts a session a request is holding", async () => {
    const cache = new SessionCache(Math.floor(models[0].byteLength * 1.5)); // room for one
    const held = await cache.acquire(env.ARTIFACTS, refs[0]);
    (await cache.acquire(env.ARTIFACTS, refs[1])).release();
    expect(cache.stats().keys).toEqual([refs[0].sha256]); // 1 went instead of the held 0
    held.release();
    (await cache.acquire(env.ARTIFACTS, refs[2])).release();
    expect(cache.stats().keys).toEqual([refs[2].sha256]);
  });

  it("refuses an artifact whose bytes do not match the registry's sha256, and keeps nothing", async () => {
    const cache = new SessionCache(64 * 1024 * 1024);
    const wrong = { ...refs[0], artifactKey: refs[1].artifactKey };
    const err = await cache.acquire(env.ARTIFACTS, wrong).catch((e) => e);
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as ArtifactError).problem).toBe("checksum");
    expect(cache.stats()).toMatchObject({ loads: 0, usedBytes: 0, keys: [] });
    const tooBig = await new SessionCache(100).acquire(env.ARTIFACTS, refs[0]).catch((e) => e);
    expect((tooBig as ArtifactError).problem).toBe("too_large");
  });

  it("reloads through HTTP once the budget forced an eviction", async () => {
    const state = createGatewayState({
      ...DEFAULT_CONFIG,
      catalogTtlMs: 0,
      sessionBudgetBytes: models[0].byteLength * 1.5,
    });
    const gw = testGateway(state);
    const a = buildEncoder({ ...INFER_ENCODER, seed: 41 });
    const b = buildEncoder({ ...INFER_ENCODER, seed: 42 });
    await ensureModel("ev-a", "ev", ["a", "b", "c"], a);
    await ensureModel("ev-b", "ev", ["a", "b", "c"], b);
    await registerGraph("ev-a", "ev", ["a", "b", "c"], a, { accuracy: 0.9, p50Ms: 1 });
    await registerGraph("ev-b", "ev", ["a", "b", "c"], b, { accuracy: 0.9, p50Ms: 1 });
    const session = async (m: string) =>
      (await gw.infer(`/v2/models/${m}/infer`, inferBody())).headers.get("x-sluice-session");
    expect(await session("ev-a")).toBe("cold");
    expect(await session("ev-a")).toBe("warm");
    expect(await session("ev-b")).toBe("cold");
    expect(await session("ev-a")).toBe("cold");
    expect(state.sessions.stats().evictions).toBe(2);
  });
});

describe("runtime failures, readiness and the tokenizer", () => {
  const state = createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0 });
  const gw = testGateway(state);

  it("answers a failure the validation could not foresee with a generic 500 and the request id", async () => {
    // Reshape to [-1, 4] of a well-formed [1, 3] input: valid against the io signature, fails inside onnxruntime.
    const g = new Graph({ name: "reshape", opset: 17 });
    const x = g.addInput("x", "float32", ["batch", "n"]);
    // (times a weight: the manifest counts parameters, and a model without any is refused)
    const w = g.addInitializer("w", f32([4], [1, 1, 1, 1]));
    g.op("Mul", [g.op("Reshape", [x, g.constInts([-1, 4])]), w], {}, { output: "y" });
    g.addOutput("y", "float32", ["batch", 4]);
    await ensureModel("boom", "boom-task", ["a"], g);
    await registerGraph("boom", "boom-task", ["a"], g, { accuracy: 0.9, p50Ms: 1 });
    const body = { inputs: [{ name: "x", datatype: "FP32", shape: [1, 3], data: [1, 2, 3] }] };
    const ok = await gw.infer("/v2/models/boom/infer", {
      inputs: [{ ...body.inputs[0], shape: [1, 4], data: [1, 2, 3, 4] }],
    });
    expect(ok.status).toBe(200);

    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await gw.infer("/v2/models/boom/infer", body, { "x-request-id": "req-boom-1" });
    const lines = logged.mock.calls.map((c) => c.map(String).join(" "));
    logged.mockRestore();
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "inference failed", requestId: "req-boom-1" });
    expect(res.headers.get("x-request-id")).toBe("req-boom-1");
    // The runtime's own message is in the log, with the id, and nowhere in the answer.
    expect(lines.some((l) => l.includes("req-boom-1") && /reshape/i.test(l))).toBe(true);
    const route = (await (await gw.fetch("/v1/models/boom/route")).json()) as { coolingDown: number[] };
    expect(route.coolingDown).toEqual([]);

    // Without a client id one is generated, and answered in both the header and the body.
    const anon = await gw.infer("/v2/models/boom/infer", body);
    const anonBody = (await anon.json()) as { requestId: string };
    expect(anonBody.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(anon.headers.get("x-request-id")).toBe(anonBody.requestId);
  });

  it("is not ready when no active variant's artifact would load (sha256 mismatch, missing)", async () => {
    const a = buildEncoder({ ...INFER_ENCODER, seed: 51 });
    const b = buildEncoder({ ...INFER_ENCODER, seed: 52 });
    await ensureModel("rd", "rd-task", ["a", "b", "c"], a);
    const v1 = await registerGraph("rd", "rd-task", ["a", "b", "c"], a, { accuracy: 0.9, p50Ms: 1 });
    const v2 = await registerGraph("rd", "rd-task", ["a", "b", "c"], b, { accuracy: 0.9, p50Ms: 2 });
    const ready = async (path: string) => {
      const res = await gw.fetch(path);
      return { status: res.status, ...((await res.json()) as { ready: boolean; error?: string }) };
    };
    expect(await ready("/v2/models/rd/ready")).toMatchObject({ status: 200, ready: true });
    expect(await ready("/v2/models/rd/versions/1/ready")).toMatchObject({ status: 200, ready: true });
    // The metadata's versions are the servable ones (not retired, and ready).
    const versions = async () =>
      ((await (await gw.fetch("/v2/models/rd")).json()) as { versions: string[] }).versions;
    expect(await versions()).toEqual(["1", "2"]);

    // v1's object replaced by other bytes: v1 is not ready, the model still is (v2 is servable).
    await env.ARTIFACTS.put(v1.artifactKey, encodeModel(buildEncoder({ ...INFER_ENCODER, seed: 53 })));
    const v1Ready = await ready("/v2/models/rd/versions/1/ready");
    expect(v1Ready).toMatchObject({ status: 503, ready: false });
    expect(v1Ready.error).toMatch(/v1: model\.onnx in R2 does not match the registry's sha256/);
    expect(await ready("/v2/models/rd/ready")).toMatchObject({ status: 200, ready: true });
    expect(await versions()).toEqual(["2"]);

    // v2's object gone too: the row is there, but nothing can be served.
    await env.ARTIFACTS.delete(v2.artifactKey);
    const model = await ready("/v2/models/rd/ready");
    expect(model).toMatchObject({ status: 503, ready: false });
    expect(model.error).toMatch(/v2: model\.onnx is missing from R2/);
    // And inference agrees with readiness.
    expect((await gw.infer("/v2/models/rd/infer", inferBody())).status).toBe(503);
    expect(await versions()).toEqual([]);

    // Restored bytes (with R2's own checksum, as the registry writes them) are ready again.
    await env.ARTIFACTS.put(v2.artifactKey, v2.bytes, { sha256: v2.sha256 });
    expect(await ready("/v2/models/rd/ready")).toMatchObject({ status: 200, ready: true });
    expect(await versions()).toEqual(["2"]);
  });

  it("serves /v2 infer with a corrupt tokenizer object; classify answers a 503 naming the tokenizer", async () => {
    const g = buildEncoder({ ...CLASSIFY_ENCODER, seed: 61 });
    // The committed tokenizer, as other bytes (its own R2 object, not the one the classify tests use).
    const tokenizer = JSON.stringify(tokenizerJson, null, 1);
    await ensureModel("tk", "tk-task", CLASSIFY_LABELS, g);
    await registerGraph("tk", "tk-task", CLASSIFY_LABELS, g, { accuracy: 0.9, p50Ms: 1, tokenizer });
    const fresh = testGateway(createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0 }));
    const first = await fresh.infer("/v1/models/tk/classify", { texts: CLASSIFY_TEXTS });
    expect(first.status, await first.clone().text()).toBe(200);

    // The shared, content-addressed tokenizer object is overwritten in R2; a new isolate must load it again.
    await env.ARTIFACTS.put(artifactKey(await sha256Hex(tokenizer)), '{"model": "truncated');
    const gw2 = testGateway(createGatewayState({ ...DEFAULT_CONFIG, catalogTtlMs: 0 }));
    const infer = await gw2.infer("/v2/models/tk/infer", inferBody());
    expect(infer.status).toBe(200); // loads the model only: /v2 never tokenizes
    expect(infer.headers.get("x-sluice-session")).toBe("cold");

    const res = await gw2.infer("/v1/models/tk/classify", { text: "w1 w2" });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string; field: string } };
    expect(body.error).toMatchObject({ code: "tokenizer_unavailable", field: "tokenizer" });
    expect(body.error.message).toMatch(
      /tokenizer of tk@1 cannot be loaded: tokenizer\.json in R2 has sha256/,
    );
    // /v2 infer still works after classify failed on the tokenizer: nothing was cooled down.
    expect((await gw2.infer("/v2/models/tk/infer", inferBody())).status).toBe(200);
  });

  it("answers a 503 naming the tokenizer when its tokenizer.json is JSON but no tokenizer", async () => {
    const g = buildEncoder({ ...INFER_ENCODER, seed: 62 });
    await ensureModel("tk2", "tk2-task", ["a", "b", "c"], g);
    await registerGraph("tk2", "tk2-task", ["a", "b", "c"], g, {
      accuracy: 0.9,
      p50Ms: 1,
      tokenizer: tinyTokenizerJson(INFER_ENCODER.vocabSize), // the registry only checks it is JSON
    });
    expect((await gw.infer("/v2/models/tk2/infer", inferBody())).status).toBe(200);
    const res = await gw.infer("/v1/models/tk2/classify", { text: "w1 w2" });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: unknown }).error).toEqual({
      code: "tokenizer_unavailable",
      message:
        "the tokenizer of tk2@1 cannot be loaded: tokenizer.json is not a tokenizer the gateway can load",
      field: "tokenizer",
    });
  });
});
