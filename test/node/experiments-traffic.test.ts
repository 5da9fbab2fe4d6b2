import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  type AnalysisConfig,
  type ArmData,
  ArmTraffic,
  analyzeExperiment,
  analyzeTraffic,
  type ExperimentResults,
  type UnitData,
} from "../../src/gateway/experiments/analyze.ts";
import { clusteredQuantile, clusteredQuantileSorted } from "../../src/gateway/experiments/stats.ts";
import { seededNormal, seededUniform } from "../shared/random.ts";

/** Values computed with numpy by scripts/fixtures/make_experiment_reference.py (not by the code under test). */
const fixture = JSON.parse(
  readFileSync(path.join(import.meta.dirname, "../fixtures/experiments/reference.json"), "utf8"),
);
const arms: UnitData[][] = fixture.arms;
const ref = fixture.reference;

const config: AnalysisConfig = {
  arms: [
    { name: "A", weight: 1 },
    { name: "B", weight: 1 },
  ],
  controlArm: 0,
  primaryMetric: "latency",
  alpha: fixture.alpha,
  design: { kind: "sequential", plannedUnits: fixture.plannedUnits },
};

function close(actual: number, expected: number, what: string): void {
  const tolerance = 1e-9 * Math.max(1, Math.abs(expected));
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new Error(`${what}: got ${actual}, numpy reference ${expected}`);
  }
}

function closeInterval(actual: readonly number[], expected: readonly number[], what: string): void {
  close(actual[0], expected[0], `${what}[0]`);
  close(actual[1], expected[1], `${what}[1]`);
}

function checkAgainstReference(r: ExperimentResults): void {
  r.arms.forEach((a, i) => {
    const e = ref.arms[i];
    const where = `arm ${a.name}`;
    expect(a.units, `${where} units`).toBe(e.units);
    expect(a.requests, `${where} requests`).toBe(e.requests);
    close(a.errorRate.rate, e.errorRate, `${where} error rate`);
    if (!a.latency || !a.accuracy) throw new Error(`${where}: no latency or accuracy`);
    close(a.latency.meanMs, e.latencyMeanMs, `${where} mean latency`);
    closeInterval(a.latency.meanCi, e.latencyMeanCi, `${where} mean latency interval`);
    close(a.latency.p50Ms, e.p50Ms, `${where} p50`);
    close(a.latency.p95Ms, e.p95.estimate, `${where} p95`);
    closeInterval(a.latency.p95Ci, e.p95.ci, `${where} p95 Woodruff interval`);
    close(a.accuracy.rate, e.accuracy, `${where} accuracy`);
    close(a.accuracy.designEffect, e.accuracyDesignEffect, `${where} accuracy design effect`);
    closeInterval(a.accuracy.ci, e.accuracyCi, `${where} accuracy clustered Wilson interval`);
  });
  const c = r.comparisons[0];
  for (const metric of ["latency", "accuracy", "p95"] as const) {
    const m = c[metric];
    const e = ref.comparison[metric];
    if (!m) throw new Error(`no ${metric} comparison`);
    expect(m.method).toBe("confidence-sequence");
    close(m.difference, e.difference, `${metric} difference`);
    closeInterval(m.ci, e.ci, `${metric} confidence sequence`);
    close(m.pValue, e.pValue, `${metric} always-valid p-value`);
  }
}

/** A unit's summary as requests: errors first, then successes, the first `labelled` of them labelled. */
function requestsOf(u: UnitData) {
  const out: { error?: boolean; latencyMs?: number; labelled?: boolean; correct?: boolean }[] = [];
  for (let i = 0; i < u.errors; i++) out.push({ error: true });
  u.latencyMs.forEach((ms, i) => {
    out.push({ latencyMs: ms, labelled: i < u.labelled, correct: i < u.correct });
  });
  return out;
}

