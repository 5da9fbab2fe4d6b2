// The live-feedback rule of routing (src/gateway/live-evidence.ts) and how selectVariant applies it. Reference
// values were computed apart from this code, in Python 3 with statistics.NormalDist (Wichura's AS241 quantile)
// and the formulas written out by hand: design effect Σ(x_u − R y_u)² / (N R (1 − R)), Wilson on N / deff.
import { describe, expect, it } from "vitest";
import { ratioSummary } from "../../src/gateway/experiments/stats";
import {
  LIVE_MIN_LABELLED,
  LIVE_MIN_UNITS,
  type LiveFeedback,
  liveCounts,
  liveRule,
  liveSummary,
} from "../../src/gateway/live-evidence";
import { type RoutableVariant, type Sla, selectVariant } from "../../src/gateway/routing";

/** The aggregate the D1 query returns, from per-unit (correct, labelled) pairs. */
function feedbackOf(units: [correct: number, labelled: number][]): LiveFeedback {
  const sum = (f: (x: number, y: number) => number) => units.reduce((s, [x, y]) => s + f(x, y), 0);
  return {
    units: units.length,
    labelled: sum((_, y) => y),
    correct: sum((x) => x),
    correctSq: sum((x) => x * x),
    correctLabelled: sum((x, y) => x * y),
    labelledSq: sum((_, y) => y * y),
  };
}
const repeat = (n: number, x: [number, number]): [number, number][] => Array.from({ length: n }, () => x);

describe("liveSummary", () => {
  it("matches the design effect and delta-method variance computed by hand", () => {
    // R = 15/25 = 0.6; residuals 2, −4, 2: Σ = 24; N R (1 − R) = 6; deff = 4; var = 24 / (3·2·(25/3)²) = 0.0576
    const s = liveSummary(
      feedbackOf([
        [8, 10],
        [2, 10],
        [5, 5],
      ]),
    );
    expect(s.estimate).toBeCloseTo(0.6, 15);
    expect(s.designEffect).toBeCloseTo(4, 12);
    expect(s.variance).toBeCloseTo(0.0576, 12);
  });

  it("equals ratioSummary on the per-unit arrays (the A/B analysis's implementation)", () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const units: [number, number][] = Array.from({ length: 57 }, () => {
      const y = 1 + Math.floor(rand() * 30);
      return [Math.floor(rand() * (y + 1)), y];
    });
    const mine = liveSummary(feedbackOf(units));
    const theirs = ratioSummary(
      units.map((u) => u[0]),
      units.map((u) => u[1]),
    );
    expect(mine.units).toBe(theirs.units);
    expect(mine.estimate).toBeCloseTo(theirs.estimate, 14);
    expect(mine.variance).toBeCloseTo(theirs.variance, 12);
    expect(mine.designEffect).toBeCloseTo(theirs.designEffect, 10);
  });

  it("refuses impossible aggregates, naming the field", () => {
    expect(() => liveSummary({ ...feedbackOf([[1, 2]]), correct: 3 })).toThrow(/correct exceeds labelled/);
    expect(() => liveSummary({ ...feedbackOf([[1, 2]]), units: -1 })).toThrow(/units is -1/);
    expect(() => liveSummary({ ...feedbackOf([[1, 2]]), labelledSq: Number.NaN })).toThrow(/labelledSq/);
  });
});

describe("liveCounts: the minimum", () => {
  it(`needs ${LIVE_MIN_LABELLED} labelled requests from ${LIVE_MIN_UNITS} units`, () => {
    expect(LIVE_MIN_LABELLED).toBe(200);
    expect(LIVE_MIN_UNITS).toBe(20);
    expect(liveCounts(feedbackOf(repeat(20, [0, 10])))).toBe(true);
    expect(liveCounts(feedbackOf([...repeat(19, [0, 10]), [0, 9]]))).toBe(false); // 199 requests
    expect(liveCounts(feedbackOf(repeat(19, [0, 20])))).toBe(false); // 380 requests, 19 units
    expect(liveCounts(undefined)).toBe(false);
  });
});

