import { describe, expect, it } from "vitest";
import {
  type AnalysisConfig,
  type ArmData,
  analyzeExperiment,
} from "../../src/gateway/experiments/analyze.ts";
import { assignArm } from "../../src/gateway/experiments/assign.ts";
import { emptyLatencyHistogram, recordLatency } from "../../src/gateway/experiments/latency.ts";
import {
  mixtureVarianceFor,
  normalMixtureConfidenceSequence,
  normalQuantile,
  welchTTest,
} from "../../src/gateway/experiments/stats.ts";
import { seededNormal, seededUniform } from "../shared/random.ts";

interface ArmTruth {
  units: number;
  medianMs: number;
  accuracy: number;
  errorRate?: number;
}

/** One arm's aggregates from simulated traffic: one request per unit, lognormal latency, Bernoulli labels. */
function simulateArm(seed: number, truth: ArmTruth, raw = false): ArmData {
  const uniform = seededUniform(seed);
  const normal = seededNormal(seed + 1_000_003);
  const histogram = emptyLatencyHistogram();
  const samples: number[] = [];
  let errors = 0;
  let correct = 0;
  for (let i = 0; i < truth.units; i++) {
    if (uniform() < (truth.errorRate ?? 0.01)) {
      errors++;
      continue;
    }
    const ms = truth.medianMs * Math.exp(0.5 * normal());
    if (raw) samples.push(ms);
    else recordLatency(histogram, ms);
    if (uniform() < truth.accuracy) correct++;
  }
  const served = truth.units - errors;
  return {
    units: truth.units,
    requests: truth.units,
    errors,
    latency: raw ? { samples } : histogram,
    feedback: { correct, total: served },
  };
}

const twoArms: AnalysisConfig = {
  arms: [
    { name: "A", weight: 1 },
    { name: "B", weight: 1 },
  ],
  controlArm: 0,
  primaryMetric: "accuracy",
  alpha: 0.05,
  guardrails: { maxErrorRate: 0.05, maxP95Ms: 400 },
  slaMinAccuracy: 0.85,
  design: { kind: "fixed", plannedUnits: 4000 },
};

/** Upper end of the two-sided 99.9% binomial (normal approximation) interval of a rate over `runs` trials. */
function upper999(rate: number, runs: number): number {
  return rate + normalQuantile(0.9995) * Math.sqrt((rate * (1 - rate)) / runs);
}

