/**
 * Statistics for A/B tests and routing: intervals and tests as pure functions.
 *
 * The distribution functions (normal, Student t, regularized incomplete gamma for chi-square) come from
 * @stdlib's per-function packages, which are well kept, tested against Boost/R/Julia reference values, and
 * bundle under wrangler/workerd (measured: worker.js +435 KB raw / +67 KB gzip, beside a 3.7 MB gzipped ORT
 * wasm; see docs/routing-evidence.md). What is
 * hand-written here is what no library offers in this form: Wilson and Newcombe intervals, chi-square goodness
 * of fit, normal-mixture confidence sequences and the cluster-robust (delta-method) ratio and quantile
 * estimators. Every function is checked against published reference values in
 * test/node/experiments-stats.test.ts.
 *
 * Conventions: `alpha` is a two-sided significance level unless a name says one-sided; intervals are
 * `[lower, upper]`; differences are always `treatment - control`.
 */
import erfcinv from "@stdlib/math-base-special-erfcinv";
import gammainc from "@stdlib/math-base-special-gammainc";
import normalCdfStd from "@stdlib/stats-base-dists-normal-cdf";
import tCdf from "@stdlib/stats-base-dists-t-cdf";
import tQuantile from "@stdlib/stats-base-dists-t-quantile";

export type Interval = [lower: number, upper: number];

// ---------------------------------------------------------------------------------------------------------
// Distributions (thin wrappers: argument checks, and survival functions computed in the small tail)
// ---------------------------------------------------------------------------------------------------------

/** Standard normal CDF Φ(z). */
export function normalCdf(z: number): number {
  return normalCdfStd(z, 0, 1);
}

/** Standard normal survival function 1 - Φ(z) = Φ(-z), accurate in the upper tail. */
export function normalSf(z: number): number {
  return normalCdfStd(-z, 0, 1);
}

/**
 * Standard normal quantile Φ⁻¹(p), 0 <= p <= 1, as −√2·erfcinv(2p) on the smaller tail. Not
 * @stdlib/stats-base-dists-normal-quantile: it computes √2·erfinv(2p − 1), and 2p − 1 cancels in the lower
 * tail (relative error 4e-7 at p = 1e-12, measured against Python's statistics.NormalDist); 2p and 2(1 − p)
 * are exact.
 */
export function normalQuantile(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`normalQuantile: p must be in [0, 1], got ${p}`);
  return p < 0.5 ? -Math.SQRT2 * erfcinv(2 * p) : Math.SQRT2 * erfcinv(2 * (1 - p));
}

/** Upper tail P(T > t) of Student t with `df` > 0 degrees of freedom (non-integer df allowed, as Welch needs). */
export function studentTSf(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTSf: df must be > 0, got ${df}`);
  return tCdf(-t, df);
}

/** Student t quantile, 0 < p < 1. */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`studentTQuantile: p must be in (0, 1), got ${p}`);
  if (!(df > 0)) throw new RangeError(`studentTQuantile: df must be > 0, got ${df}`);
  return tQuantile(p, df);
}

/** Chi-square survival function P(X > x) (the p-value of a chi-square statistic): Q(k/2, x/2). */
export function chiSquareSf(x: number, k: number): number {
  if (x <= 0) return 1;
  return gammainc(x / 2, k / 2, true, true);
}

// ---------------------------------------------------------------------------------------------------------
// Descriptive statistics
// ---------------------------------------------------------------------------------------------------------

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Unbiased sample variance (n - 1 denominator), two-pass for accuracy. */
export function variance(values: readonly number[]): number {
  if (values.length < 2) return Number.NaN;
  const m = mean(values);
  let ss = 0;
  for (const v of values) ss += (v - m) * (v - m);
  return ss / (values.length - 1);
}

/**
 * q-th percentile (0 <= q <= 100) with linear interpolation between order statistics: Hyndman & Fan (1996)
 * type 7, the default of numpy.percentile and R's quantile().
 */
export function percentile(values: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile: q must be in [0, 100], got ${q}`);
  if (values.length === 0) return Number.NaN;
  return sortedPercentile(
    [...values].sort((x, y) => x - y),
    q,
  );
}

