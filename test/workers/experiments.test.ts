// Experiments in workerd against real local D1 and the real queue: the API and its errors, sticky and weighted
// assignment, the idempotent event consumer, feedback joins, SRM detection and promotion. No inference here
// (exposures are fed through the queue consumer); serving through ORT is in experiments-serving.test.ts.
import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { assignArm } from "../../src/gateway/experiments/assign";
import type { ExposureEvent } from "../../src/gateway/experiments/events";
import {
  mintRequestId,
  RUNNING_EXPERIMENT_CACHE_MAX,
  RunningExperiments,
} from "../../src/gateway/experiments/serving";
import { normalQuantile } from "../../src/gateway/experiments/stats";
import { onRegistryChange } from "../../src/registry/invalidation";
import { createApp } from "../../src/worker/app";
import worker from "../../src/worker/worker";
import { admin, api, expectError, jsonInit, seedModel, withKey } from "./helpers";

// D1 round trips through the local workerd are a few ms each and the tests make hundreds.
vi.setConfig({ testTimeout: 60_000 });

interface ExperimentView {
  id: number;
  status: string;
  seed: string;
  unit: string;
  winner: string | null;
  arms: { arm: string; version: number; weight: number; variantStatus: string }[];
}

function experimentBody(model: string, overrides: Record<string, unknown> = {}) {
  return {
    model,
    name: `${model} sparsity test`,
    arms: [
      { version: 1, weight: 1 },
      { version: 2, weight: 1 },
    ],
    unit: "x-sluice-user",
    primaryMetric: "latency",
    guardrails: { maxErrorRate: 0.05 },
    alpha: 0.05,
    design: { kind: "fixed", plannedUnits: 200 },
    ...overrides,
  };
}

async function createExperiment(
  model: string,
  overrides: Record<string, unknown> = {},
): Promise<ExperimentView> {
  const res = await api("/v1/experiments", jsonInit("POST", experimentBody(model, overrides)));
  const body = (await res.json()) as { experiment: ExperimentView };
  if (res.status !== 201) throw new Error(`create experiment: ${res.status} ${JSON.stringify(body)}`);
  return body.experiment;
}

async function lifecycle(id: number, action: "start" | "stop" | "promote", body?: unknown) {
  return api(
    `/v1/experiments/${id}/${action}`,
    body ? jsonInit("POST", body) : { method: "POST", headers: admin },
  );
}

async function started(model: string, overrides: Record<string, unknown> = {}): Promise<ExperimentView> {
  const e = await createExperiment(model, overrides);
  const res = await lifecycle(e.id, "start");
  if (res.status !== 200) throw new Error(`start: ${res.status} ${await res.text()}`);
  return e;
}

interface ResultsBody {
  results: {
    arms: {
      name: string;
      units: number;
      requests: number;
      unstickyRequests: number;
      errorRate: { errors: number };
      latency: { count: number; meanMs: number } | null;
      accuracy: { correct: number; total: number; rate: number; ci: [number, number] } | null;
    }[];
    srm: { pValue: number; mismatch: boolean; observed: number[] };
    decision: { action: string; arm: number | null };
    recommendation: string;
  };
  pendingFeedback: number;
  population: string;
}

async function results(id: number): Promise<ResultsBody> {
  const res = await api(`/v1/experiments/${id}/results`);
  expect(res.status).toBe(200);
  return (await res.json()) as ResultsBody;
}