describe("liveRule", () => {
  const best = { version: 1, evalCorrect: 96, evalSize: 100 };
  const base = { versions: [1, 2, 3], minAccuracy: 0, margin: 0.05, confidence: 0.95, best };

  it("demotes below the best's eval lower bound minus the margin", () => {
    // one upper bound (v2) + the reference's lower bound: k = 2, each one-sided at 2.5%
    const out = liveRule({ ...base, feedback: new Map([[2, feedbackOf(repeat(20, [8, 10]))]]) });
    const v2 = out.get(2)!;
    expect(v2.counts).toBe(true);
    expect(v2.bonferroni).toBe(2);
    expect(v2.alpha).toBeCloseTo(0.05, 15);
    expect(v2.interval![0]).toBeCloseTo(0.7391448134346212, 12);
    expect(v2.interval![1]).toBeCloseTo(0.8495479907390189, 12);
    expect(v2.margin!.reference).toBeCloseTo(0.9016292856411207, 12); // Wilson 96/100
    expect(v2.margin!.referenceFrom).toBe("eval");
    expect(v2.margin!.threshold).toBeCloseTo(0.8516292856411207, 12);
    expect(v2.demoted).toBe(true);
    expect(out.has(1)).toBe(false); // no feedback, nothing to show
  });

  it("widens the interval by the unit clustering: the same 80% from unequal units is not demoted", () => {
    // 10 units all right, 10 units 6/10: deff 2.5, Wilson on 80 effective requests
    const units = [...repeat(10, [10, 10]), ...repeat(10, [6, 10])];
    const v2 = liveRule({ ...base, feedback: new Map([[2, feedbackOf(units)]]) }).get(2)!;
    expect(v2.accuracy).toBe(0.8);
    expect(v2.designEffect).toBeCloseTo(2.5, 12);
    expect(v2.interval![1]).toBeCloseTo(0.8729715595603921, 12);
    expect(v2.demoted).toBe(false);
  });

  it("corrects for every bound used: a second counting variant saves the first from demotion", () => {
    // k = 3 (v2, v3, reference): each one-sided at 1.67%; v2's upper 85.32% ≥ 89.47% − 5 pts
    const out = liveRule({
      ...base,
      feedback: new Map([
        [2, feedbackOf(repeat(20, [8, 10]))],
        [3, feedbackOf(repeat(20, [10, 10]))],
      ]),
    });
    const v2 = out.get(2)!;
    expect(v2.bonferroni).toBe(3);
    expect(v2.interval![1]).toBeCloseTo(0.8532471697242507, 12);
    expect(v2.margin!.reference).toBeCloseTo(0.8946750369281252, 12);
    expect(v2.demoted).toBe(false);
    expect(out.get(3)!.demoted).toBe(false);
  });

  it("below the minimum only reports the counts", () => {
    const out = liveRule({
      ...base,
      feedback: new Map([
        [
          2,
          {
            ...feedbackOf([...repeat(19, [0, 10]), [0, 9]]),
            withoutUnit: 0,
            fromExperiments: 150,
            fromRouted: 49,
          },
        ],
      ]),
      windowDays: 14,
    });
    expect(out.get(2)).toEqual({
      labelled: 199,
      units: 20,
      correct: 0,
      accuracy: 0,
      withoutUnit: 0,
      sources: { experiments: 150, routed: 49 },
      windowDays: 14,
      minimum: { labelled: 200, units: 20 },
      counts: false,
      demoted: false,
    });
  });

  it("tests the SLA floor with a one-sided bound (no margin)", () => {
    const f = new Map([[2, feedbackOf(repeat(20, [8, 10]))]]);
    const rule = (minAccuracy: number) =>
      liveRule({ ...base, margin: null, best: undefined, minAccuracy, feedback: f }).get(2)!;
    // k = 1: one-sided 5%, the upper end of the 90% Wilson interval, 84.24%
    expect(rule(0.85).interval![1]).toBeCloseTo(0.8423809669542608, 12);
    expect(rule(0.85).floor).toEqual({ threshold: 0.85, below: true });
    expect(rule(0.84).demoted).toBe(false);
    expect(rule(0).floor).toBeUndefined();
    expect(rule(0).demoted).toBe(false);
  });

  it("uses the best's own live lower bound when its feedback counts", () => {
    const out = liveRule({
      ...base,
      feedback: new Map([
        [1, feedbackOf(repeat(20, [10, 10]))],
        [2, feedbackOf(repeat(20, [0, 10]))],
      ]),
    });
    const v2 = out.get(2)!;
    expect(v2.margin!.referenceFrom).toBe("live");
    expect(v2.margin!.reference).toBeCloseTo(out.get(1)!.interval![0], 15);
    expect(v2.demoted).toBe(true);
    expect(out.get(1)!.demoted).toBe(false); // the reference is never compared with itself
  });
});