/** `percentile` of values already sorted ascending (no copy, no sort): for callers that sort once. */
export function sortedPercentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const h = (sorted.length - 1) * (q / 100);
  const below = Math.floor(h);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (h - below) * (sorted[above] - sorted[below]);
}

// ---------------------------------------------------------------------------------------------------------
// Proportions
// ---------------------------------------------------------------------------------------------------------

/**
 * Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998 method 3):
 *   (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n),   z = Φ⁻¹(1 - alpha/2).
 * Good coverage even near 0 and 1 and for small n, unlike the Wald interval.
 */
export function wilsonInterval(successes: number, n: number, alpha = 0.05): Interval {
  return wilsonIntervalZ(successes, n, normalQuantile(1 - alpha / 2));
}

function wilsonIntervalZ(successes: number, n: number, z: number): Interval {
  if (!(n > 0)) return [0, 1];
  if (successes < 0 || successes > n) throw new RangeError(`wilsonInterval: successes must be in [0, n]`);
  const p = successes / n;
  const z2 = z * z;
  const centre = p + z2 / (2 * n);
  const spread = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  const denominator = 1 + z2 / n;
  return [Math.max(0, (centre - spread) / denominator), Math.min(1, (centre + spread) / denominator)];
}

export interface DifferenceTest {
  /** treatment - control */
  difference: number;
  standardError: number;
  ci: Interval;
  /** two-sided */
  pValue: number;
  statistic: number;
}

/** Observed successes out of n trials. */
export interface Proportion {
  successes: number;
  n: number;
}

/** Newcombe (1998) hybrid score interval for p_t - p_c. */
export function newcombeInterval(control: Proportion, treatment: Proportion, alpha = 0.05): Interval {
  const p1 = treatment.successes / treatment.n;
  const p0 = control.successes / control.n;
  const [l1, u1] = wilsonInterval(treatment.successes, treatment.n, alpha);
  const [l0, u0] = wilsonInterval(control.successes, control.n, alpha);
  const d = p1 - p0;
  return [d - Math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + Math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)];
}

export interface NonInferiorityResult {
  /** the value the proportion must exceed: e.g. SLA minimum accuracy minus margin */
  threshold: number;
  estimate: number;
  /** one-sided lower confidence bound at level 1 - alpha */
  lowerBound: number;
  /** one-sided p-value of H0: p <= threshold */
  pValue: number;
  nonInferior: boolean;
}
// ---------------------------------------------------------------------------------------------------------
// Sample-ratio mismatch
// ---------------------------------------------------------------------------------------------------------

export interface ChiSquareGoodnessOfFit {
  statistic: number;
  df: number;
  pValue: number;
  expected: number[];
}

/**
 * Pearson chi-square goodness of fit of observed counts against expected proportions (`weights`, normalised):
 *   χ² = Σ (O_i - E_i)² / E_i,  E_i = N·w_i/Σw,  df = k - 1.
 * Arms with weight 0 are left out (they cannot receive traffic; any count there is a bug, reported by caller).
 */
export function chiSquareGoodnessOfFit(
  observed: readonly number[],
  weights: readonly number[],
): ChiSquareGoodnessOfFit {
  if (observed.length !== weights.length) throw new RangeError("chiSquareGoodnessOfFit: lengths differ");
  const totalWeight = weights.reduce((s, w) => s + w, 0);
  const total = observed.reduce((s, o) => s + o, 0);
  const expected = weights.map((w) => (total * w) / totalWeight);
  let statistic = 0;
  let cells = 0;
  for (let i = 0; i < observed.length; i++) {
    if (expected[i] === 0) continue;
    statistic += (observed[i] - expected[i]) ** 2 / expected[i];
    cells++;
  }
  const df = Math.max(cells - 1, 1);
  return { statistic, df, pValue: total > 0 ? chiSquareSf(statistic, df) : 1, expected };
}