/** Deterministic stand-in for noise in synthetic latencies (no Math.random, so failures reproduce). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function exposure(experimentId: number, arm: number, fields: Partial<ExposureEvent> = {}): ExposureEvent {
  return {
    type: "exposure",
    requestId: mintRequestId(experimentId),
    experimentId,
    arm,
    unitId: `u-${crypto.randomUUID()}`,
    sticky: true,
    servedVersion: arm + 1,
    latencyMs: 10,
    error: false,
    predicted: "pos",
    servedAt: new Date().toISOString(),
    ...fields,
  };
}

/** Delivers events to the Worker's own queue() handler as one batch; returns the ack/retry outcome. */
async function deliver(events: readonly unknown[], d1: D1Database = env.DB) {
  const batch = createMessageBatch(
    "sluice-events",
    events.map((body, i) => ({ id: `m${i}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, { ...env, DB: d1 } as never);
  return getQueueResult(batch, ctx);
}

async function exposureCount(experimentId: number): Promise<number> {
  const row = await env.DB.prepare("select count(*) as n from exposures where experiment_id = ?")
    .bind(experimentId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

// -----------------------------------------------------------------------------------------------------------

describe("experiment API", () => {
  it("creates a draft with validated arms; bad input is named by field", async () => {
    await seedModel("exp-api", [{}, {}, {}]);
    const e = await createExperiment("exp-api");
    expect(e).toMatchObject({
      status: "draft",
      unit: "x-sluice-user",
      winner: null,
      arms: [
        { arm: "A", version: 1, weight: 1, variantStatus: "staged" },
        { arm: "B", version: 2, weight: 1, variantStatus: "staged" },
      ],
    });
    expect(e.seed).toMatch(/^[0-9a-f]{16}$/);

    const post = (body: unknown, headers: Record<string, string> = admin) =>
      api("/v1/experiments", jsonInit("POST", body, headers));
    await expectError(await post(experimentBody("exp-api"), {}), 401, "unauthorized", "Authorization");
    await expectError(await post(experimentBody("nope")), 404, "not_found", "model");
    await expectError(
      await post(experimentBody("exp-api", { arms: [{ version: 1, weight: 1 }] })),
      422,
      "invalid_body",
      "arms",
    );
    await expectError(
      await post(
        experimentBody("exp-api", {
          arms: [
            { version: 1, weight: 1 },
            { version: 9, weight: 1 },
          ],
        }),
      ),
      422,
      "unknown_variant",
      "arms.1.version",
    );
    await expectError(
      await post(
        experimentBody("exp-api", {
          arms: [
            { version: 2, weight: 1 },
            { version: 2, weight: 3 },
          ],
        }),
      ),
      422,
      "invalid_body",
      "arms.1.version",
    );
    await expectError(
      await post(
        experimentBody("exp-api", {
          arms: [
            { version: 1, weight: 0 },
            { version: 2, weight: 1 },
          ],
        }),
      ),
      422,
      "invalid_body",
      "arms.0.weight",
    );
    await expectError(
      await post(experimentBody("exp-api", { unit: "Authorization" })),
      422,
      "invalid_body",
      "unit",
    );
    await expectError(await post(experimentBody("exp-api", { alpha: 0.7 })), 422, "invalid_body", "alpha");
    await expectError(
      await post(experimentBody("exp-api", { design: { kind: "fixed" } })),
      422,
      "invalid_body",
      "design.plannedUnits",
    );
    await expectError(
      await post(experimentBody("exp-api", { controlArm: 2 })),
      422,
      "invalid_body",
      "controlArm",
    );
    await expectError(await api("/v1/experiments/abc"), 400, "bad_request", "id");
    await expectError(await api("/v1/experiments/999999"), 404, "not_found", "id");

    const list = (await (await api("/v1/experiments?model=exp-api")).json()) as {
      experiments: ExperimentView[];
    };
    expect(list.experiments.map((x) => x.id)).toContain(e.id);
  });

  it("freezes weights once started, runs one experiment per model, and protects its variants", async () => {
    await seedModel("exp-life", [{}, {}, {}]);
    const e = await createExperiment("exp-life");
    // a draft can still change
    const patched = await api(
      `/v1/experiments/${e.id}`,
      jsonInit("PATCH", {
        arms: [
          { version: 1, weight: 3 },
          { version: 3, weight: 1 },
        ],
      }),
    );
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as { experiment: ExperimentView }).experiment.arms).toMatchObject([
      { version: 1, weight: 3 },
      { version: 3, weight: 1 },
    ]);

    expect((await lifecycle(e.id, "start")).status).toBe(200);
    await expectError(
      await api(
        `/v1/experiments/${e.id}`,
        jsonInit("PATCH", {
          arms: [
            { version: 1, weight: 1 },
            { version: 3, weight: 1 },
          ],
        }),
      ),
      409,
      "experiment_frozen",
      "arms",
    );
    await expectError(await lifecycle(e.id, "start"), 409, "experiment_not_draft", "status");

    // a second experiment on the model cannot start while the first runs
    const other = await createExperiment("exp-life");
    await expectError(await lifecycle(other.id, "start"), 409, "experiment_running", "model");

    // the running experiment's variants cannot be retired (and so not deleted); another variant can
    await expectError(
      await api("/v1/models/exp-life/variants/3", jsonInit("PATCH", { status: "retired" })),
      409,
      "variant_in_experiment",
      "version",
    );
    await expectError(
      await api("/v1/models/exp-life/variants/3", { method: "DELETE", headers: admin }),
      409,
      "variant_in_experiment",
      "version",
    );
    expect(
      (await api("/v1/models/exp-life/variants/2", jsonInit("PATCH", { status: "retired" }))).status,
    ).toBe(200);

    expect((await lifecycle(e.id, "stop")).status).toBe(200);
    await expectError(await lifecycle(e.id, "stop"), 409, "experiment_not_running", "status");
    // stopped: its variants are free again, and the other experiment may start
    expect(
      (await api("/v1/models/exp-life/variants/3", jsonInit("PATCH", { status: "retired" }))).status,
    ).toBe(200);
    await expectError(await lifecycle(other.id, "start"), 409, "variant_unavailable", "arms.1.version");
  });
});

describe("assignment", () => {
  it("is sticky: the same unit gets the same arm from the Worker and from a fresh module instance", async () => {
    await seedModel("exp-sticky", [{}, {}, {}]);
    const e = await createExperiment("exp-sticky", {
      arms: [
        { version: 1, weight: 1 },
        { version: 2, weight: 1 },
        { version: 3, weight: 2 },
      ],
    });
    vi.resetModules();
    const fresh = await import("../../src/gateway/experiments/assign");
    expect(fresh.assignArm).not.toBe(assignArm); // really another module instance
    const spec = { seed: e.seed, arms: e.arms.map((a) => ({ weight: a.weight })) };
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const unit = `user-${i}`;
      const [first, second] = await Promise.all(
        [0, 1].map(async () => {
          const res = await api(`/v1/experiments/${e.id}/assignment?unit=${unit}`);
          return ((await res.json()) as { arm: string; index: number }).index;
        }),
      );
      expect(second).toBe(first);
      expect(fresh.assignArm(spec, unit)).toBe(first);
      seen.add(String(first));
    }
    expect(seen.size).toBe(3);
  });

  it("splits 10,000 units by weight within the binomial 99.9% interval", async () => {
    await seedModel("exp-weights", [{}, {}]);
    const e = await createExperiment("exp-weights", {
      arms: [
        { version: 1, weight: 1 },
        { version: 2, weight: 3 },
      ],
    });
    const n = 10_000;
    const spec = { seed: e.seed, arms: e.arms.map((a) => ({ weight: a.weight })) };
    let inB = 0;
    for (let i = 0; i < n; i++) if (assignArm(spec, `unit-${i}`) === 1) inB++;
    const p = 0.75;
    const half = normalQuantile(1 - 0.001 / 2) * Math.sqrt(n * p * (1 - p)); // 3.29 sd
    expect(Math.abs(inB - n * p)).toBeLessThan(half);
    // the Worker agrees with the pure function on a sample of those units
    for (let i = 0; i < 40; i++) {
      const res = await api(`/v1/experiments/${e.id}/assignment?unit=unit-${i}`);
      expect(((await res.json()) as { index: number }).index).toBe(assignArm(spec, `unit-${i}`));
    }
  });
});

describe("the running-experiment cache", () => {
  it("stays bounded under 10,000 distinct unknown model names and never caches an invalid one", async () => {
    await seedModel("exp-bounded", [{}, {}]);
    const e = await started("exp-bounded");
    const cache = new RunningExperiments();
    expect((await cache.lookup(env.DB, "exp-bounded"))?.id).toBe(e.id);
    // names no model can have: answered without a query and never stored
    for (const name of ["Upper", "has space", "a".repeat(65), "../etc", "-lead", ""]) {
      expect(await cache.lookup(env.DB, name)).toBeNull();
    }
    expect(cache.queries).toBe(1);
    expect(cache.size).toBe(1);
    // 10,000 well-formed names of no model: each asks D1 once, the cache keeps at most its bound
    const names = Array.from({ length: 10_000 }, (_, i) => `nobody-${i}`);
    for (let i = 0; i < names.length; i += 100) {
      const answers = await Promise.all(names.slice(i, i + 100).map((n) => cache.lookup(env.DB, n)));
      expect(answers.every((a) => a === null)).toBe(true);
    }
    expect(cache.queries).toBe(1 + names.length);
    expect(cache.size).toBe(RUNNING_EXPERIMENT_CACHE_MAX);
    // the most recent names are the ones kept (least recently used go first)
    expect(await cache.lookup(env.DB, names.at(-1)!)).toBeNull();
    expect(cache.queries).toBe(1 + names.length);
    expect((await cache.lookup(env.DB, "exp-bounded"))?.id).toBe(e.id);
    expect(cache.queries).toBe(2 + names.length);
    expect((await lifecycle(e.id, "stop")).status).toBe(200);
  }, 240_000); // 10,000 real D1 queries: ~40 s on an idle 2-core machine, ~90 s under load

  it("hears registry writes through the invalidation signal, not the TTL", async () => {
    await seedModel("exp-signal", [{}, {}]);
    const e = await createExperiment("exp-signal");
    const cache = new RunningExperiments(60_000);
    onRegistryChange(({ model }) => cache.invalidate(model));
    // writes through an app of this module instance (SELF runs the Worker's own instance, with its own signal)
    const app = createApp();
    const write = (action: string) =>
      app.fetch(
        new Request(`http://gateway/v1/experiments/${e.id}/${action}`, { method: "POST", headers: admin }),
        env,
      );
    expect(await cache.lookup(env.DB, "exp-signal")).toBeNull(); // a draft is not running
    expect((await write("start")).status).toBe(200);
    expect((await cache.lookup(env.DB, "exp-signal"))?.id).toBe(e.id);
    expect((await write("stop")).status).toBe(200);
    expect(await cache.lookup(env.DB, "exp-signal")).toBeNull();
    expect(cache.queries).toBe(3);
  });
});

