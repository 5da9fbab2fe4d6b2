import { describe, expect, it } from "vitest";
import {
  emptyLatencyHistogram,
  histogramMoments,
  histogramQuantile,
  LATENCY_RELATIVE_ACCURACY,
  latencyHistogramFromSamples,
  mergeLatencyHistograms,
  recordLatency,
} from "../../src/gateway/experiments/latency.ts";
import { mean, percentile, variance } from "../../src/gateway/experiments/stats.ts";
import { seededNormal } from "../shared/random.ts";

function lognormalSamples(n: number, medianMs: number, sigma: number, seed: number): number[] {
  const normal = seededNormal(seed);
  return Array.from({ length: n }, () => medianMs * Math.exp(sigma * normal()));
}

describe("LatencyHistogram", () => {
  const samples = lognormalSamples(20_000, 35, 0.6, 1);
  const histogram = latencyHistogramFromSamples(samples);

  it("percentiles are within the stated relative accuracy of the exact order statistics", () => {
    const sorted = [...samples].sort((a, b) => a - b);
    for (const q of [0.01, 0.25, 0.5, 0.9, 0.95, 0.99]) {
      const estimate = histogramQuantile(histogram, q);
      // the rank-q·(n-1) order statistic, i.e. the lower neighbour of numpy's interpolated percentile
      const exact = sorted[Math.floor(q * (sorted.length - 1))];
      expect(Math.abs(estimate - exact) / exact).toBeLessThanOrEqual(LATENCY_RELATIVE_ACCURACY + 1e-12);
      // and close to the interpolated percentile too
      const interpolated = percentile(samples, q * 100);
      expect(Math.abs(estimate - interpolated) / interpolated).toBeLessThan(0.011);
    }
    expect(histogramQuantile(histogram, 0)).toBe(Math.min(...samples));
    expect(histogramQuantile(histogram, 1)).toBe(Math.max(...samples));
  });

  it("mean and variance from the sums equal the two-pass sample values", () => {
    const m = histogramMoments(histogram);
    expect(m.n).toBe(samples.length);
    expect(m.mean).toBeCloseTo(mean(samples), 9);
    expect(m.variance / variance(samples)).toBeCloseTo(1, 9);
  });

  it("merges: parts combined in any order equal the histogram of the whole", () => {
    const parts = [samples.slice(0, 7000), samples.slice(7000, 7001), samples.slice(7001)].map(
      latencyHistogramFromSamples,
    );
    const forward = mergeLatencyHistograms(...parts);
    const backward = mergeLatencyHistograms(parts[2], mergeLatencyHistograms(parts[1], parts[0]));
    for (const merged of [forward, backward]) {
      expect(merged.buckets).toEqual(histogram.buckets);
      expect(merged.count).toBe(histogram.count);
      expect(merged.min).toBe(histogram.min);
      expect(merged.max).toBe(histogram.max);
      expect(merged.sum / histogram.sum).toBeCloseTo(1, 12);
      for (const q of [0.5, 0.95]) expect(histogramQuantile(merged, q)).toBe(histogramQuantile(histogram, q));
    }
    // merging an empty histogram changes nothing; inputs are not mutated
    const withEmpty = mergeLatencyHistograms(histogram, emptyLatencyHistogram());
    expect(withEmpty.buckets).toEqual(histogram.buckets);
    expect(parts[1].count).toBe(1);
  });

  it("survives a JSON round trip (how aggregates are stored)", () => {
    const restored = JSON.parse(JSON.stringify(histogram));
    expect(histogramQuantile(restored, 0.95)).toBe(histogramQuantile(histogram, 0.95));
  });

  it("counts 0 ms observations (coarse workerd timers) in the zero bucket", () => {
    const h = latencyHistogramFromSamples([0, 0, 0, 5, 10]);
    expect(h.zeroCount).toBe(3);
    expect(histogramQuantile(h, 0.5)).toBe(0);
    expect(histogramQuantile(h, 0.9)).toBeGreaterThan(5);
  });

  it("rejects impossible latencies with a message naming the field", () => {
    expect(() => recordLatency(emptyLatencyHistogram(), -1)).toThrow(/latencyMs/);
    expect(() => recordLatency(emptyLatencyHistogram(), Number.NaN)).toThrow(/latencyMs/);
  });
});