/** p-value below which a sample-ratio mismatch is declared (the threshold used by Microsoft's ExP, Optimizely). */
export const SRM_P_THRESHOLD = 0.001;

export interface SampleRatioCheck extends ChiSquareGoodnessOfFit {
  mismatch: boolean;
}

/** Sample-ratio mismatch: are units split across arms the way the weights say? Flag at p < 0.001. */
export function sampleRatioMismatch(
  observed: readonly number[],
  weights: readonly number[],
): SampleRatioCheck {
  const fit = chiSquareGoodnessOfFit(observed, weights);
  return { ...fit, mismatch: fit.pValue < SRM_P_THRESHOLD };
}

// ---------------------------------------------------------------------------------------------------------
// Anytime-valid inference for sequential monitoring
// ---------------------------------------------------------------------------------------------------------

/**
 * Normal-mixture confidence sequence and always-valid p-value for an asymptotically normal estimate θ̂_n with
 * variance v_n (Robbins 1970; the mixture SPRT of Johari, Pekelis & Walsh 2017, "Always valid inference";
 * Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences").
 *
 * With a N(θ0, τ²) mixing distribution over the effect, the mixture likelihood ratio is
 *   Λ_n = sqrt(v_n / (v_n + τ²)) · exp( τ² (θ̂_n - θ0)² / (2 v_n (v_n + τ²)) ).
 * Λ_n is a nonnegative martingale under H0: θ = θ0, so by Ville's inequality P(∃n: Λ_n >= 1/α) <= α: the
 * test may be looked at after every observation without inflating the type I error. Inverting it gives the
 * confidence sequence
 *   θ̂_n ± sqrt( v_n (v_n + τ²)/τ² · ln((v_n + τ²) / (v_n α²)) ),
 * which covers θ at all n simultaneously with probability >= 1 - α (asymptotically, with v_n estimated by
 * plug-in). The always-valid p-value is min over looks of 1/Λ (callers keep the running minimum; a single call
 * returns 1/Λ at this look, which is itself a valid p-value).
 *
 * Tuning: τ² sets where the sequence is tightest. Choosing τ² = r·v* with r the root of r = ln(1 + r) + 2 ln(1/α)
 * minimises the width when v_n = v* (see `mixtureVarianceFor`); we take v* as the estimator's variance at the
 * planned sample size. A wrong choice costs width, never validity.
 */
export interface ConfidenceSequenceResult {
  estimate: number;
  ci: Interval;
  /** 1/Λ_n at this look, capped at 1 */
  pValue: number;
}

export function normalMixtureConfidenceSequence(
  estimate: number,
  estimateVariance: number,
  alpha: number,
  mixtureVariance: number,
  nullValue = 0,
): ConfidenceSequenceResult {
  if (!(mixtureVariance > 0)) throw new RangeError(`mixtureVariance must be > 0, got ${mixtureVariance}`);
  if (!(estimateVariance > 0)) {
    return { estimate, ci: [estimate, estimate], pValue: estimate === nullValue ? 1 : 0 };
  }
  const v = estimateVariance;
  const tau2 = mixtureVariance;
  const half = Math.sqrt(((v * (v + tau2)) / tau2) * Math.log((v + tau2) / (v * alpha * alpha)));
  const logLambda =
    0.5 * Math.log(v / (v + tau2)) + (tau2 * (estimate - nullValue) ** 2) / (2 * v * (v + tau2));
  return { estimate, ci: [estimate - half, estimate + half], pValue: Math.min(1, Math.exp(-logLambda)) };
}

/**
 * The mixture variance τ² that makes the normal-mixture confidence sequence narrowest when the estimator's
 * variance equals `targetVariance`: τ² = r·v*, r = ln(1 + r) + 2 ln(1/α) (solved by fixed-point iteration,
 * which converges because the map's slope 1/(1+r) is < 1).
 */
export function mixtureVarianceFor(targetVariance: number, alpha: number): number {
  let r = 2 * Math.log(1 / alpha);
  for (let i = 0; i < 100; i++) r = 2 * Math.log(1 / alpha) + Math.log1p(r);
  return r * targetVariance;
}

