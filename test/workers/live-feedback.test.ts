// Live feedback in routing, end to end in workerd against real D1: requests served in an experiment by real ONNX
// variants (onnxruntime-web), exposures through the real queue, labels posted to `POST /v1/feedback` with an API
// key, and `GET /v1/models/:model/route` reading the per-variant aggregate. This file loads ORT's wasm (~1.8 GB).
import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import tokenizerJson from "../../models/tokenizer.json";
import { DEFAULT_CONFIG } from "../../src/gateway/config";
import { createGatewayState } from "../../src/gateway/inference-routes";
import type { RouteDecision } from "../../src/gateway/routing";
import { ensureModel, type GraphVariant, registerGraph, testGateway } from "./gateway-helpers";
import { admin, api, jsonInit, mintKey, tinyModelGraph } from "./helpers";

vi.setConfig({ testTimeout: 180_000 });

const TOKENIZER = JSON.stringify(tokenizerJson);
const LABELS = ["neg", "pos"];
const graph = (seed: number) => tinyModelGraph({ seed, labels: 2, vocab: 4096, hidden: 4 });
// Eval evidence: v1 right on 97 of 100 examples, v2 on 96 of them. Paired, v2 is proven within a 5-point margin.
const evalCorrect = (wrong: number) => Array.from({ length: 100 }, (_, i) => i >= wrong);

async function setUp(model: string) {
  const variants: (GraphVariant & { seed: number })[] = [
    { seed: 1, accuracy: 0.97, p50Ms: 10, correct: evalCorrect(3) },
    { seed: 2, accuracy: 0.96, p50Ms: 5, correct: evalCorrect(4) },
  ];
  await ensureModel(model, model, LABELS, graph(1));
  const versions: number[] = [];
  for (const { seed, ...v } of variants) {
    versions.push(
      (await registerGraph(model, model, LABELS, graph(seed), { tokenizer: TOKENIZER, ...v })).version,
    );
  }
  const sla = await api(`/v1/tasks/${model}/sla`, jsonInit("PUT", { metric: "accuracy", margin: 0.05 }));
  expect(sla.status).toBe(200);
  return versions;
}

async function startExperiment(model: string, versions: number[]): Promise<number> {
  const res = await api(
    "/v1/experiments",
    jsonInit("POST", {
      model,
      name: `${model} live feedback`,
      arms: versions.map((version) => ({ version, weight: 1 })),
      unit: "x-sluice-user",
      primaryMetric: "accuracy",
      design: { kind: "sequential" },
    }),
  );
  expect(res.status).toBe(201);
  const { experiment } = (await res.json()) as { experiment: { id: number } };
  expect(
    (await api(`/v1/experiments/${experiment.id}/start`, { method: "POST", headers: admin })).status,
  ).toBe(200);
  return experiment.id;
}

/** `count` units the experiment assigns to `version`. */
async function unitsOn(experimentId: number, version: number, count: number): Promise<string[]> {
  const units: string[] = [];
  for (let i = 0; units.length < count; i++) {
    const unit = `user-${i}`;
    const a = (await (await api(`/v1/experiments/${experimentId}/assignment?unit=${unit}`)).json()) as {
      version: number;
    };
    if (a.version === version) units.push(unit);
  }
  return units;
}

interface Served {
  requestId: string;
  predicted: string;
  unit: string;
}

/** Serves `perUnit` classify requests per unit through the Worker (the experiment's arm), with `key`. */
async function serve(model: string, units: string[], perUnit: number, key: string, version: number) {
  const served: Served[] = [];
  for (const unit of units) {
    for (let r = 0; r < perUnit; r++) {
      const res = await api(
        `/v1/models/${model}/classify`,
        jsonInit(
          "POST",
          { text: `message ${r} from ${unit}` },
          { Authorization: `Bearer ${key}`, "x-sluice-user": unit },
        ),
      );
      expect(res.status).toBe(200);
      expect(res.headers.get("x-sluice-variant")).toBe(`${model}@${version}`);
      const body = (await res.json()) as { results: { label: string }[] };
      served.push({
        requestId: res.headers.get("x-sluice-request-id")!,
        predicted: body.results[0].label,
        unit,
      });
    }
  }
  return served;
}

/** Posts the wrong label for each request, through the HTTP API with an API key. */
async function postWrongLabels(served: Served[], key: string) {
  for (const s of served) {
    const res = await api(
      "/v1/feedback",
      jsonInit(
        "POST",
        { requestId: s.requestId, label: LABELS.find((l) => l !== s.predicted) },
        { Authorization: `Bearer ${key}` },
      ),
    );
    expect(res.status).toBe(201);
    expect(((await res.json()) as { feedback: { correct: boolean } }).feedback.correct).toBe(false);
  }
}

