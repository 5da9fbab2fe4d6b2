// Live feedback in routing, end to end in workerd against real D1: requests served in an experiment by real ONNX
// variants (onnxruntime-web), exposures through the real queue, labels posted to `POST /v1/feedback` with an API
// key, and `GET /v1/models/:model/route` reading the per-variant aggregate. This file loads ORT's wasm (~1.8 GB).
import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import tokenizerJson from "../../models/tokenizer.json";
import { DEFAULT_CONFIG } from "../../src/gateway/config";
import { mintFeedbackToken, parseFeedbackToken } from "../../src/gateway/feedback-token";
import { createGatewayState } from "../../src/gateway/inference-routes";
import type { RouteDecision } from "../../src/gateway/routing";
import { ensureModel, type GraphVariant, registerGraph, testGateway } from "./gateway-helpers";
import { ADMIN_TOKEN, admin, api, type ErrorBody, jsonInit, mintKey, tinyModelGraph } from "./helpers";

vi.setConfig({ testTimeout: 180_000 });

const TOKENIZER = JSON.stringify(tokenizerJson);
const LABELS = ["neg", "pos"];
const graph = (seed: number) => tinyModelGraph({ seed, labels: 2, vocab: 4096, hidden: 4 });
// Eval evidence: v1 right on 97 of 100 examples, v2 on 96 of them. Paired, v2 is proven within a 5-point margin.
const evalCorrect = (wrong: number) => Array.from({ length: 100 }, (_, i) => i >= wrong);