// ---------------------------------------------------------------------------------------------------------
// Ratio metrics over units of assignment (cluster-robust inference)
// ---------------------------------------------------------------------------------------------------------

/**
 * A ratio metric R = Σx_u / Σy_u over the n units of one arm (accuracy: x = correct, y = labelled requests;
 * mean latency: x = Σ latency, y = successful requests), with its delta-method variance.
 *
 * Units, not requests, are the independent draws: the requests of one unit are correlated (same user, same
 * inputs, same network), so the binomial or per-request variance is too small when units send many requests.
 * First-order Taylor linearisation of R = x̄/ȳ around (E x, E y) (the delta method; Deng, Lu & Litz 2018,
 * "Applying the Delta Method in Metric Analytics", eq. 3; Cochran 1977 §6.4 for the ratio estimator):
 *   Var(R̂) ≈ Σ_u (x_u − R̂·y_u)² / (n (n − 1) ȳ²),
 * equivalently (s_x² − 2R̂ s_xy + R̂² s_y²) / (n ȳ²) with (n − 1)-denominator sample moments.
 * With one request per unit this is the usual variance of a mean (p̂(1 − p̂)/(n − 1) for a proportion).
 */
export interface RatioSummary {
  /** units with y_u > 0 */
  units: number;
  numerator: number;
  denominator: number;
  /** Σx / Σy (NaN without data) */
  estimate: number;
  /** delta-method variance of the estimate (NaN with fewer than 2 units) */
  variance: number;
  /**
   * Σ_u (x_u − R̂ y_u)² / Σ_u y_u · (request-level variance) — the design effect of clustering, ≥ 1 when
   * requests within a unit are positively correlated; 1 with one request per unit. For proportions the
   * request-level variance is R̂(1 − R̂); for other ratios it is supplied by the caller (see `ratioSummary`).
   */
  designEffect: number;
}

/**
 * Summarises a ratio metric from per-unit sums. `requestSumSquares` (Σ over requests of x², e.g. Σ latency²)
 * lets the design effect of a non-binary metric be computed; without it the metric is treated as a proportion.
 * Units with y_u = 0 carry no information about the ratio and are left out.
 */
export function ratioSummary(
  numerators: readonly number[],
  denominators: readonly number[],
  requestSumSquares?: number,
): RatioSummary {
  if (numerators.length !== denominators.length) throw new RangeError("ratioSummary: lengths differ");
  let n = 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < numerators.length; i++) {
    const y = denominators[i];
    if (!(y >= 0) || !Number.isFinite(numerators[i])) {
      throw new RangeError(`ratioSummary: unit ${i} has y = ${y}, x = ${numerators[i]}`);
    }
    if (y === 0) continue;
    n++;
    sx += numerators[i];
    sy += y;
  }
  if (n === 0) return EMPTY_RATIO;
  const r = sx / sy;
  let ss = 0;
  for (let i = 0; i < numerators.length; i++) {
    if (denominators[i] === 0) continue;
    const d = numerators[i] - r * denominators[i];
    ss += d * d;
  }
  // request-level residual sum of squares: Σ (x_i − R̂)² over requests
  const requestSs = requestSumSquares !== undefined ? requestSumSquares - sy * r * r : sy * r * (1 - r);
  return ratioFromSums(n, sx, sy, ss, requestSs);
}

/** The summary of no units (no information about the ratio). */
export const EMPTY_RATIO: RatioSummary = {
  units: 0,
  numerator: 0,
  denominator: 0,
  estimate: Number.NaN,
  variance: Number.NaN,
  designEffect: 1,
};

/**
 * The delta-method summary from its sums: `n` units with y > 0, Σx, Σy, the unit-level residual sum of squares
 * Σ_u (x_u − R̂ y_u)² and the request-level one (for the design effect). Shared by `ratioSummary` (per-unit arrays)
 * and the live-feedback summary (per-unit moments from one D1 aggregate).
 */
