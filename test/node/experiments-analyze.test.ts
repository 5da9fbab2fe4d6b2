import { describe, expect, it } from "vitest";
import {
  type AnalysisConfig,
  type ArmData,
  analyzeExperiment,
  type UnitData,
} from "../../src/gateway/experiments/analyze.ts";
import { assignArm } from "../../src/gateway/experiments/assign.ts";
import {
  mixtureVarianceFor,
  normalMixtureConfidenceSequence,
  normalQuantile,
  normalSf,
} from "../../src/gateway/experiments/stats.ts";
import { seededNormal, seededUniform } from "../shared/random.ts";

interface ArmTruth {
  units: number;
  medianMs: number;
  accuracy: number;
  errorRate?: number;
}

/** One arm's traffic from simulated units: one request per unit, lognormal latency, Bernoulli labels. */
function simulateArm(seed: number, truth: ArmTruth, _raw = false): ArmData {
  const uniform = seededUniform(seed);
  const normal = seededNormal(seed + 1_000_003);
  const units: UnitData[] = [];
  for (let i = 0; i < truth.units; i++) {
    if (uniform() < (truth.errorRate ?? 0.01)) {
      units.push({ requests: 1, errors: 1, latencyMs: [], labelled: 0, correct: 0 });
      continue;
    }
    const ms = truth.medianMs * Math.exp(0.5 * normal());
    const correct = uniform() < truth.accuracy ? 1 : 0;
    units.push({ requests: 1, errors: 0, latencyMs: [ms], labelled: 1, correct });
  }
  return { units };
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
      expect(cmp.latency?.method).toBe("delta-method");
      expect(cmp.accuracy?.significant).toBe(false);
      expect(r.nonInferiority.every((c) => c.nonInferior)).toBe(true);
      expect(r.arms[0].latency?.exactPercentiles).toBe(true);
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
    units.map((u, arm) => simulateArm(20 + arm, { units: u, medianMs: 30, accuracy: 0.9 }));

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
        const v = a.variance / n + b.variance / n;
        // the fixed-n z-test (Welch with these n is normal to 3 decimals), looked at after every step
        if (2 * normalSf(Math.abs(b.mean - a.mean) / Math.sqrt(v)) < alpha) naive = true;
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

  it("an early look where every unit agrees (no spread) gives no comparison instead of throwing or a zero-width interval", () => {
    // Seen by bench:ab-validity's peeking scenario: at an early look every labelled unit was all correct, the
    // accuracy variance was 0, and the sequential analysis threw (a 500 on the results route).
    const unit = (correct: number, ms: number): UnitData => ({
      requests: 1,
      errors: 0,
      latencyMs: [ms],
      labelled: 1,
      correct,
    });
    const data: ArmData[] = [
      { units: [unit(1, 30), unit(1, 31), unit(1, 29)] },
      { units: [unit(0, 30), unit(0, 32), unit(0, 28)] },
    ];
    for (const design of [{ kind: "sequential" } as const, { kind: "fixed", plannedUnits: 6 } as const]) {
      const r = analyzeExperiment({ ...twoArms, design }, data);
      expect(r.comparisons[0].accuracy).toBeNull();
      expect(r.comparisons[0].latency?.significant).toBe(false);
      expect(r.decision.action).not.toBe("promote");
    }
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
      const traffic: UnitData[][] = [[], []];
      const uniform = seededUniform(seed);
      const normal = seededNormal(seed + 7);
      for (let look = 1; look <= looks; look++) {
        for (let i = 0; i < perLook; i++) {
          [30, treatmentMedian].forEach((median, arm) => {
            const ms = median * Math.exp(0.5 * normal());
            const correct = uniform() < 0.9 ? 1 : 0;
            traffic[arm].push({ requests: 1, errors: 0, latencyMs: [ms], labelled: 1, correct });
          });
        }
        const data: ArmData[] = [0, 1].map((arm) => ({ units: traffic[arm] }));
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

/** Clustered traffic: requests per unit Pareto(1.3) from 3, unit accuracy Beta(9, 1), per-unit latency factor. */
function clusteredArm(seed: number, units: number, medianMs = 30): ArmData {
  const uniform = seededUniform(seed);
  const normal = seededNormal(seed + 17);
  const out: UnitData[] = [];
  for (let i = 0; i < units; i++) {
    const requests = Math.floor(3 * (1 - uniform()) ** (-1 / 1.3));
    const accuracy = uniform() ** (1 / 9); // Beta(9, 1)
    const factor = Math.exp(0.5 * normal());
    const latencyMs: number[] = [];
    let labelled = 0;
    let correct = 0;
    for (let r = 0; r < requests; r++) {
      latencyMs.push(medianMs * factor * Math.exp(0.3 * normal()));
      if (uniform() < 0.5) {
        labelled++;
        if (uniform() < accuracy) correct++;
      }
    }
    out.push({ requests, errors: 0, latencyMs, labelled, correct });
  }
  return { units: out };
}

describe("per-unit analysis under clustered traffic", () => {
  it("clustered A/A: false positives and false promotions stay near alpha (seeded)", () => {
    const config: AnalysisConfig = {
      ...twoArms,
      primaryMetric: "latency",
      slaMinAccuracy: undefined,
      guardrails: {},
      design: { kind: "fixed", plannedUnits: 600 },
    };
    const runs = 300;
    let acc = 0;
    let lat = 0;
    let promoted = 0;
    for (let k = 0; k < runs; k++) {
      const r = analyzeExperiment(config, [
        clusteredArm(40_000 + 2 * k, 300),
        clusteredArm(40_001 + 2 * k, 300),
      ]);
      if (r.comparisons[0].accuracy?.significant) acc++;
      if (r.comparisons[0].latency?.significant) lat++;
      if (r.decision.action === "promote") promoted++;
    }
    // a per-request analysis gives ~40% and ~80% here (issue 16); per unit they sit at alpha
    expect(acc / runs).toBeLessThan(upper999(0.05, runs));
    expect(lat / runs).toBeLessThan(upper999(0.05, runs));
    expect(promoted / runs).toBeLessThan(upper999(0.05, runs));
  });

  it("requests without a unit id are reported apart and change no estimate", () => {
    const base = [
      simulateArm(60, { units: 200, medianMs: 30, accuracy: 0.9 }),
      simulateArm(61, { units: 200, medianMs: 30, accuracy: 0.9 }),
    ];
    const withUnsticky = base.map((d) => ({
      ...d,
      unsticky: { requests: 50, errors: 5, latencyMs: Array(45).fill(1000), labelled: 40, correct: 0 },
    }));
    const a = analyzeExperiment(twoArms, base);
    const b = analyzeExperiment(twoArms, withUnsticky);
    expect(b.arms[0].unsticky).toEqual({
      requests: 50,
      errors: 5,
      latencyMeanMs: 1000,
      accuracy: { correct: 0, total: 40, rate: 0 },
    });
    expect(b.arms[0].unstickyRequests).toBe(50);
    const strip = (r: typeof a) => ({
      ...r,
      arms: r.arms.map((x) => ({ ...x, unsticky: null, unstickyRequests: 0 })),
    });
    expect(strip(b)).toEqual(strip(a));
  });
});