describe("event consumer", () => {
  it("is idempotent on request id: redelivered and retried batches never double count", async () => {
    await seedModel("exp-consumer", [{}, {}]);
    const e = await started("exp-consumer");
    const events = Array.from({ length: 60 }, (_, i) => exposure(e.id, i % 2));

    const first = await deliver(events);
    expect(first.explicitAcks.length + (first.ackAll ? events.length : 0)).toBeGreaterThan(0);
    expect(first.ackAll).toBe(true);
    expect(await exposureCount(e.id)).toBe(60);

    // the same batch again (a redelivery after a lost ack): nothing new
    expect((await deliver(events)).ackAll).toBe(true);
    expect(await exposureCount(e.id)).toBe(60);

    // a batch whose write fails is retried as a whole, and nothing of it is half-written
    const more = Array.from({ length: 20 }, (_, i) => exposure(e.id, i % 2));
    const failing = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        throw new Error(`D1 unavailable (${statements.length} statements)`);
      },
    } as unknown as D1Database;
    const failed = await deliver([...events.slice(0, 10), ...more], failing);
    expect(failed.retryBatch.retry).toBe(true);
    expect(failed.ackAll).toBe(false);
    expect(await exposureCount(e.id)).toBe(60);
    // the retry (old and new events mixed) lands each request exactly once
    expect((await deliver([...events.slice(0, 10), ...more])).ackAll).toBe(true);
    expect(await exposureCount(e.id)).toBe(80);

    // invalid messages are dropped (acked), not retried forever
    const bad = await deliver([{ type: "exposure", requestId: "x" }, "garbage"]);
    expect(bad.ackAll).toBe(true);
    expect(await exposureCount(e.id)).toBe(80);

    const r = await results(e.id);
    expect(r.results.arms.map((a) => a.requests)).toEqual([40, 40]);
  });

  it("receives exposures through the real queue binding", async () => {
    await seedModel("exp-queue", [{}, {}]);
    const e = await started("exp-queue");
    const events = Array.from({ length: 5 }, (_, i) => exposure(e.id, i % 2));
    await env.EVENTS.sendBatch(events.map((body) => ({ body })));
    await env.EVENTS.send(events[0]); // a duplicate send
    await vi.waitFor(async () => expect(await exposureCount(e.id)).toBe(5), {
      timeout: 10_000,
      interval: 200,
    });
  });
});