describe("analyzeExperiment: decisions on known effects", () => {
  it("recovers a 30% latency cut at equal accuracy and recommends promotion", () => {
    for (const raw of [false, true]) {
      const data = [
        simulateArm(1, { units: 2000, medianMs: 40, accuracy: 0.92 }, raw),
        simulateArm(2, { units: 2000, medianMs: 28, accuracy: 0.92 }, raw),
      ];
      const r = analyzeExperiment(twoArms, data);
      expect(r.decision).toEqual({ action: "promote", arm: 1 });
      expect(r.recommendation).toMatch(
        /^arm B is non-inferior in accuracy and (29|30|31)% faster \(p50\): promote B$/,
      );
      const cmp = r.comparisons[0];
      expect(cmp.p50RelativeChange).toBeGreaterThan(-0.33);
      expect(cmp.p50RelativeChange).toBeLessThan(-0.27);
      // true mean difference of the lognormals: (28 - 40)·e^(σ²/2)
      const trueDifference = (28 - 40) * Math.exp(0.125);
      expect(cmp.latency?.ci[0]).toBeLessThan(trueDifference);
      expect(cmp.latency?.ci[1]).toBeGreaterThan(trueDifference);
      expect(cmp.latency?.method).toBe("welch");
      expect(cmp.accuracy?.significant).toBe(false);
      expect(r.nonInferiority.every((c) => c.nonInferior)).toBe(true);
      expect(r.arms[0].latency?.exactPercentiles).toBe(raw);
    }
  });

  it("a fixed design gives no verdict before its planned units", () => {
    const r = analyzeExperiment({ ...twoArms, design: { kind: "fixed", plannedUnits: 2000 } }, [
      simulateArm(3, { units: 200, medianMs: 40, accuracy: 0.92 }),
      simulateArm(4, { units: 212, medianMs: 20, accuracy: 0.92 }),
    ]);
    expect(r.recommendation).toBe("keep collecting: 412 of 2000 planned units");
    expect(r.decision.action).toBe("keep-collecting");
    // the statistics are still reported
    expect(r.comparisons[0].latency?.significant).toBe(true);
  });

  it("keeps the control when the sparser arm loses accuracy, and names the loss", () => {
    const r = analyzeExperiment({ ...twoArms, primaryMetric: "latency" }, [
      simulateArm(5, { units: 2000, medianMs: 40, accuracy: 0.92 }),
      simulateArm(6, { units: 2000, medianMs: 28, accuracy: 0.86 }),
    ]);
    expect(r.decision).toEqual({ action: "keep-control", arm: 0 });
    expect(r.recommendation).toMatch(
      /^keep A \(arm B is \d+% faster \(p50\) but less accurate \(-\d+\.\d pts\)\)$/,
    );
  });

  it("a non-inferiority failure against the SLA blocks promotion even when faster", () => {
    const r = analyzeExperiment({ ...twoArms, primaryMetric: "latency", slaMinAccuracy: 0.92 }, [
      simulateArm(7, { units: 2000, medianMs: 40, accuracy: 0.91 }),
      simulateArm(8, { units: 2000, medianMs: 28, accuracy: 0.91 }),
    ]);
    expect(r.decision.action).toBe("keep-control");
    expect(r.nonInferiority.find((c) => c.arm === 1)?.nonInferior).toBe(false);
  });

  it("guardrail breaches block promotion and are reported", () => {
    const r = analyzeExperiment({ ...twoArms, primaryMetric: "latency" }, [
      simulateArm(9, { units: 2000, medianMs: 40, accuracy: 0.92 }),
      simulateArm(10, { units: 2000, medianMs: 28, accuracy: 0.92, errorRate: 0.1 }),
    ]);
    expect(r.decision.action).toBe("keep-control");
    expect(r.guardrailBreaches).toEqual([
      expect.objectContaining({ arm: 1, metric: "errorRate", confident: true }),
    ]);
    expect(r.recommendation).toMatch(/error-rate guardrail/);
    const slow = analyzeExperiment({ ...twoArms, guardrails: { maxP95Ms: 60 } }, [
      simulateArm(11, { units: 2000, medianMs: 40, accuracy: 0.92 }),
      simulateArm(12, { units: 2000, medianMs: 28, accuracy: 0.92 }),
    ]);
    // control's p95 (≈ 40·e^(0.5·1.645) ≈ 91 ms) breaches, B's (≈ 64 ms) too: neither can be promoted
    expect(slow.guardrailBreaches.map((b) => b.arm).sort()).toEqual([0, 1]);
    expect(slow.decision.action).toBe("keep-control");
  });

  it("a more accurate arm wins on the accuracy metric", () => {
    const r = analyzeExperiment(twoArms, [
      simulateArm(13, { units: 2000, medianMs: 30, accuracy: 0.88 }),
      simulateArm(14, { units: 2000, medianMs: 30, accuracy: 0.93 }),
    ]);
    expect(r.decision).toEqual({ action: "promote", arm: 1 });
    expect(r.recommendation).toMatch(/^arm B is more accurate \(\+\d\.\d pts, p < 0\.001\): promote B$/);
  });

  it("rejects an inconsistent configuration with the field named", () => {
    const data = [simulateArm(15, { units: 10, medianMs: 30, accuracy: 0.9 })];
    expect(() => analyzeExperiment(twoArms, data)).toThrow(/data/);
    expect(() => analyzeExperiment({ ...twoArms, controlArm: 2 }, [...data, ...data])).toThrow(/controlArm/);
    expect(() => analyzeExperiment({ ...twoArms, alpha: 0 }, [...data, ...data])).toThrow(/alpha/);
  });
});

describe("analyzeExperiment: sample-ratio mismatch", () => {
  const weights = [0.5, 0.5];
  const experiment = { seed: "srm-test", arms: weights.map((weight) => ({ weight })) };
  const counts = (keep: (arm: number, i: number) => boolean) => {
    const units = [0, 0];
    for (let i = 0; i < 10_000; i++) {
      const arm = assignArm(experiment, `user-${i}`);
      if (keep(arm, i)) units[arm]++;
    }
    return units;
  };
  const dataFor = (units: number[]) =>
    units.map((u, arm) => ({
      ...simulateArm(20 + arm, { units: u, medianMs: 30, accuracy: 0.9 }),
      units: u,
    }));

  it("stays quiet on a fair feed from the real assignment", () => {
    const r = analyzeExperiment(twoArms, dataFor(counts(() => true)));
    expect(r.srm.mismatch).toBe(false);
    expect(r.decision.action).not.toBe("untrustworthy");
  });

  it("flags a skewed feed (arm B loses 8% of its exposures) and distrusts the results", () => {
    const r = analyzeExperiment(twoArms, dataFor(counts((arm, i) => arm === 0 || i % 12 !== 0)));
    expect(r.srm.mismatch).toBe(true);
    expect(r.srm.pValue).toBeLessThan(0.001);
    expect(r.decision.action).toBe("untrustworthy");
    expect(r.recommendation).toMatch(/^SRM detected: results untrustworthy/);
  });
});