describe("selectVariant with live feedback", () => {
  // v1 right on 97 of 100 eval examples, v2 on 96 of them (a subset): paired, one discordant example
  const variant = (version: number, latencyP50Ms: number): RoutableVariant => {
    const correct = Array.from({ length: 100 }, (_, i) => i >= (version === 1 ? 3 : 4));
    return {
      version,
      status: "active",
      accuracy: correct.filter(Boolean).length / 100,
      latencyP50Ms,
      params: 100,
      sparsity: 0.3,
      evidence: { evalSet: "tiny/test", evalSha256: "0".repeat(64), size: 100, correct },
    };
  };
  const sla: Sla = {
    metric: "accuracy",
    min: 0,
    margin: 0.05,
    confidence: 0.95,
    maxLatencyMs: null,
    strict: false,
  };

  it("serves the cheaper variant on eval evidence, and says so", () => {
    const d = selectVariant([variant(1, 10), variant(2, 5)], { sla });
    expect(d.chosen).toBe(2);
    expect(d.candidates.map((c) => c.evidence)).toEqual(["eval", "eval"]);
    expect(d.candidates[1].why).toMatch(/no live feedback: eval evidence only/);
  });

  it("demotes it after enough bad feedback, and the explanation names the evidence", () => {
    const bad = { ...variant(2, 5), live: feedbackOf(repeat(20, [0, 10])) };
    const d = selectVariant([variant(1, 10), bad], { sla });
    expect(d.chosen).toBe(1);
    const v2 = d.candidates.find((c) => c.version === 2)!;
    expect(v2.verdict).toBe("demoted_by_feedback");
    expect(v2.evidence).toBe("eval+live");
    expect(v2.live).toMatchObject({ labelled: 200, units: 20, counts: true, demoted: true });
    expect(v2.why).toMatch(/^demoted by live feedback: 200 labelled from 20 units, accuracy 0\.00%/);
    expect(v2.why).toMatch(/v1's eval lower bound/);
    expect(d.order).toEqual([1, 2]); // still a fallback
    expect(d.meetsSla).toEqual({ 1: true, 2: false });
  });

  it("changes nothing below the minimum", () => {
    const before = selectVariant([variant(1, 10), variant(2, 5)], { sla });
    const few = { ...variant(2, 5), live: feedbackOf(repeat(19, [0, 20])) };
    const after = selectVariant([variant(1, 10), few], { sla });
    expect({ chosen: after.chosen, order: after.order, outcome: after.outcome }).toEqual({
      chosen: before.chosen,
      order: before.order,
      outcome: before.outcome,
    });
    expect(after.candidates.map((c) => [c.verdict, c.evidence])).toEqual(
      before.candidates.map((c) => [c.verdict, c.evidence]),
    );
    expect(after.candidates[1].why).toMatch(
      /live feedback: 380 labelled from 19 units, below the minimum \(200 labelled from 20 units\): eval evidence only/,
    );
  });

  it("routes on eval evidence when the feedback query failed, and says so", () => {
    const d = selectVariant([variant(1, 10), variant(2, 5)], {
      sla,
      liveUnavailable: "the feedback query failed",
    });
    expect(d.chosen).toBe(2);
    expect(d.candidates[1].why).toMatch(/live feedback unavailable \(the feedback query failed\)/);
  });
});
