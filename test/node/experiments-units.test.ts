import { describe, expect, it } from "vitest";
import {
  clusteredQuantile,
  clusteredWilsonInterval,
  percentile,
  ratioDifferenceTest,
  ratioSummary,
  wilsonInterval,
} from "../../src/gateway/experiments/stats.ts";
import { seededNormal, seededUniform } from "../shared/random.ts";

describe("delta method for ratio metrics over units", () => {
  it("equals the moment form (s_x² − 2R s_xy + R² s_y²)/(n ȳ²), computed by hand", () => {
    // 4 units: correct / labelled = 3/4, 1/1, 5/10, 2/2  -> R = 11/17
    const x = [3, 1, 5, 2];
    const y = [4, 1, 10, 2];
    const s = ratioSummary(x, y);
    const n = 4;
    const xbar = 11 / 4;
    const ybar = 17 / 4;
    const R = 11 / 17;
    const sxx = x.reduce((a, v) => a + (v - xbar) ** 2, 0) / (n - 1);
    const syy = y.reduce((a, v) => a + (v - ybar) ** 2, 0) / (n - 1);
    const sxy = x.reduce((a, v, i) => a + (v - xbar) * (y[i] - ybar), 0) / (n - 1);
    expect(s.estimate).toBeCloseTo(R, 15);
    expect(s.variance).toBeCloseTo((sxx - 2 * R * sxy + R * R * syy) / (n * ybar * ybar), 14);
  });

  it("agrees with a brute-force seeded bootstrap over units", () => {
    const u = seededUniform(5);
    const x: number[] = [];
    const y: number[] = [];
    for (let i = 0; i < 400; i++) {
      const m = Math.min(200, Math.floor(3 * (1 - u()) ** (-1 / 1.3)));
      const p = u() ** (1 / 9);
      let c = 0;
      for (let j = 0; j < m; j++) if (u() < p) c++;
      x.push(c);
      y.push(m);
    }
    const s = ratioSummary(x, y);
    const b = seededUniform(9);
    const reps: number[] = [];
    for (let r = 0; r < 2000; r++) {
      let sx = 0;
      let sy = 0;
      for (let i = 0; i < x.length; i++) {
        const k = Math.floor(b() * x.length);
        sx += x[k];
        sy += y[k];
      }
      reps.push(sx / sy);
    }
    const m = reps.reduce((a, v) => a + v, 0) / reps.length;
    const v = reps.reduce((a, r) => a + (r - m) ** 2, 0) / (reps.length - 1);
    expect(Math.sqrt(s.variance) / Math.sqrt(v)).toBeGreaterThan(0.85);
    expect(Math.sqrt(s.variance) / Math.sqrt(v)).toBeLessThan(1.15);
  });

  it("with one request per unit: Wilson's interval exactly, and the usual variance of a proportion", () => {
    const x = [...Array(8).fill(1), 0, 0];
    const s = ratioSummary(x, Array(10).fill(1));
    expect(s.designEffect).toBeCloseTo(1, 14);
    const [lo, hi] = clusteredWilsonInterval(s, 0.05);
    const [wlo, whi] = wilsonInterval(8, 10, 0.05);
    expect(lo).toBeCloseTo(wlo, 12);
    expect(hi).toBeCloseTo(whi, 12);
    // and Newcombe (1998) Table I: 8/10 -> [0.4902, 0.9433]
    expect(lo).toBeCloseTo(0.4902, 4);
    expect(hi).toBeCloseTo(0.9433, 4);
    expect(s.variance).toBeCloseTo((0.8 * 0.2) / 9, 15);
  });

  it("a difference test with no variance is exact", () => {
    const a = ratioSummary([1, 1], [1, 1]);
    expect(ratioDifferenceTest(a, a).pValue).toBe(1);
  });
});

describe("Woodruff interval for a quantile of clustered samples", () => {
  it("covers the pooled p95 and is close in width to a seeded bootstrap over units", () => {
    const n = seededNormal(3);
    const units = Array.from({ length: 300 }, (_, i) => {
      const f = Math.exp(0.5 * n());
      return Array.from({ length: 1 + (i % 7) }, () => 30 * f * Math.exp(0.3 * n()));
    });
    const w = clusteredQuantile(units, 0.95, 0.05);
    expect(w.estimate).toBeCloseTo(percentile(units.flat(), 95), 12);
    expect(w.ci[0]).toBeLessThan(w.estimate);
    expect(w.ci[1]).toBeGreaterThan(w.estimate);
    const b = seededUniform(11);
    const reps: number[] = [];
    for (let r = 0; r < 400; r++) {
      const pooled: number[] = [];
      for (let i = 0; i < units.length; i++) pooled.push(...units[Math.floor(b() * units.length)]);
      reps.push(percentile(pooled, 95));
    }
    const ratio = (w.ci[1] - w.ci[0]) / (percentile(reps, 97.5) - percentile(reps, 2.5));
    expect(ratio).toBeGreaterThan(0.6);
    expect(ratio).toBeLessThan(1.6);
  });
});