describe("A/A simulations (seeded)", () => {
  it("fixed design: false-positive rates sit at alpha and promotion stays within alpha", () => {
    const runs = 1000;
    let latencySignificant = 0;
    let accuracySignificant = 0;
    let promoted = 0;
    for (let run = 0; run < runs; run++) {
      const truth = { units: 400, medianMs: 30, accuracy: 0.9 };
      const r = analyzeExperiment({ ...twoArms, design: { kind: "fixed", plannedUnits: 800 } }, [
        simulateArm(10_000 + 2 * run, truth),
        simulateArm(10_001 + 2 * run, truth),
      ]);
      if (r.comparisons[0].latency?.significant) latencySignificant++;
      if (r.comparisons[0].accuracy?.significant) accuracySignificant++;
      if (r.decision.action === "promote") promoted++;
    }
    const alpha = twoArms.alpha;
    // each test's false-positive rate within the binomial 99.9% interval around alpha
    const halfWidth = normalQuantile(0.9995) * Math.sqrt((alpha * (1 - alpha)) / runs);
    expect(Math.abs(latencySignificant / runs - alpha)).toBeLessThan(halfWidth);
    expect(Math.abs(accuracySignificant / runs - alpha)).toBeLessThan(halfWidth);
    // never declare a winner beyond the false-positive rate
    expect(promoted / runs).toBeLessThan(upper999(alpha, runs));
  });

  it("three identical arms: Bonferroni keeps promotion within alpha", () => {
    const runs = 500;
    let promoted = 0;
    const threeArms: AnalysisConfig = {
      ...twoArms,
      arms: [
        { name: "A", weight: 1 },
        { name: "B", weight: 1 },
        { name: "C", weight: 1 },
      ],
      primaryMetric: "latency",
      design: { kind: "fixed", plannedUnits: 900 },
    };
    for (let run = 0; run < runs; run++) {
      const truth = { units: 300, medianMs: 30, accuracy: 0.9 };
      const data = [0, 1, 2].map((k) => simulateArm(50_000 + 3 * run + k, truth));
      const r = analyzeExperiment(threeArms, data);
      expect(r.comparisons[0].latency?.alpha).toBeCloseTo(0.025, 12);
      if (r.decision.action === "promote") promoted++;
    }
    expect(promoted / runs).toBeLessThan(upper999(0.05, runs));
  });
});

describe("peeking: confidence sequences stay valid where repeated t-tests do not", () => {
  it("under the null, a look every 100 observations for 50 looks: naive > 2·alpha, confidence sequence <= alpha", () => {
    const alpha = 0.05;
    const sims = 300;
    const step = 100;
    const looks = 50;
    let naiveRejected = 0;
    let sequenceRejected = 0;
    for (let sim = 0; sim < sims; sim++) {
      const normal = seededNormal(90_000 + sim);
      const sums = [0, 0];
      const squares = [0, 0];
      let naive = false;
      let sequence = false;
      for (let look = 1; look <= looks; look++) {
        for (let i = 0; i < step; i++) {
          for (const arm of [0, 1]) {
            const x = normal();
            sums[arm] += x;
            squares[arm] += x * x;
          }
        }
        const n = look * step;
        const [a, b] = [0, 1].map((arm) => ({
          n,
          mean: sums[arm] / n,
          variance: (squares[arm] - (sums[arm] * sums[arm]) / n) / (n - 1),
        }));
        if (welchTTest(a, b, alpha).pValue < alpha) naive = true;
        const v = a.variance / n + b.variance / n;
        // tuned for the last look, as analyzeExperiment tunes for the planned size
        const tau2 = mixtureVarianceFor(v * (n / (looks * step)), alpha);
        const cs = normalMixtureConfidenceSequence(b.mean - a.mean, v, alpha, tau2);
        if (cs.ci[0] > 0 || cs.ci[1] < 0) sequence = true;
      }
      if (naive) naiveRejected++;
      if (sequence) sequenceRejected++;
    }
    expect(naiveRejected / sims).toBeGreaterThan(2 * alpha);
    expect(sequenceRejected / sims).toBeLessThanOrEqual(alpha);
  });

  it("a sequential A/A experiment analysed at every look rarely promotes; a real effect is found early", () => {
    const config: AnalysisConfig = {
      ...twoArms,
      primaryMetric: "latency",
      design: { kind: "sequential", plannedUnits: 4000 },
    };
    const sims = 150;
    const looks = 20;
    const perLook = 100; // units per arm per look
    const run = (seed: number, treatmentMedian: number) => {
      const hist = [emptyLatencyHistogram(), emptyLatencyHistogram()];
      const correct = [0, 0];
      const uniform = seededUniform(seed);
      const normal = seededNormal(seed + 7);
      for (let look = 1; look <= looks; look++) {
        for (let i = 0; i < perLook; i++) {
          [30, treatmentMedian].forEach((median, arm) => {
            recordLatency(hist[arm], median * Math.exp(0.5 * normal()));
            if (uniform() < 0.9) correct[arm]++;
          });
        }
        const n = look * perLook;
        const data: ArmData[] = [0, 1].map((arm) => ({
          units: n,
          requests: n,
          errors: 0,
          latency: hist[arm],
          feedback: { correct: correct[arm], total: n },
        }));
        const r = analyzeExperiment(config, data);
        if (r.decision.action === "promote") return look;
      }
      return null;
    };
    let falsePromotions = 0;
    let detected = 0;
    for (let sim = 0; sim < sims; sim++) {
      if (run(200_000 + sim, 30) !== null) falsePromotions++;
      if (run(300_000 + sim, 24) !== null) detected++;
    }
    expect(falsePromotions / sims).toBeLessThanOrEqual(0.05);
    expect(detected / sims).toBeGreaterThan(0.9);
  });
});