describe("feedback", () => {
  it("joins labels to exposures by request id, whichever arrives first", async () => {
    await seedModel("exp-feedback", [{}, {}]);
    const e = await started("exp-feedback", { primaryMetric: "accuracy" });
    // arm A predicts right 8 of 10 times, arm B 5 of 10
    const a = Array.from({ length: 10 }, () => exposure(e.id, 0, { predicted: "pos" }));
    const b = Array.from({ length: 10 }, () => exposure(e.id, 1, { predicted: "neg" }));
    const truth = (i: number, arm: number) => (arm === 0 ? (i < 8 ? "pos" : "neg") : i < 5 ? "neg" : "pos");
    const send = async (requestId: string, label: string) =>
      api("/v1/feedback", jsonInit("POST", { requestId, label }, await withKey()));

    // feedback for half of the requests overtakes their exposures
    for (let i = 0; i < 5; i++) {
      const res = await send(a[i].requestId, truth(i, 0));
      expect(res.status).toBe(201);
      expect(await res.json()).toMatchObject({ feedback: { exposure: "pending" } });
      expect((await send(b[i].requestId, truth(i, 1))).status).toBe(201);
    }
    expect((await results(e.id)).pendingFeedback).toBe(10);

    await deliver([...a, ...b]);
    for (let i = 5; i < 10; i++) {
      const res = await send(a[i].requestId, truth(i, 0));
      expect(await res.json()).toMatchObject({
        feedback: { exposure: "recorded", arm: "A", correct: truth(i, 0) === "pos" },
      });
      await send(b[i].requestId, truth(i, 1));
    }

    const r = await results(e.id);
    expect(r.pendingFeedback).toBe(0);
    expect(r.results.arms.map((x) => x.accuracy && [x.accuracy.correct, x.accuracy.total])).toEqual([
      [8, 10],
      [5, 10],
    ]);
    // Wilson interval for 8/10 at 95%: [0.490, 0.943] (Newcombe 1998)
    expect(r.results.arms[0].accuracy!.ci[0]).toBeCloseTo(0.4902, 3);
    expect(r.results.arms[0].accuracy!.ci[1]).toBeCloseTo(0.9433, 3);

    // repeating a label is a no-op, contradicting it a conflict; bad ids and labels are named
    expect((await send(a[0].requestId, truth(0, 0))).status).toBe(200);
    await expectError(await send(a[0].requestId, "neg"), 409, "feedback_exists", "label");
    await expectError(await send(mintRequestId(999_999), "pos"), 404, "not_found", "requestId");
    await expectError(await send("not-a-request-id", "pos"), 404, "not_found", "requestId");
    await expectError(await send(a[1].requestId, "maybe"), 422, "unknown_label", "label");
    await expectError(
      await api("/v1/feedback", jsonInit("POST", { requestId: a[1].requestId }, await withKey())),
      422,
      "invalid_body",
      "label",
    );
    expect((await results(e.id)).results.arms[0].accuracy!.total).toBe(10);
  });
});

