import { describe, expect, it } from "vitest";
import {
  chiSquareGoodnessOfFit,
  chiSquareSf,
  mean,
  mixtureVarianceFor,
  newcombeInterval,
  normalCdf,
  normalMixtureConfidenceSequence,
  normalQuantile,
  percentile,
  ratioDifferenceTest,
  ratioSummary,
  sampleRatioMismatch,
  studentTQuantile,
  studentTSf,
  variance,
  wilsonInterval,
} from "../../src/gateway/experiments/stats.ts";

/** |actual - expected| <= tol · max(1, |expected|) */
function close(actual: number, expected: number, tol: number) {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(expected)));
}

/** relative closeness for tiny tail probabilities */
function relClose(actual: number, expected: number, tol: number) {
  expect(Math.abs(actual - expected) / Math.abs(expected)).toBeLessThanOrEqual(tol);
}

describe("normal distribution", () => {
  // scipy.stats.norm (values also in any printed normal table; digits confirmed with mpmath at 30 digits)
  it("quantile", () => {
    close(normalQuantile(0.975), 1.959963984540054, 1e-14);
    close(normalQuantile(0.995), 2.5758293035489004, 1e-14);
    close(normalQuantile(0.999), 3.090232306167813, 1e-14);
    close(normalQuantile(0.025), -1.959963984540054, 1e-14);
    close(normalQuantile(0.3), -0.5244005127080407, 1e-14);
    close(normalQuantile(1e-10), -6.361340902404056, 1e-13);
    // Python statistics.NormalDist().inv_cdf(1e-12) (Wichura AS241): the lower tail keeps its precision
    close(normalQuantile(1e-12), -7.034483825301132, 1e-14);
    expect(normalQuantile(0.5)).toBe(0);
  });

  it("CDF, including far tails", () => {
    close(normalCdf(1.96), 0.9750021048517795, 1e-15);
    close(normalCdf(0.5), 0.6914624612740131, 1e-15);
    relClose(normalCdf(-5), 2.866515718791939e-7, 1e-12);
    relClose(normalCdf(-8), 6.22096057427178e-16, 1e-12);
    expect(normalCdf(0)).toBe(0.5);
  });

  it("quantile inverts the CDF across (0, 1)", () => {
    for (const p of [1e-12, 1e-6, 0.001, 0.02425, 0.1, 0.5, 0.8, 0.97575, 0.999999]) {
      relClose(normalCdf(normalQuantile(p)), p, 1e-12);
    }
  });
});

describe("Student t distribution", () => {
  it("survival function matches the closed forms for 1 and 2 degrees of freedom", () => {
    for (const t of [-30, -2, -0.3, 0, 0.7, 2, 12]) {
      // df = 1 is the Cauchy distribution; df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t²))
      close(studentTSf(-t, 1), 0.5 + Math.atan(t) / Math.PI, 1e-14);
      close(studentTSf(-t, 2), 0.5 + t / (2 * Math.sqrt(2 + t * t)), 1e-14);
    }
  });

  it("quantiles match printed t tables (Fisher & Yates) to full precision", () => {
    // two-sided 5% critical values: 12.706 (1 df), 2.228 (10 df), 2.042 (30 df). Full digits: mpmath 30-digit
    // root of the regularized incomplete beta (scipy's t.ppf agrees to 1e-11).
    close(studentTQuantile(0.975, 1), 12.706204736174705, 1e-13);
    close(studentTQuantile(0.975, 10), 2.228138851986275, 1e-13);
    close(studentTQuantile(0.975, 30), 2.042272456301238, 1e-13);
    close(studentTQuantile(0.025, 10), -2.228138851986275, 1e-13);
    // non-integer df (as Welch produces): scipy.stats.t.ppf(0.999, 2.5)
    close(studentTQuantile(0.999, 2.5), 13.82219311086596, 1e-11);
    // large df approaches the normal
    close(studentTQuantile(0.975, 1e7), 1.959963984540054, 1e-6);
  });

  it("survival function: scipy.stats.t.sf(3, 5)", () => {
    close(studentTSf(3, 5), 0.015049623948731293, 1e-15);
  });
});