describe("per-unit analysis against numpy reference values", () => {
  it("from per-unit summaries (the results route's input)", () => {
    checkAgainstReference(
      analyzeExperiment(
        config,
        arms.map((units) => ({ units })),
      ),
    );
  });

  it("from requests added one at a time in random order, analysed at many looks on the way", () => {
    const events: { arm: number; unit: number; request: ReturnType<typeof requestsOf>[number] }[] = [];
    arms.forEach((units, arm) => {
      units.forEach((u, unit) => {
        for (const request of requestsOf(u)) events.push({ arm, unit, request });
      });
    });
    const uniform = seededUniform(42);
    for (let i = events.length - 1; i > 0; i--) {
      const j = Math.floor(uniform() * (i + 1));
      [events[i], events[j]] = [events[j], events[i]];
    }
    const traffic = [new ArmTraffic(), new ArmTraffic()];
    let looks = 0;
    events.forEach((e, i) => {
      traffic[e.arm].addRequest(e.unit, e.request);
      if (i % 17 === 16 && i > 40) {
        analyzeTraffic(config, traffic);
        looks++;
      }
    });
    expect(looks).toBeGreaterThan(10);
    // (the unit with no request never shows up in the traffic, as with real requests)
    checkAgainstReference(analyzeTraffic(config, traffic));
  });
});

describe("ArmTraffic", () => {
  it("at every look, the same analysis as the per-unit summaries of the requests so far", () => {
    const uniform = seededUniform(7);
    const normal = seededNormal(8);
    const traffic = [new ArmTraffic(), new ArmTraffic()];
    const snapshot: Map<number, UnitData & { latencyMs: number[] }>[] = [new Map(), new Map()];
    const fixed: AnalysisConfig = { ...config, design: { kind: "fixed", plannedUnits: 50 } };
    for (let i = 0; i < 3000; i++) {
      const arm = uniform() < 0.5 ? 0 : 1;
      const unit = Math.floor(200 * uniform() ** 3); // a few units send most requests
      const error = uniform() < 0.02;
      const labelled = !error && uniform() < 0.5;
      const request = {
        error,
        latencyMs: error ? undefined : Math.round(30 * Math.exp(0.4 * normal()) * 100) / 100,
        labelled,
        correct: labelled && uniform() < 0.9,
      };
      traffic[arm].addRequest(unit, request);
      let u = snapshot[arm].get(unit);
      if (!u) {
        u = { requests: 0, errors: 0, latencyMs: [], labelled: 0, correct: 0 };
        snapshot[arm].set(unit, u);
      }
      u.requests++;
      if (error) u.errors++;
      else u.latencyMs.push(request.latencyMs as number);
      if (request.labelled) u.labelled++;
      if (request.correct) u.correct++;
      if (i % 250 === 249) {
        const data: ArmData[] = snapshot.map((m) => ({ units: [...m.values()] }));
        expect(analyzeTraffic(fixed, traffic)).toEqual(analyzeExperiment(fixed, data));
        const pooled = data.map((d) => d.units.flatMap((x) => x.latencyMs).sort((a, b) => a - b));
        expect([...traffic[0].sortedLatency()]).toEqual(pooled[0]);
        expect([...traffic[1].sortedLatency()]).toEqual(pooled[1]);
      }
    }
  });

  it("refuses a latency that is not a finite number >= 0, naming the field", () => {
    const t = new ArmTraffic();
    expect(() => t.addRequest("u", { latencyMs: Number.NaN })).toThrow(/request\.latencyMs/);
    expect(() => t.addRequest("u", { latencyMs: -1 })).toThrow(/request\.latencyMs/);
    expect(() => t.addUnstickyRequest({ latencyMs: Number.POSITIVE_INFINITY })).toThrow(/latencyMs/);
    expect(t.units).toHaveLength(0);
  });

  it("keeps requests without a unit id apart from the per-unit estimates", () => {
    const t = new ArmTraffic();
    t.addRequest("u1", { latencyMs: 10 });
    t.addUnstickyRequest({ latencyMs: 1000, labelled: true, correct: true });
    expect(t.units).toHaveLength(1);
    expect([...t.sortedLatency()]).toEqual([10]);
    expect(t.unsticky).toMatchObject({ requests: 1, latencyMs: [1000], labelled: 1, correct: 1 });
  });
});

describe("Woodruff's interval from sorted inputs", () => {
  it("equals the numpy reference, and the unsorted form", () => {
    const units = arms[1].map((u) => u.latencyMs);
    const sorted = units.map((u) => [...u].sort((a, b) => a - b));
    const pooled = units.flat().sort((a, b) => a - b);
    const a = clusteredQuantile(units, 0.95, 0.05);
    const b = clusteredQuantileSorted(sorted, Float64Array.from(pooled), 0.95, 0.05);
    close(b.estimate, ref.arms[1].p95.estimate, "p95");
    closeInterval(b.ci, ref.arms[1].p95.ci, "p95 interval");
    close(b.standardError, ref.arms[1].p95.standardError, "p95 standard error");
    expect(a).toEqual(b);
  });
});