describe("analysis over the event store", () => {
  it("flags a sample-ratio mismatch on a skewed feed, and not on a balanced one", async () => {
    await seedModel("exp-srm", [{}, {}]);
    const skewed = await started("exp-srm", { design: { kind: "fixed", plannedUnits: 1000 } });
    // 50/50 weights, but arm B lost 24% of its units (e.g. a crashing variant that never logs)
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 0)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 0)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 0)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 0)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 0)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 1)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 1)));
    await deliver(Array.from({ length: 100 }, () => exposure(skewed.id, 1)));
    await deliver(Array.from({ length: 80 }, () => exposure(skewed.id, 1)));
    const r = await results(skewed.id);
    expect(r.results.srm.observed).toEqual([500, 380]);
    expect(r.results.srm.mismatch).toBe(true);
    expect(r.results.srm.pValue).toBeLessThan(0.001);
    expect(r.results.decision.action).toBe("untrustworthy");
    expect(r.results.recommendation).toMatch(/SRM detected/);

    expect((await lifecycle(skewed.id, "stop")).status).toBe(200);
    const balanced = await started("exp-srm", { design: { kind: "fixed", plannedUnits: 1000 } });
    for (const arm of [0, 1]) {
      for (let k = 0; k < 5; k++)
        await deliver(Array.from({ length: 100 }, () => exposure(balanced.id, arm)));
    }
    const ok = await results(balanced.id);
    expect(ok.results.srm.observed).toEqual([500, 500]);
    expect(ok.results.srm.mismatch).toBe(false);
  });

  it("counts units once however many requests they send, and requests without a unit apart", async () => {
    await seedModel("exp-units", [{}, {}]);
    const e = await started("exp-units");
    const events = [
      ...[0, 1, 2].map(() => exposure(e.id, 0, { unitId: "alice" })),
      ...[0, 1].map(() => exposure(e.id, 1, { unitId: "bob" })),
      exposure(e.id, 1, { unitId: null, sticky: false }),
      exposure(e.id, 0, { unitId: "carol", error: true, latencyMs: 500 }),
    ];
    await deliver(events);
    const r = await results(e.id);
    expect(r.population).toBe("sticky");
    expect(r.results.arms.map((a) => [a.units, a.requests, a.unstickyRequests, a.errorRate.errors])).toEqual([
      [2, 4, 0, 1],
      [1, 2, 1, 0],
    ]);
    // failed requests carry no latency sample
    expect(r.results.arms[0].latency!.count).toBe(3);
  });
});