describe("chi-square distribution", () => {
  it("survival at the textbook critical values", () => {
    // chi2.ppf(0.95, 1) = 3.841458820694124 and chi2.ppf(0.999, 1) = 10.827566170662733 (scipy; 3.841 and
    // 10.828 in printed tables)
    close(chiSquareSf(3.841458820694124, 1), 0.05, 1e-14);
    close(chiSquareSf(10.827566170662733, 1), 0.001, 1e-14);
    close(chiSquareSf(100, 80), 1 - 0.935429631078867, 1e-13); // scipy.stats.chi2.cdf(100, 80)
  });

  it("goodness of fit reproduces the scipy.stats.chisquare documentation examples", () => {
    // chisquare([16, 18, 16, 14, 12, 12]) -> statistic 2.0, pvalue 0.84914503608460956
    const even = chiSquareGoodnessOfFit([16, 18, 16, 14, 12, 12], [1, 1, 1, 1, 1, 1]);
    close(even.statistic, 2, 1e-14);
    expect(even.df).toBe(5);
    close(even.pValue, 0.84914503608460956, 1e-14);
    // chisquare([16, 18, 16, 14, 12, 12], f_exp=[16, 16, 16, 16, 16, 8]) -> 3.5, 0.62338762774958223
    const uneven = chiSquareGoodnessOfFit([16, 18, 16, 14, 12, 12], [16, 16, 16, 16, 16, 8]);
    close(uneven.statistic, 3.5, 1e-14);
    close(uneven.pValue, 0.62338762774958223, 1e-14);
  });
});

describe("descriptive statistics", () => {
  it("percentile uses linear interpolation (numpy.percentile default, Hyndman & Fan type 7)", () => {
    // numpy.percentile([15, 20, 35, 40, 50], 40) = 20 + 0.6·(35 - 20) = 29 (list from Wikipedia "Percentile")
    expect(percentile([50, 15, 40, 20, 35], 40)).toBeCloseTo(29, 12);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4], 0)).toBe(1);
    expect(percentile([1, 2, 3, 4], 100)).toBe(4);
    expect(percentile([7], 95)).toBe(7);
  });

  it("mean and unbiased variance", () => {
    expect(mean([2, 4, 4, 4, 5, 5, 7, 9])).toBe(5);
    close(variance([2, 4, 4, 4, 5, 5, 7, 9]), 32 / 7, 1e-15);
  });
});

describe("proportions", () => {
  it("Wilson interval reproduces Newcombe (1998) Table I", () => {
    // Newcombe RG. Two-sided confidence intervals for the single proportion. Stat Med 1998;17:857-872,
    // method 3 (score, no continuity correction), 95%.
    const cases: [number, number, number, number][] = [
      [81, 263, 0.2553, 0.3662],
      [15, 148, 0.0624, 0.1605],
      [0, 20, 0, 0.1611],
      [1, 29, 0.0061, 0.1718],
    ];
    for (const [x, n, lo, hi] of cases) {
      const [l, u] = wilsonInterval(x, n);
      expect(l).toBeCloseTo(lo, 4);
      expect(u).toBeCloseTo(hi, 4);
    }
  });

  it("Newcombe hybrid score interval for a difference reproduces Newcombe (1998b) Table II", () => {
    // Newcombe RG. Interval estimation for the difference between independent proportions. Stat Med
    // 1998;17:873-890, method 10, 95%: (a) 56/70 - 48/80, (b) 9/10 - 3/10, (c) 6/7 - 2/7.
    const cases: [[number, number], [number, number], number, number][] = [
      [[56, 70], [48, 80], 0.0524, 0.3339],
      [[9, 10], [3, 10], 0.1705, 0.809],
      [[6, 7], [2, 7], 0.0582, 0.8062],
    ];
    for (const [[x1, n1], [x0, n0], lo, hi] of cases) {
      const [l, u] = newcombeInterval({ successes: x0, n: n0 }, { successes: x1, n: n1 });
      expect(l).toBeCloseTo(lo, 4);
      expect(u).toBeCloseTo(hi, 4);
    }
  });
});