async function exposureCount(experimentId: number): Promise<number> {
  const row = await env.DB.prepare("select count(*) as n from exposures where experiment_id = ?")
    .bind(experimentId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** What a verdict was decided on, without the explanation text. */
const verdicts = (d: RouteDecision) =>
  d.candidates.map((c) => ({ version: c.version, verdict: c.verdict, evidence: c.evidence }));

describe("live feedback in routing", () => {
  // A gateway that reads the aggregate on every request (TTL 0), so each step's feedback shows at once.
  const gateway = testGateway(createGatewayState({ ...DEFAULT_CONFIG, liveFeedbackTtlMs: 0 }));
  const route = async (model: string) => {
    const res = await gateway.fetch(`/v1/models/${model}/route`);
    expect(res.status).toBe(200);
    return (await res.json()) as RouteDecision;
  };

  it("demotes a variant after 200 wrong labels from 20 units, not before, and says which evidence", async () => {
    const model = "live-fb";
    const [v1, v2] = await setUp(model);
    const { key } = await mintKey({ scopes: ["infer", "feedback"], models: [model] });

    const before = await route(model);
    expect(before.chosen).toBe(v2);
    expect(verdicts(before)).toEqual([
      { version: v1, verdict: "eligible", evidence: "eval" },
      { version: v2, verdict: "chosen", evidence: "eval" },
    ]);
    expect(before.candidates[1].why).toMatch(/no live feedback: eval evidence only/);

    // 200 requests served by v2 in an experiment, 10 from each of 20 units; then back to SLA routing
    const id = await startExperiment(model, [v1, v2]);
    const units = await unitsOn(id, v2, 20);
    const served = await serve(model, units, 10, key, v2);
    await vi.waitFor(async () => expect(await exposureCount(id)).toBe(200), {
      timeout: 30_000,
      interval: 250,
    });
    expect((await api(`/v1/experiments/${id}/stop`, { method: "POST", headers: admin })).status).toBe(200);

    // below the minimum, in units (190 from 19) and then in requests (199 from 20): nothing changes
    await postWrongLabels(served.slice(0, 190), key);
    const nineteenUnits = await route(model);
    expect(nineteenUnits.chosen).toBe(v2);
    expect(verdicts(nineteenUnits)).toEqual(verdicts(before));
    expect(nineteenUnits.order).toEqual(before.order);
    expect(nineteenUnits.candidates[1].live).toMatchObject({
      labelled: 190,
      units: 19,
      correct: 0,
      counts: false,
    });
    expect(nineteenUnits.candidates[1].why).toMatch(
      /live feedback: 190 labelled from 19 units, below the minimum \(200 labelled from 20 units\): eval evidence only/,
    );
    await postWrongLabels(served.slice(190, 199), key);
    const oneShort = await route(model);
    expect(verdicts(oneShort)).toEqual(verdicts(before));
    expect(oneShort.candidates[1].live).toMatchObject({ labelled: 199, units: 20, counts: false });

    // the 200th label: v2's live upper bound is far below v1's eval lower bound minus the margin
    await postWrongLabels(served.slice(199), key);
    const after = await route(model);
    expect(after.chosen).toBe(v1);
    expect(after.outcome).toBe("met");
    expect(verdicts(after)).toEqual([
      { version: v1, verdict: "chosen", evidence: "eval" },
      { version: v2, verdict: "demoted_by_feedback", evidence: "eval+live" },
    ]);
    const live = after.candidates[1].live!;
    expect(live).toMatchObject({ labelled: 200, units: 20, correct: 0, counts: true, demoted: true });
    expect(live.margin).toMatchObject({ against: v1, referenceFrom: "eval" });
    expect(live.interval![1]).toBeLessThan(live.margin!.threshold);
    expect(after.candidates[1].why).toMatch(
      /^demoted by live feedback: 200 labelled from 20 units, accuracy 0\.00%, 95% \(Bonferroni over 2 bounds\) interval \[0\.00%, [0-9.]+%\]: upper bound [0-9.]+% < [0-9.]+% \(v1's eval lower bound/,
    );
    // the numbers, against Python's statistics.NormalDist: Wilson 0/200 upper 1.88%, Wilson 97/100 lower 91.55%
    expect(after.candidates[1].why).toContain(
      "upper bound 1.88% < 86.55% (v1's eval lower bound 91.55% − 5.00 pts margin)",
    );
    expect(after.reason).toMatch(/not demoted by live feedback/);

    // and routed traffic follows
    const res = await gateway.infer(`/v1/models/${model}/classify`, { text: "after the feedback" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-sluice-variant")).toBe(`${model}@${v1}`);
    expect(res.headers.get("x-sluice-sla")).toBe("met");
  });

  it("feedback below the unit minimum changes nothing, however many labels: 209 wrong from 19 units", async () => {
    const model = "live-fb-few";
    const [v1, v2] = await setUp(model);
    const { key } = await mintKey({ scopes: ["infer", "feedback"], models: [model] });
    const before = await route(model);
    expect(before.chosen).toBe(v2);

    const id = await startExperiment(model, [v1, v2]);
    const served = await serve(model, await unitsOn(id, v2, 19), 11, key, v2);
    await vi.waitFor(async () => expect(await exposureCount(id)).toBe(209), {
      timeout: 30_000,
      interval: 250,
    });
    expect((await api(`/v1/experiments/${id}/stop`, { method: "POST", headers: admin })).status).toBe(200);
    await postWrongLabels(served, key);

    const after = await route(model);
    expect({
      chosen: after.chosen,
      order: after.order,
      outcome: after.outcome,
      meetsSla: after.meetsSla,
    }).toEqual({
      chosen: before.chosen,
      order: before.order,
      outcome: before.outcome,
      meetsSla: before.meetsSla,
    });
    expect(verdicts(after)).toEqual(verdicts(before));
    expect(after.candidates[1].live).toMatchObject({ labelled: 209, units: 19, correct: 0, counts: false });
    expect(after.candidates[1].why).toMatch(/209 labelled from 19 units, below the minimum/);

    // the aggregate is cached per isolate for its TTL: one D1 query for repeated routing
    const state = createGatewayState({ ...DEFAULT_CONFIG, liveFeedbackTtlMs: 60_000 });
    const cached = testGateway(state);
    for (let i = 0; i < 3; i++) expect((await cached.fetch(`/v1/models/${model}/route`)).status).toBe(200);
    expect(state.liveFeedback.queries).toBe(1);
  });
});