async function setUp(model: string, sla: Record<string, unknown> = { margin: 0.05 }) {
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
  const put = await api(`/v1/tasks/${model}/sla`, jsonInit("PUT", { metric: "accuracy", ...sla }));
  expect(put.status).toBe(200);
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

/** Posts the wrong label for each request, through the HTTP API with an API key (ten at a time). */
async function postWrongLabels(served: Served[], key: string) {
  const post = async (s: Served) => {
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
  };
  for (let i = 0; i < served.length; i += 10) await Promise.all(served.slice(i, i + 10).map(post));
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

  it("demotes a variant once its wrong labels come from 20 units (210 labels); 190 and 209 from 19 units change nothing", async () => {
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

    // 210 requests served by v2 in an experiment: 11 from each of 19 units, 1 from a 20th; then SLA routing again
    const id = await startExperiment(model, [v1, v2]);
    const units = await unitsOn(id, v2, 20);
    const served = await serve(model, units.slice(0, 19), 11, key, v2);
    const last = await serve(model, units.slice(19), 1, key, v2);
    await vi.waitFor(async () => expect(await exposureCount(id)).toBe(210), {
      timeout: 30_000,
      interval: 250,
    });
    expect((await api(`/v1/experiments/${id}/stop`, { method: "POST", headers: admin })).status).toBe(200);

    // below the minimum: 190 labels from 19 units, then 209 from 19 (enough labels, too few units): nothing changes
    const nth = (r: number) => served.filter((_, i) => i % 11 === r);
    await postWrongLabels(
      served.filter((_, i) => i % 11 < 10),
      key,
    );
    const fewer = await route(model);
    expect(fewer.candidates[1].live).toMatchObject({ labelled: 190, units: 19, correct: 0, counts: false });
    expect(fewer.candidates[1].why).toMatch(
      /live feedback: 190 labelled from 19 units, below the minimum \(200 labelled from 20 units\): eval evidence only/,
    );
    await postWrongLabels(nth(10), key);
    for (const d of [fewer, await route(model)]) {
      expect({ chosen: d.chosen, order: d.order, outcome: d.outcome, meetsSla: d.meetsSla }).toEqual({
        chosen: before.chosen,
        order: before.order,
        outcome: before.outcome,
        meetsSla: before.meetsSla,
      });
      expect(verdicts(d)).toEqual(verdicts(before));
    }
    const manyLabels = await route(model);
    expect(manyLabels.candidates[1].live).toMatchObject({ labelled: 209, units: 19, counts: false });
    expect(manyLabels.candidates[1].why).toMatch(/209 labelled from 19 units, below the minimum/);

    // the 20th unit's label: v2's live upper bound is far below v1's eval lower bound minus the margin
    await postWrongLabels(last, key);
    const after = await route(model);
    expect(after.chosen).toBe(v1);
    expect(after.outcome).toBe("met");
    expect(verdicts(after)).toEqual([
      { version: v1, verdict: "chosen", evidence: "eval" },
      { version: v2, verdict: "demoted_by_feedback", evidence: "eval+live" },
    ]);
    const live = after.candidates[1].live!;
    expect(live).toMatchObject({ labelled: 210, units: 20, correct: 0, counts: true, demoted: true });
    expect(live.margin).toMatchObject({ against: v1, referenceFrom: "eval" });
    expect(live.interval![1]).toBeLessThan(live.margin!.threshold);
    expect(after.candidates[1].why).toMatch(
      /^demoted by live feedback: 210 labelled from 20 units, accuracy 0\.00%, 95% \(Bonferroni over 2 bounds\) interval \[0\.00%, [0-9.]+%\]: upper bound [0-9.]+% < [0-9.]+% \(v1's eval lower bound/,
    );
    // the numbers, against Python's statistics.NormalDist: Wilson 0/210 upper 1.80%, Wilson 97/100 lower 91.55%
    expect(after.candidates[1].why).toContain(
      "upper bound 1.80% < 86.55% (v1's eval lower bound 91.55% − 5.00 pts margin)",
    );
    expect(after.reason).toMatch(/not demoted by live feedback/);

    // and routed traffic follows
    const res = await gateway.infer(`/v1/models/${model}/classify`, { text: "after the feedback" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-sluice-variant")).toBe(`${model}@${v1}`);
    expect(res.headers.get("x-sluice-sla")).toBe("met");

    // with a TTL, the aggregate is read from D1 once for repeated routing in an isolate
    const state = createGatewayState({ ...DEFAULT_CONFIG, liveFeedbackTtlMs: 60_000 });
    const cached = testGateway(state);
    for (let i = 0; i < 3; i++) expect((await cached.fetch(`/v1/models/${model}/route`)).status).toBe(200);
    expect(state.liveFeedback.queries).toBe(1);
  });

  it("routed traffic (no experiment): 199 wrong labels from 20 units leave a variant below the SLA floor served; the 200th demotes it", async () => {
    const model = "live-routed";
    const [v1, v2] = await setUp(model, { min: 0.9 });
    const { key } = await mintKey({ scopes: ["infer", "feedback"], models: [model] });
    const before = await route(model);
    expect(before.chosen).toBe(v2); // both meet the 90% floor on eval; v2 is faster

    // 200 SLA-routed requests, 10 from each of 20 units: every response carries a signed feedback token
    const units = Array.from({ length: 20 }, (_, i) => `routed-user-${i}`);
    const served = await serve(model, units, 10, key, v2);
    for (const s of served) expect(parseFeedbackToken(s.requestId)).toMatchObject({ model, version: v2 });

    // a client cannot attribute a label to a variant it was not served, nor alter the prediction or unit
    const token = served[0].requestId;
    const claim = parseFeedbackToken(token)!;
    const forged = [
      token.replace(`r1.${v2}.`, `r1.${v1}.`),
      token.replace(`r1.${v2}.${claim.predicted}.`, `r1.${v2}.${1 - claim.predicted}.`),
      token.replace(`.${claim.unit}.`, ".-."),
    ];
    for (const requestId of forged) {
      const res = await api(
        "/v1/feedback",
        jsonInit("POST", { requestId, label: "neg" }, { Authorization: `Bearer ${key}` }),
      );
      expect(res.status).toBe(404);
      expect(((await res.json()) as ErrorBody).error.field).toBe("requestId");
    }
    // nor one served longer ago than the window (a token the gateway really minted, 15 days back)
    const ids = await env.DB.prepare(
      "select m.id as modelId, v.id as variantId from models m join variants v on v.model_id = m.id where m.name = ? and v.version = ?",
    )
      .bind(model, v2)
      .first<{ modelId: number; variantId: number }>();
    const old = await mintFeedbackToken(
      ADMIN_TOKEN,
      { model, version: v2, predicted: 0, servedAt: Math.floor(Date.now() / 1000) - 15 * 86_400, unit: null },
      ids!,
    );
    const expired = await api(
      "/v1/feedback",
      jsonInit("POST", { requestId: old, label: "pos" }, { Authorization: `Bearer ${key}` }),
    );
    expect(expired.status).toBe(422);
    expect(((await expired.json()) as ErrorBody).error).toMatchObject({
      code: "request_expired",
      field: "requestId",
    });

    // 199 wrong labels from 20 units (19 × 10 + 9): one short of the minimum, so the eval evidence alone decides
    await postWrongLabels(served.slice(0, 199), key);
    const short = await route(model);
    expect(short.chosen).toBe(v2);
    expect(verdicts(short)).toEqual(verdicts(before));
    expect(short.candidates[1].live).toMatchObject({
      labelled: 199,
      units: 20,
      correct: 0,
      counts: false,
      withoutUnit: 0,
      sources: { experiments: 0, routed: 199 },
      windowDays: 14,
    });
    expect(short.candidates[1].why).toMatch(/live feedback: 199 labelled from 20 units, below the minimum/);

    // a label is bound to its request: repeating it changes nothing, contradicting it is refused
    const again = await api(
      "/v1/feedback",
      jsonInit(
        "POST",
        { requestId: served[0].requestId, label: LABELS.find((l) => l !== served[0].predicted) },
        { Authorization: `Bearer ${key}` },
      ),
    );
    expect(again.status).toBe(200);
    const contra = await api(
      "/v1/feedback",
      jsonInit(
        "POST",
        { requestId: served[0].requestId, label: served[0].predicted },
        { Authorization: `Bearer ${key}` },
      ),
    );
    expect(contra.status).toBe(409);

    // the 200th: v2's live upper bound falls below the 90% floor
    await postWrongLabels(served.slice(199), key);
    const after = await route(model);
    expect(after.chosen).toBe(v1);
    expect(verdicts(after)).toEqual([
      { version: v1, verdict: "chosen", evidence: "eval" },
      { version: v2, verdict: "demoted_by_feedback", evidence: "eval+live" },
    ]);
    const live = after.candidates[1].live!;
    expect(live).toMatchObject({
      labelled: 200,
      units: 20,
      correct: 0,
      counts: true,
      demoted: true,
      bonferroni: 1,
      sources: { experiments: 0, routed: 200 },
      floor: { threshold: 0.9, below: true },
    });
    // Wilson 0/200, one-sided 95%, upper bound z²/(n + z²) = 1.3347% (Python statistics.NormalDist)
    expect(live.interval![0]).toBeCloseTo(0, 12);
    expect(live.interval![1]).toBeCloseTo(0.013347160654775612, 9);
    expect(after.candidates[1].why).toBe(
      "demoted by live feedback: 200 labelled from 20 units, accuracy 0.00%, 95% interval [0.00%, 1.33%]: upper bound 1.33% < SLA floor 90.00%",
    );

    // a routed request without a unit: its own unit, reported apart (now served by v1)
    // (through the test's gateway: the Worker's own isolate reuses its aggregate for 30 s)
    const res = await gateway.infer(`/v1/models/${model}/classify`, { text: "no unit" });
    expect(res.headers.get("x-sluice-variant")).toBe(`${model}@${v1}`);
    const lone: Served = {
      requestId: res.headers.get("x-sluice-request-id")!,
      predicted: ((await res.json()) as { results: { label: string }[] }).results[0].label,
      unit: "",
    };
    expect(parseFeedbackToken(lone.requestId)).toMatchObject({ version: v1, unit: null });
    await postWrongLabels([lone], key);
    expect((await route(model)).candidates[0].live).toMatchObject({ labelled: 1, units: 1, withoutUnit: 1 });

    // the window: 200 wrong labels for v1 served 20 days ago count for a 30-day window, not the default 14 days
    const v1Id = await env.DB.prepare("select id from variants where model_id = ? and version = ?")
      .bind(ids!.modelId, v1)
      .first<number>("id");
    const servedAt = new Date(Date.now() - 20 * 86_400_000).toISOString();
    await env.DB.batch(
      Array.from({ length: 200 }, (_, i) =>
        env.DB.prepare(
          "insert into routed_feedback (nonce, model_id, variant_id, version, unit_id, predicted, label, served_at) values (?, ?, ?, ?, ?, 'pos', 'neg', ?)",
        ).bind(`old-${i}`, ids!.modelId, v1Id, v1, `u${String(i % 20).padStart(16, "0")}`, servedAt),
      ),
    );
    expect((await route(model)).candidates[0]).toMatchObject({ verdict: "chosen", live: { labelled: 1 } });
    const wide = testGateway(
      createGatewayState({ ...DEFAULT_CONFIG, liveFeedbackTtlMs: 0, liveFeedbackWindowMs: 30 * 86_400_000 }),
    );
    const wider = (await (await wide.fetch(`/v1/models/${model}/route`)).json()) as RouteDecision;
    // both variants are now demoted: none meets the SLA, so the most accurate one is served, marked unmet
    expect(wider.outcome).toBe("unmet");
    expect(wider.candidates[0]).toMatchObject({
      evidence: "eval+live",
      live: { labelled: 201, units: 21, withoutUnit: 1, windowDays: 30, counts: true, demoted: true },
    });
    expect(wider.candidates[1]).toMatchObject({ evidence: "eval+live", live: { demoted: true } });
  });
});
