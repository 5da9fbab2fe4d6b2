// Experiments on the serving path, end to end in workerd: real ONNX variants run by onnxruntime-web through the
// Worker's own fetch handler, assignment headers, exposure events through the real queue into D1, feedback.
// This file loads ORT's wasm (costs ~10 s and ~1.8 GB), so it holds every experiment check that needs inference.
import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import tokenizerJson from "../../models/tokenizer.json";
import { REQUEST_ID } from "../../src/gateway/experiments/serving";
import { createApp } from "../../src/worker/app";
import { ensureModel, type GraphVariant, registerGraph } from "./gateway-helpers";
import { admin, api, jsonInit, mintKey, tinyModelGraph, withKey } from "./helpers";

vi.setConfig({ testTimeout: 120_000 });

const TOKENIZER = JSON.stringify(tokenizerJson);
const LABELS = ["neg", "pos"];
const graph = (seed: number) => tinyModelGraph({ seed, labels: 2, vocab: 4096, hidden: 4 });

/** Creates `model` (io of the first graph) and registers graph(seed) per variant, with the tokenizer; versions. */
async function registerVariants(
  model: string,
  variants: (GraphVariant & { seed: number })[],
): Promise<number[]> {
  await ensureModel(model, model, LABELS, graph(variants[0].seed));
  const versions: number[] = [];
  for (const { seed, ...v } of variants) {
    versions.push(
      (await registerGraph(model, model, LABELS, graph(seed), { tokenizer: TOKENIZER, ...v })).version,
    );
  }
  return versions;
}

async function classify(
  model: string,
  text: string,
  headers: Record<string, string> = {},
  path = "classify",
) {
  return api(`/v1/models/${model}/${path}`, jsonInit("POST", { text }, await withKey(headers)));
}

async function startExperiment(model: string, versions: number[], unit = "x-sluice-user"): Promise<number> {
  const res = await api(
    "/v1/experiments",
    jsonInit("POST", {
      model,
      name: `${model} serving`,
      arms: versions.map((version) => ({ version, weight: 1 })),
      unit,
      primaryMetric: "accuracy",
      design: { kind: "sequential" },
    }),
  );
  const { experiment } = (await res.json()) as { experiment: { id: number } };
  expect(res.status).toBe(201);
  expect(
    (await api(`/v1/experiments/${experiment.id}/start`, { method: "POST", headers: admin })).status,
  ).toBe(200);
  return experiment.id;
}

interface StoredExposure {
  request_id: string;
  arm: number;
  unit_id: string | null;
  sticky: number;
  served_version: number | null;
  latency_ms: number;
  error: number;
  predicted: string | null;
}

async function exposuresOf(experimentId: number): Promise<StoredExposure[]> {
  const { results } = await env.DB.prepare("select * from exposures where experiment_id = ? order by id")
    .bind(experimentId)
    .all<StoredExposure>();
  return results;
}