export function ratioFromSums(
  n: number,
  sx: number,
  sy: number,
  ss: number,
  requestSs: number,
): RatioSummary {
  const r = sx / sy;
  const ybar = sy / n;
  const variance = n >= 2 ? ss / (n * (n - 1) * ybar * ybar) : Number.NaN;
  const designEffect = requestSs > 0 ? Math.max(1, ss / requestSs) : 1;
  return { units: n, numerator: sx, denominator: sy, estimate: r, variance, designEffect };
}

/**
 * Wilson interval for a proportion estimated from clustered requests, on the effective sample size
 * n_eff = N / deff (Korn & Graubard 1998, "Confidence intervals for proportions with small expected number of
 * positive counts estimated from survey data"; deff truncated at 1, so n_eff ≤ N). With one request per unit it
 * is exactly the Wilson interval on N; with clustering it widens by √deff while keeping Wilson's behaviour near
 * 0 and 1.
 */
export function clusteredWilsonInterval(summary: RatioSummary, alpha = 0.05): Interval {
  if (!(summary.denominator > 0)) return [0, 1];
  const nEff = summary.denominator / summary.designEffect;
  return wilsonIntervalZ(summary.estimate * nEff, nEff, normalQuantile(1 - alpha / 2));
}

/**
 * One-sided non-inferiority of a clustered proportion against a fixed threshold θ: the score test and the
 * one-sided Wilson bound of `proportionNonInferiority`, on the effective sample size (see above).
 */
export function clusteredProportionNonInferiority(
  summary: RatioSummary,
  threshold: number,
  alpha = 0.05,
): NonInferiorityResult {
  if (!(threshold > 0 && threshold < 1)) {
    throw new RangeError(`threshold must be in (0, 1), got ${threshold}`);
  }
  if (!(summary.denominator > 0)) {
    return { threshold, estimate: Number.NaN, lowerBound: 0, pValue: 1, nonInferior: false };
  }
  const nEff = summary.denominator / summary.designEffect;
  const p = summary.estimate;
  const pValue = normalSf((p - threshold) / Math.sqrt((threshold * (1 - threshold)) / nEff));
  const lowerBound = wilsonIntervalZ(p * nEff, nEff, normalQuantile(1 - alpha))[0];
  return { threshold, estimate: p, lowerBound, pValue, nonInferior: pValue < alpha };
}

export interface RatioDifferenceTest extends DifferenceTest {
  /** Welch–Satterthwaite degrees of freedom from the per-arm delta-method variances and unit counts */
  df: number;
}

/**
 * Difference of two independent ratio metrics (treatment − control), delta method: se² = V_t + V_c, a Welch-type
 * t statistic with Satterthwaite df = se⁴ / (V_t²/(n_t − 1) + V_c²/(n_c − 1)) (units as the sample size), CI
 * Δ ± t_{1−α/2,df}·se, two-sided p-value. `nullDifference` shifts H0 (non-inferiority: −margin).
 */
export function ratioDifferenceTest(
  control: RatioSummary,
  treatment: RatioSummary,
  alpha = 0.05,
  nullDifference = 0,
): RatioDifferenceTest {
  if (control.units < 2 || treatment.units < 2) {
    throw new RangeError("ratioDifferenceTest: each arm needs at least 2 units");
  }
  const difference = treatment.estimate - control.estimate;
  const vt = treatment.variance;
  const vc = control.variance;
  const se2 = vt + vc;
  if (!(se2 > 0)) {
    const exact = difference === nullDifference;
    return {
      difference,
      standardError: 0,
      ci: [difference, difference],
      pValue: exact ? 1 : 0,
      statistic: exact ? 0 : Math.sign(difference - nullDifference) * Number.POSITIVE_INFINITY,
      df: treatment.units + control.units - 2,
    };
  }
  const standardError = Math.sqrt(se2);
  const df = (se2 * se2) / ((vt * vt) / (treatment.units - 1) + (vc * vc) / (control.units - 1));
  const statistic = (difference - nullDifference) / standardError;
  const pValue = Math.min(1, 2 * studentTSf(Math.abs(statistic), df));
  const half = studentTQuantile(1 - alpha / 2, df) * standardError;
  return { difference, standardError, ci: [difference - half, difference + half], pValue, statistic, df };
}