describe("promote", () => {
  async function feedLatency(id: number, meanA: number, meanB: number, perArm: number) {
    const rnd = lcg(id);
    for (const [arm, mean] of [
      [0, meanA],
      [1, meanB],
    ] as const) {
      const events = Array.from({ length: perArm }, () =>
        exposure(id, arm, { latencyMs: mean * (0.8 + 0.4 * rnd()) }),
      );
      for (let i = 0; i < events.length; i += 100) await deliver(events.slice(i, i + 100));
    }
  }

  it("makes the winning arm active and the production alias, stages the other, and records the winner", async () => {
    await seedModel("exp-promote", [{}, {}]);
    expect(
      (await api("/v1/models/exp-promote/variants/1", jsonInit("PATCH", { status: "active" }))).status,
    ).toBe(200);
    const e = await started("exp-promote", { design: { kind: "fixed", plannedUnits: 400 } });
    // arm B (v2) is 30% faster
    await feedLatency(e.id, 20, 14, 200);
    const r = await results(e.id);
    expect(r.results.decision).toEqual({ action: "promote", arm: 1 });
    expect(r.results.recommendation).toMatch(/B \(v2\).*faster/);

    const res = await lifecycle(e.id, "promote", {});
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      experiment: ExperimentView;
      promoted: { arm: string; version: number };
    };
    expect(body.promoted).toMatchObject({ arm: "B", version: 2, alias: "production" });
    expect(body.experiment).toMatchObject({ status: "promoted", winner: "B" });
    expect(body.experiment.arms.map((a) => a.variantStatus)).toEqual(["staged", "active"]);
    const alias = await api("/v1/models/exp-promote/aliases/production");
    expect(await alias.json()).toMatchObject({ alias: { version: 2 } });
    // a promoted experiment is over, and its variants are free
    await expectError(await lifecycle(e.id, "promote", {}), 409, "experiment_not_promotable", "status");
    expect(
      (await api("/v1/models/exp-promote/variants/1", jsonInit("PATCH", { status: "retired" }))).status,
    ).toBe(200);
  });

  it("refuses to guess when the analysis names no winner (A/A), but takes an explicit arm", async () => {
    await seedModel("exp-aa", [{}, {}]);
    const e = await started("exp-aa", { design: { kind: "fixed", plannedUnits: 400 } });
    await feedLatency(e.id, 20, 20, 200);
    const r = await results(e.id);
    expect(r.results.decision.action).not.toBe("promote");
    await expectError(await lifecycle(e.id, "promote", {}), 409, "no_winner", "arm");
    await expectError(await lifecycle(e.id, "promote", { arm: "C" }), 422, "invalid_body", "arm");
    const res = await lifecycle(e.id, "promote", { arm: "A", alias: "stable" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ promoted: { arm: "A", version: 1, alias: "stable" } });
    expect(await (await api("/v1/models/exp-aa/aliases/stable")).json()).toMatchObject({
      alias: { version: 1 },
    });
  });
});
