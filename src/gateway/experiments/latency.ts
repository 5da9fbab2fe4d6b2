/**
 * Mergeable latency aggregates for experiment arms.
 *
 * Per-arm latency is kept as sufficient statistics (count, sum, sum of squares: exact mean and variance for
 * Welch's test) plus a sparse histogram with logarithmically spaced buckets for percentiles, in the style of
 * DDSketch (Masson, Rim & Lee, VLDB 2019): bucket i holds values in (γ^(i-1), γ^i] with γ = (1+ε)/(1-ε), and
 * answers every quantile within relative error ε of a value in the sample. Because the bucket boundaries are
 * fixed, two histograms merge by adding counts: per-batch or per-isolate aggregates can be combined in any
 * order with the same result, which is what an event pipeline that writes per-arm aggregates needs.
 * Hand-written because it is forty lines; the DDSketch npm package carries protobuf and mapping options we
 * would not use.
 */

/** Relative accuracy ε of histogram percentiles (1%). */
export const LATENCY_RELATIVE_ACCURACY = 0.01;
const GAMMA = (1 + LATENCY_RELATIVE_ACCURACY) / (1 - LATENCY_RELATIVE_ACCURACY);
const LOG_GAMMA = Math.log(GAMMA);
/**
 * Latencies at or below this (ms) are counted in `zeroCount`: workerd coarsens timers, so 0 ms is a real
 * observation there, and a log scale cannot hold it.
 */
export const LATENCY_ZERO_THRESHOLD_MS = 1e-3;

export interface LatencyHistogram {
  count: number;
  sum: number;
  sumSquares: number;
  min: number;
  max: number;
  zeroCount: number;
  /** sparse: bucket index (as a string key, JSON-friendly) -> count */
  buckets: Record<string, number>;
}

export function emptyLatencyHistogram(): LatencyHistogram {
  return {
    count: 0,
    sum: 0,
    sumSquares: 0,
    min: Number.POSITIVE_INFINITY,
    max: Number.NEGATIVE_INFINITY,
    zeroCount: 0,
    buckets: {},
  };
}

function bucketIndex(ms: number): number {
  return Math.ceil(Math.log(ms) / LOG_GAMMA);
}

/** Midpoint (in relative terms) of bucket i: within ε of every value in (γ^(i-1), γ^i]. */
function bucketValue(index: number): number {
  return (2 * GAMMA ** index) / (GAMMA + 1);
}

/** Adds one latency observation (ms) to `histogram` in place and returns it. */
export function recordLatency(histogram: LatencyHistogram, ms: number): LatencyHistogram {
  if (!Number.isFinite(ms) || ms < 0)
    throw new RangeError(`latencyMs: must be a finite number >= 0, got ${ms}`);
  histogram.count += 1;
  histogram.sum += ms;
  histogram.sumSquares += ms * ms;
  histogram.min = Math.min(histogram.min, ms);
  histogram.max = Math.max(histogram.max, ms);
  if (ms <= LATENCY_ZERO_THRESHOLD_MS) {
    histogram.zeroCount += 1;
  } else {
    const key = String(bucketIndex(ms));
    histogram.buckets[key] = (histogram.buckets[key] ?? 0) + 1;
  }
  return histogram;
}

export function latencyHistogramFromSamples(samples: readonly number[]): LatencyHistogram {
  const histogram = emptyLatencyHistogram();
  for (const ms of samples) recordLatency(histogram, ms);
  return histogram;
}

/** Sum of histograms (a new object; inputs untouched). Associative and commutative. */
export function mergeLatencyHistograms(...histograms: readonly LatencyHistogram[]): LatencyHistogram {
  const merged = emptyLatencyHistogram();
  for (const h of histograms) {
    merged.count += h.count;
    merged.sum += h.sum;
    merged.sumSquares += h.sumSquares;
    merged.min = Math.min(merged.min, h.min);
    merged.max = Math.max(merged.max, h.max);
    merged.zeroCount += h.zeroCount;
    for (const [key, n] of Object.entries(h.buckets)) merged.buckets[key] = (merged.buckets[key] ?? 0) + n;
  }
  return merged;
}

/**
 * q-quantile (0 <= q <= 1) from the histogram: the bucket holding the value of rank q·(count-1), reported at
 * the bucket's representative value and clamped to [min, max]. Within ε relative error of an order statistic
 * adjacent to the exact (interpolated) percentile.
 */
export function histogramQuantile(histogram: LatencyHistogram, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`q must be in [0, 1], got ${q}`);
  if (histogram.count === 0) return Number.NaN;
  if (q === 0) return histogram.min;
  if (q === 1) return histogram.max;
  const rank = q * (histogram.count - 1);
  let seen = histogram.zeroCount;
  if (seen > rank) return Math.max(histogram.min, 0);
  const indices = Object.keys(histogram.buckets)
    .map(Number)
    .sort((a, b) => a - b);
  for (const index of indices) {
    seen += histogram.buckets[String(index)];
    if (seen > rank) return Math.min(Math.max(bucketValue(index), histogram.min), histogram.max);
  }
  return histogram.max;
}

/** Mean and unbiased variance from the sums (clamped at 0 against rounding). */
export function histogramMoments(histogram: LatencyHistogram): { n: number; mean: number; variance: number } {
  const n = histogram.count;
  const mean = n > 0 ? histogram.sum / n : Number.NaN;
  const variance = n > 1 ? Math.max(0, (histogram.sumSquares - n * mean * mean) / (n - 1)) : Number.NaN;
  return { n, mean, variance };
}