// ---------------------------------------------------------------------------------------------------------
// Quantiles of clustered samples
// ---------------------------------------------------------------------------------------------------------

export interface ClusteredQuantile {
  /** the q-quantile of all requests pooled (type 7, as `percentile`) */
  estimate: number;
  /** Woodruff interval at level 1 − alpha */
  ci: Interval;
  /** (upper − lower) / (2 z): the standard error implied by the interval (Francisco & Fuller 1991) */
  standardError: number;
  requests: number;
  units: number;
}

/**
 * Confidence interval for a quantile of requests that come in clusters (units), by Woodruff's method (Woodruff
 * 1952, "Confidence intervals for medians and other position measures"; as in R's survey::svyquantile): the
 * share of requests at or below the estimated quantile q̂, F̂(q̂) = Σ_u #{x ≤ q̂}_u / Σ_u n_u, is a ratio metric
 * whose delta-method variance over units is valid under clustering; the interval q ± z·se(F̂) is mapped back
 * through the empirical quantile function. Needs each unit's samples (`units[u]` holds unit u's values, in any
 * order); see `clusteredQuantileSorted` for callers that keep them sorted.
 */
export function clusteredQuantile(
  units: readonly (readonly number[])[],
  q: number,
  alpha = 0.05,
): ClusteredQuantile {
  const sortedUnits = units.map((u) => [...u].sort((a, b) => a - b));
  return clusteredQuantileSorted(sortedUnits, poolSorted(units), q, alpha);
}

/**
 * `clusteredQuantile` from sorted inputs: every `sortedUnits[u]` ascending, and `sortedPooled` every value of
 * them pooled, ascending (the caller's guarantee, not checked here: checking is linear in the requests, which
 * is what this form exists to avoid). Nothing is copied or sorted; each unit's count at or below q̂ is a
 * binary search, so a look costs O(units · log requests per unit) — what lets an experiment that is analysed
 * at every look keep its samples sorted as they arrive (traffic.ts) instead of re-sorting all of them.
 */
export function clusteredQuantileSorted(
  sortedUnits: readonly ArrayLike<number>[],
  sortedPooled: ArrayLike<number>,
  q: number,
  alpha = 0.05,
): ClusteredQuantile {
  if (!(q > 0 && q < 1)) throw new RangeError(`clusteredQuantile: q must be in (0, 1), got ${q}`);
  const requests = sortedPooled.length;
  if (requests === 0) {
    return {
      estimate: Number.NaN,
      ci: [Number.NaN, Number.NaN],
      standardError: Number.NaN,
      requests,
      units: 0,
    };
  }
  const quantileOf = (p: number) => sortedPercentile(sortedPooled, Math.min(1, Math.max(0, p)) * 100);
  const estimate = quantileOf(q);
  // per non-empty unit: how many of its values are <= the estimate, out of how many
  const below: number[] = [];
  const sizes: number[] = [];
  for (const u of sortedUnits) {
    if (u.length === 0) continue;
    below.push(upperBound(u, estimate));
    sizes.push(u.length);
  }
  const f = ratioSummary(below, sizes);
  const z = normalQuantile(1 - alpha / 2);
  const seF = Number.isFinite(f.variance) ? Math.sqrt(f.variance) : Number.POSITIVE_INFINITY;
  const ci: Interval = [quantileOf(q - z * seF), quantileOf(q + z * seF)];
  return { estimate, ci, standardError: (ci[1] - ci[0]) / (2 * z), requests, units: sizes.length };
}

/** Index of the first element of ascending `a[0..length)` that is > x: the count of elements <= x. */
export function upperBound(a: ArrayLike<number>, x: number, length = a.length): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Every value of `units` in one array, sorted ascending. */
export function poolSorted(units: readonly (readonly number[])[]): number[] {
  const pooled: number[] = [];
  for (const u of units) for (const x of u) pooled.push(x);
  return pooled.sort((a, b) => a - b);
}