describe("Welch's t-test (ratioDifferenceTest with one request per unit)", () => {
  it("reproduces R's t.test(extra ~ group, data = sleep) (Student 1908 sleep data)", () => {
    // R documentation example: t = -1.8608, df = 17.776, p-value = 0.07939,
    // 95 percent confidence interval: -3.3654832  0.2054832 (group 1 - group 2)
    const group1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
    const group2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];
    const ones = (x: number[]) => x.map(() => 1);
    // with y_u = 1 the delta-method variance is s²/n, so this is exactly Welch's test
    const r = ratioDifferenceTest(ratioSummary(group2, ones(group2)), ratioSummary(group1, ones(group1)));
    expect(r.statistic).toBeCloseTo(-1.8608, 4);
    expect(r.df).toBeCloseTo(17.776, 3);
    expect(r.pValue).toBeCloseTo(0.07939, 5);
    expect(r.ci[0]).toBeCloseTo(-3.3654832, 7);
    expect(r.ci[1]).toBeCloseTo(0.2054832, 7);
    close(r.difference, 0.75 - 2.33, 1e-14);
  });
});

describe("sample-ratio mismatch", () => {
  it("flags a skewed split and leaves a fair one alone", () => {
    // 50/50 design, 10,000 units: 5,000/5,000 is fair; 5,200/4,800 gives χ² = 16, p = 6.3e-5 < 0.001
    expect(sampleRatioMismatch([5000, 5000], [1, 1]).mismatch).toBe(false);
    const skewed = sampleRatioMismatch([5200, 4800], [1, 1]);
    close(skewed.statistic, 16, 1e-12);
    relClose(skewed.pValue, 6.334248366623988e-5, 1e-10); // scipy.stats.chi2.sf(16, 1)
    expect(skewed.mismatch).toBe(true);
    // weighted design: 30/70 with 3,050/6,950 is fine
    expect(sampleRatioMismatch([3050, 6950], [0.3, 0.7]).mismatch).toBe(false);
  });
});

describe("normal-mixture confidence sequence", () => {
  it("matches the closed form and is wider than the fixed-n interval", () => {
    const v = 0.01;
    const tau2 = mixtureVarianceFor(v, 0.05);
    const cs = normalMixtureConfidenceSequence(0.1, v, 0.05, tau2);
    const half = Math.sqrt(((v * (v + tau2)) / tau2) * Math.log((v + tau2) / (v * 0.05 * 0.05)));
    close(cs.ci[1] - 0.1, half, 1e-14);
    expect(half).toBeGreaterThan(1.959963984540054 * Math.sqrt(v));
    // the tuned τ² is the width minimiser at v: nearby choices are wider
    for (const f of [0.5, 2]) {
      const other = normalMixtureConfidenceSequence(0.1, v, 0.05, tau2 * f);
      expect(other.ci[1] - 0.1).toBeGreaterThan(half);
    }
  });

  it("its p-value and interval agree: p < alpha exactly when 0 is outside the interval", () => {
    const v = 0.04;
    const tau2 = mixtureVarianceFor(v, 0.05);
    for (let est = 0; est < 1.2; est += 0.01) {
      const cs = normalMixtureConfidenceSequence(est, v, 0.05, tau2);
      const excludesZero = cs.ci[0] > 0;
      if (Math.abs(cs.ci[0]) > 1e-9) expect(cs.pValue < 0.05).toBe(excludesZero);
    }
  });
});