describe("a running experiment on the serving path", () => {
  it("serves each unit its sticky arm, tags responses and records exposures through the queue", async () => {
    const [v1, v2] = await registerVariants("exp-serve", [
      { seed: 1, accuracy: 0.9, p50Ms: 5 },
      { seed: 2, accuracy: 0.88, p50Ms: 3, status: "staged" },
    ]);

    // no experiment yet: SLA routing serves the only active variant, without experiment headers
    const before = await classify("exp-serve", "the food was great", { "x-sluice-user": "u-0" });
    expect(before.status).toBe(200);
    expect(before.headers.get("x-sluice-variant")).toBe(`exp-serve@${v1}`);
    expect(before.headers.get("x-sluice-experiment")).toBeNull();

    const id = await startExperiment("exp-serve", [v1, v2]);
    const served: { requestId: string; label: string; version: number; arm: string }[] = [];
    const armsSeen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const unit = `user-${i}`;
      const expected = (await (await api(`/v1/experiments/${id}/assignment?unit=${unit}`)).json()) as {
        arm: string;
        version: number;
      };
      for (let repeat = 0; repeat < 2; repeat++) {
        const res = await classify("exp-serve", `review number ${i} was fine`, { "x-sluice-user": unit });
        expect(res.status).toBe(200);
        expect(res.headers.get("x-sluice-experiment")).toBe(String(id));
        expect(res.headers.get("x-sluice-arm")).toBe(expected.arm);
        // the arm's variant served the request, even the staged one SLA routing would never pick
        expect(res.headers.get("x-sluice-variant")).toBe(`exp-serve@${expected.version}`);
        const requestId = res.headers.get("x-sluice-request-id")!;
        expect(requestId).toMatch(REQUEST_ID);
        const body = (await res.json()) as { version: number; results: { label: string }[] };
        expect(body.version).toBe(expected.version);
        served.push({
          requestId,
          label: body.results[0].label,
          version: expected.version,
          arm: expected.arm,
        });
      }
      armsSeen.add(expected.arm);
    }
    expect(armsSeen).toEqual(new Set(["A", "B"]));

    // OIP infer is covered too; its prediction is the argmax of the logits
    const ids = [2, 100, 200, 3];
    const infer = await api(
      "/v2/models/exp-serve/infer",
      jsonInit(
        "POST",
        {
          inputs: [
            { name: "input_ids", datatype: "INT64", shape: [1, 4], data: ids },
            { name: "attention_mask", datatype: "INT64", shape: [1, 4], data: [1, 1, 1, 1] },
          ],
        },
        await withKey({ "x-sluice-user": "user-0" }),
      ),
    );
    expect(infer.status).toBe(200);
    expect(infer.headers.get("x-sluice-arm")).toBe(served[0].arm);
    const logits = ((await infer.json()) as { outputs: { data: number[] }[] }).outputs[0].data;
    const inferPredicted = LABELS[logits[1] > logits[0] ? 1 : 0];

    // bad input is the client's fault: answered by the gateway's own validation, never an exposure
    const bad = await api(
      "/v1/models/exp-serve/classify",
      jsonInit("POST", { txt: "typo" }, await withKey({ "x-sluice-user": "user-1" })),
    );
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { field: string } }).error.field).toBeDefined();
    // pinned requests are not part of the experiment
    const pinned = await classify(
      "exp-serve",
      "pinned",
      { "x-sluice-user": "user-1" },
      `versions/${v2}/classify`,
    );
    expect(pinned.status).toBe(200);
    expect(pinned.headers.get("x-sluice-experiment")).toBeNull();

    // every exposure arrives through the queue, exactly once, with the served prediction
    await vi.waitFor(async () => expect((await exposuresOf(id)).length).toBe(25), {
      timeout: 30_000,
      interval: 250,
    });
    const stored = await exposuresOf(id);
    for (const s of served) {
      const row = stored.find((r) => r.request_id === s.requestId)!;
      expect(row).toMatchObject({ sticky: 1, error: 0, predicted: s.label, served_version: s.version });
      expect(row.latency_ms).toBeGreaterThanOrEqual(0);
    }
    expect(stored.at(-1)).toMatchObject({ unit_id: "user-0", predicted: inferPredicted });

    // feedback joins its exposure
    const fb = await api(
      "/v1/feedback",
      jsonInit("POST", { requestId: served[0].requestId, label: served[0].label }, await withKey()),
    );
    expect(fb.status).toBe(201);
    expect(await fb.json()).toMatchObject({
      feedback: { exposure: "recorded", arm: served[0].arm, correct: true },
    });
    const results = (await (await api(`/v1/experiments/${id}/results`)).json()) as {
      results: {
        arms: { name: string; units: number; requests: number; accuracy: { total: number } | null }[];
      };
    };
    expect(results.results.arms.reduce((n, a) => n + a.requests, 0)).toBe(25);
    expect(results.results.arms.reduce((n, a) => n + a.units, 0)).toBe(12);

    // once stopped, routed traffic is SLA-routed again
    expect((await api(`/v1/experiments/${id}/stop`, { method: "POST", headers: admin })).status).toBe(200);
    const after = await classify("exp-serve", "after the experiment", { "x-sluice-user": "user-3" });
    expect(after.headers.get("x-sluice-experiment")).toBeNull();
    expect(after.headers.get("x-sluice-variant")).toBe(`exp-serve@${v1}`);
  });

  it("assigns by API key when the unit is 'api-key', storing a digest rather than the key", async () => {
    const { key } = await mintKey({ scopes: ["infer"] });
    const [v1, v2] = await registerVariants("exp-keys", [
      { seed: 5, accuracy: 0.9, p50Ms: 5 },
      { seed: 6, accuracy: 0.9, p50Ms: 4 },
    ]);
    const id = await startExperiment("exp-keys", [v1, v2], "api-key");
    const arms = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const res = await classify("exp-keys", "hello there", { Authorization: `Bearer ${key}` });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-sluice-experiment")).toBe(String(id));
      arms.add(res.headers.get("x-sluice-arm")!);
    }
    expect(arms.size).toBe(1);
    // without a key: refused before the experiment sees it (no exposure)
    const anonymous = await api("/v1/models/exp-keys/classify", jsonInit("POST", { text: "anon" }, {}));
    expect(anonymous.status).toBe(401);
    // another key: its own unit
    const other = await classify("exp-keys", "other", { Authorization: `Bearer ${(await mintKey()).key}` });
    expect(other.status).toBe(200);
    // response bodies are left unread on purpose: the exposure must not depend on the client reading them
    await vi.waitFor(async () => expect((await exposuresOf(id)).length).toBe(4), {
      timeout: 30_000,
      interval: 250,
    });
    const stored = await exposuresOf(id);
    const keyed = stored.filter((r) => r.sticky === 1);
    expect(keyed).toHaveLength(4);
    expect(new Set(keyed.map((r) => r.unit_id)).size).toBe(2);
    expect(keyed[0].unit_id).toMatch(/^key:[0-9a-f]{16}$/);
    expect(keyed.some((r) => key.includes(String(r.unit_id).slice(4)))).toBe(false);
  });

  it("serves an experiment's request in one pass through the app (the arm is pinned by middleware)", async () => {
    const [v1, v2] = await registerVariants("exp-once", [
      { seed: 7, accuracy: 0.9, p50Ms: 5 },
      { seed: 8, accuracy: 0.9, p50Ms: 4, status: "staged" },
    ]);
    const id = await startExperiment("exp-once", [v1, v2]);
    const app = createApp();
    // The old hook re-dispatched through the app's own `fetch`; count every entry into it.
    const entries = vi.spyOn(app, "fetch");
    for (const unit of ["u-a", "u-b", "u-c", "u-d"]) {
      const init = jsonInit("POST", { text: "one pass" }, await withKey({ "x-sluice-user": unit }));
      const res = await app.fetch(new Request("http://gateway/v1/models/exp-once/classify", init), env);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-sluice-experiment")).toBe(String(id));
      const { version } = (await res.json()) as { version: number };
      expect(res.headers.get("x-sluice-variant")).toBe(`exp-once@${version}`);
      expect([v1, v2]).toContain(version);
    }
    expect(entries).toHaveBeenCalledTimes(4);
    expect((await api(`/v1/experiments/${id}/stop`, { method: "POST", headers: admin })).status).toBe(200);
  });
});
