/**
 * Statistics for A/B tests: distributions, intervals and tests, as pure functions with no dependencies.
 *
 * Hand-written on purpose: no small, well-kept JavaScript library covers all of what is needed here (normal and
 * Student t quantiles, regularized gamma/beta, Wilson and Newcombe intervals, Welch's test, chi-square
 * goodness of fit, and normal-mixture confidence sequences) and runs unchanged inside workerd; jStat is
 * unmaintained and has known accuracy bugs in its tails, and @stdlib pulls in hundreds of packages.
 * Every function is checked against published reference values in test/node/experiments-stats.test.ts.
 *
 * Conventions: `alpha` is a two-sided significance level unless a name says one-sided; intervals are
 * `[lower, upper]`; differences are always `treatment - control`.
 */

export type Interval = [lower: number, upper: number];

// ---------------------------------------------------------------------------------------------------------
// Special functions
// ---------------------------------------------------------------------------------------------------------

const EPSILON = 1e-15;
const TINY = 1e-300; // keeps Lentz's continued fractions away from division by zero
const MAX_ITERATIONS = 10_000;

// Lanczos approximation, g = 7, n = 9 (coefficients as published in Numerical Recipes 3rd ed. / Wikipedia
// "Lanczos approximation"); relative error ~1e-15 for x > 0.
const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0. */
export function logGamma(x: number): number {
  if (!(x > 0)) throw new RangeError(`logGamma: x must be > 0, got ${x}`);
  if (x < 0.5) {
    // Reflection: Γ(x) Γ(1 - x) = π / sin(πx)
    return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  }
  const z = x - 1;
  let series = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) series += LANCZOS[i] / (z + i);
  const t = z + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(series);
}

/**
 * Regularized lower incomplete gamma P(a, x) and its complement Q(a, x) = 1 - P(a, x), each computed directly
 * (series for x < a + 1, Lentz continued fraction otherwise; Numerical Recipes §6.2) so tails keep full
 * relative precision.
 */
function regularizedGamma(a: number, x: number): { p: number; q: number } {
  if (!(a > 0)) throw new RangeError(`regularizedGamma: a must be > 0, got ${a}`);
  if (x < 0 || Number.isNaN(x)) throw new RangeError(`regularizedGamma: x must be >= 0, got ${x}`);
  if (x === 0) return { p: 0, q: 1 };
  if (x === Number.POSITIVE_INFINITY) return { p: 1, q: 0 };
  const logPrefix = a * Math.log(x) - x - logGamma(a);
  if (x < a + 1) {
    // P(a, x) = x^a e^-x / Γ(a+1) · Σ x^n / ((a+1)...(a+n))
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < MAX_ITERATIONS; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPSILON) break;
    }
    const p = Math.min(1, sum * Math.exp(logPrefix));
    return { p, q: 1 - p };
  }
  // Q(a, x) = x^a e^-x / Γ(a) · 1/(x+1-a- 1·(1-a)/(x+3-a- 2·(2-a)/(x+5-a- ...))), modified Lentz
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPSILON) break;
  }
  const q = Math.min(1, Math.exp(logPrefix) * h);
  return { p: 1 - q, q };
}

export function regularizedGammaP(a: number, x: number): number {
  return regularizedGamma(a, x).p;
}

export function regularizedGammaQ(a: number, x: number): number {
  return regularizedGamma(a, x).q;
}

/** Continued fraction for I_x(a, b) (Numerical Recipes §6.4 `betacf`), evaluated with modified Lentz. */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m < MAX_ITERATIONS; m++) {
    const m2 = 2 * m;
    // even step
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    // odd step
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPSILON) break;
  }
  return h;
}

/** Regularized incomplete beta I_x(a, b), 0 <= x <= 1. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(a > 0 && b > 0)) throw new RangeError(`regularizedBeta: a, b must be > 0, got ${a}, ${b}`);
  if (!(x >= 0 && x <= 1)) throw new RangeError(`regularizedBeta: x must be in [0, 1], got ${x}`);
  if (x === 0) return 0;
  if (x === 1) return 1;
  const logFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  // The fraction converges fast for x < (a+1)/(a+b+2); otherwise use I_x(a,b) = 1 - I_{1-x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(logFront) * betaContinuedFraction(x, a, b)) / a;
  return 1 - (Math.exp(logFront) * betaContinuedFraction(1 - x, b, a)) / b;
}

// ---------------------------------------------------------------------------------------------------------
// Normal distribution
// ---------------------------------------------------------------------------------------------------------

/** erfc(x) via erfc(x) = Q(1/2, x²) for x >= 0, which keeps relative precision far into the tail. */
function erfc(x: number): number {
  if (x >= 0) return regularizedGammaQ(0.5, x * x);
  return 1 + regularizedGammaP(0.5, x * x);
}

/** Standard normal CDF Φ(z). */
export function normalCdf(z: number): number {
  if (Number.isNaN(z)) return Number.NaN;
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** Standard normal survival function 1 - Φ(z), accurate in the upper tail. */
export function normalSf(z: number): number {
  return normalCdf(-z);
}

export function normalPdf(z: number): number {
  return Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
}

// Acklam's rational approximation of Φ⁻¹ (relative error 1.15e-9), followed by one Halley step on the
// accurate normalCdf above, which brings it to ~1e-15.
const ACKLAM_A = [
  -3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1,
  2.506628277459239,
];
const ACKLAM_B = [
  -5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1,
];
const ACKLAM_C = [
  -7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968,
  2.938163982698783,
];
const ACKLAM_D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
const ACKLAM_P_LOW = 0.02425;

/** Standard normal quantile Φ⁻¹(p), 0 < p < 1. */
export function normalQuantile(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`normalQuantile: p must be in [0, 1], got ${p}`);
  if (p === 0) return Number.NEGATIVE_INFINITY;
  if (p === 1) return Number.POSITIVE_INFINITY;
  const [a, b, c, d] = [ACKLAM_A, ACKLAM_B, ACKLAM_C, ACKLAM_D];
  let x: number;
  if (p < ACKLAM_P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p));
    x =
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - ACKLAM_P_LOW) {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
      (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log1p(-p));
    x = -(
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    );
  }
  // Halley refinement on e = Φ(x) - p, computed in the smaller tail so it keeps its precision.
  const e = p < 0.5 ? normalCdf(x) - p : 1 - p - normalSf(x);
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp(0.5 * x * x);
  return x - u / (1 + 0.5 * x * u);
}

// ---------------------------------------------------------------------------------------------------------
// Student t and chi-square distributions
// ---------------------------------------------------------------------------------------------------------

/** Student t CDF with `df` > 0 degrees of freedom (non-integer df allowed, as Welch needs). */
export function studentTCdf(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTCdf: df must be > 0, got ${df}`);
  if (Number.isNaN(t)) return Number.NaN;
  if (!Number.isFinite(t)) return t > 0 ? 1 : 0;
  // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2)
  const tail = 0.5 * regularizedBeta(df / (df + t * t), df / 2, 0.5);
  return t > 0 ? 1 - tail : tail;
}

/** Upper tail P(T > t), accurate for large t. */
export function studentTSf(t: number, df: number): number {
  return studentTCdf(-t, df);
}

function studentTPdf(t: number, df: number): number {
  const logDensity =
    logGamma((df + 1) / 2) -
    logGamma(df / 2) -
    0.5 * Math.log(df * Math.PI) -
    ((df + 1) / 2) * Math.log1p((t * t) / df);
  return Math.exp(logDensity);
}

/** Student t quantile: Newton's method on the CDF from the normal quantile, safeguarded by bisection. */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`studentTQuantile: p must be in (0, 1), got ${p}`);
  if (!(df > 0)) throw new RangeError(`studentTQuantile: df must be > 0, got ${df}`);
  if (p === 0.5) return 0;
  // Solve in the upper half and reflect: keeps the target away from the cancellation near 1.
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  const target = 1 - p; // upper-tail probability
  let lo = 0;
  let hi = 1;
  while (studentTSf(hi, df) > target) hi *= 2;
  let t = Math.min(Math.max(normalQuantile(p), lo), hi);
  for (let i = 0; i < 200; i++) {
    const f = studentTSf(t, df) - target; // decreasing in t
    if (f === 0) return t;
    const step = f / studentTPdf(t, df);
    if (Math.abs(step) <= 1e-15 * t) return t + step;
    if (f > 0) lo = t;
    else hi = t;
    const next = t + step;
    t = next > lo && next < hi ? next : 0.5 * (lo + hi);
  }
  return t;
}

/** Chi-square CDF with k > 0 degrees of freedom. */
export function chiSquareCdf(x: number, k: number): number {
  if (x <= 0) return 0;
  return regularizedGammaP(k / 2, x / 2);
}

/** Chi-square survival function P(X > x) (the p-value of a chi-square statistic). */
export function chiSquareSf(x: number, k: number): number {
  if (x <= 0) return 1;
  return regularizedGammaQ(k / 2, x / 2);
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
  const sorted = [...values].sort((x, y) => x - y);
  const h = (sorted.length - 1) * (q / 100);
  const below = Math.floor(h);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (h - below) * (sorted[above] - sorted[below]);
}

/** Sufficient statistics of a sample: what Welch's test needs. */
export interface MeanSummary {
  n: number;
  mean: number;
  /** unbiased sample variance */
  variance: number;
}

export function summarize(values: readonly number[]): MeanSummary {
  return { n: values.length, mean: mean(values), variance: variance(values) };
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

/** Unpooled variance of p̂_t - p̂_c: p̂_t(1-p̂_t)/n_t + p̂_c(1-p̂_c)/n_c. */
export function differenceVariance(control: Proportion, treatment: Proportion): number {
  const p1 = treatment.successes / treatment.n;
  const p0 = control.successes / control.n;
  return (p1 * (1 - p1)) / treatment.n + (p0 * (1 - p0)) / control.n;
}

/**
 * Two-proportion test of p_t - p_c.
 * p-value: pooled z-test, z = (p̂_t - p̂_c) / sqrt(p̂(1-p̂)(1/n_t + 1/n_c)) (equivalent to Pearson's chi-square on
 * the 2×2 table without continuity correction).
 * Interval: Newcombe's hybrid score interval (Newcombe 1998, method 10), built from the two Wilson intervals;
 * it keeps its coverage for small samples and proportions near 0 or 1, where the Wald interval fails.
 */
export function twoProportionTest(control: Proportion, treatment: Proportion, alpha = 0.05): DifferenceTest {
  const p1 = treatment.successes / treatment.n;
  const p0 = control.successes / control.n;
  const difference = p1 - p0;
  const pooled = (treatment.successes + control.successes) / (treatment.n + control.n);
  const pooledSe = Math.sqrt(pooled * (1 - pooled) * (1 / treatment.n + 1 / control.n));
  const statistic = pooledSe > 0 ? difference / pooledSe : 0;
  const pValue = pooledSe > 0 ? 2 * normalSf(Math.abs(statistic)) : 1;
  const standardError = Math.sqrt(differenceVariance(control, treatment));
  return { difference, standardError, ci: newcombeInterval(control, treatment, alpha), pValue, statistic };
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

/**
 * One-sided non-inferiority of a single proportion against a fixed threshold.
 * H0: p <= threshold vs H1: p > threshold. Score test z = (p̂ - θ) / sqrt(θ(1-θ)/n), p = 1 - Φ(z); its dual
 * is the one-sided Wilson bound, so `nonInferior` (lower bound > θ) and `pValue < alpha` always agree.
 */
export function proportionNonInferiority(
  successes: number,
  n: number,
  threshold: number,
  alpha = 0.05,
): NonInferiorityResult {
  if (!(threshold > 0 && threshold < 1)) {
    throw new RangeError(`proportionNonInferiority: threshold must be in (0, 1), got ${threshold}`);
  }
  const estimate = n > 0 ? successes / n : Number.NaN;
  if (!(n > 0)) return { threshold, estimate, lowerBound: 0, pValue: 1, nonInferior: false };
  const z = (estimate - threshold) / Math.sqrt((threshold * (1 - threshold)) / n);
  const pValue = normalSf(z);
  const lowerBound = wilsonIntervalZ(successes, n, normalQuantile(1 - alpha))[0];
  return { threshold, estimate, lowerBound, pValue, nonInferior: pValue < alpha };
}

/**
 * One-sided non-inferiority of a treatment proportion against the control with an absolute margin δ > 0.
 * H0: p_t - p_c <= -δ. Decision by the lower end of the Newcombe interval at level 1 - 2·alpha (i.e. a one-sided
 * 1 - alpha bound) exceeding -δ; the reported p-value is the Wald z-test of the same hypothesis (approximate).
 */
export function differenceNonInferiority(
  control: Proportion,
  treatment: Proportion,
  margin: number,
  alpha = 0.05,
): NonInferiorityResult {
  if (!(margin >= 0)) throw new RangeError(`differenceNonInferiority: margin must be >= 0, got ${margin}`);
  const estimate = treatment.successes / treatment.n - control.successes / control.n;
  const lowerBound = newcombeInterval(control, treatment, 2 * alpha)[0];
  const se = Math.sqrt(differenceVariance(control, treatment));
  const pValue = se > 0 ? normalSf((estimate + margin) / se) : estimate > -margin ? 0 : 1;
  return { threshold: -margin, estimate, lowerBound, pValue, nonInferior: lowerBound > -margin };
}

// ---------------------------------------------------------------------------------------------------------
// Means
// ---------------------------------------------------------------------------------------------------------

export interface WelchResult extends DifferenceTest {
  /** Welch–Satterthwaite degrees of freedom */
  df: number;
}

/**
 * Welch's unequal-variance t-test of mean_t - mean_c (Welch 1947):
 *   se² = s_t²/n_t + s_c²/n_c,  t = (x̄_t - x̄_c)/se,
 *   df = se⁴ / ((s_t²/n_t)²/(n_t-1) + (s_c²/n_c)²/(n_c-1))   (Welch–Satterthwaite),
 *   CI = difference ± t_{1-alpha/2, df}·se, two-sided p = 2·P(T_df > |t|).
 */
export function welchTTest(control: MeanSummary, treatment: MeanSummary, alpha = 0.05): WelchResult {
  if (control.n < 2 || treatment.n < 2) throw new RangeError("welchTTest: each group needs n >= 2");
  const vt = treatment.variance / treatment.n;
  const vc = control.variance / control.n;
  const difference = treatment.mean - control.mean;
  const se2 = vt + vc;
  const standardError = Math.sqrt(se2);
  if (se2 === 0) {
    // Both samples constant: the difference is known exactly.
    return {
      difference,
      standardError: 0,
      ci: [difference, difference],
      pValue: difference === 0 ? 1 : 0,
      statistic: difference === 0 ? 0 : Math.sign(difference) * Number.POSITIVE_INFINITY,
      df: treatment.n + control.n - 2,
    };
  }
  const df = (se2 * se2) / ((vt * vt) / (treatment.n - 1) + (vc * vc) / (control.n - 1));
  const statistic = difference / standardError;
  const pValue = Math.min(1, 2 * studentTSf(Math.abs(statistic), df));
  const half = studentTQuantile(1 - alpha / 2, df) * standardError;
  return { difference, standardError, ci: [difference - half, difference + half], pValue, statistic, df };
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
  if (n === 0) {
    return {
      units: 0,
      numerator: 0,
      denominator: 0,
      estimate: Number.NaN,
      variance: Number.NaN,
      designEffect: 1,
    };
  }
  const r = sx / sy;
  let ss = 0;
  for (let i = 0; i < numerators.length; i++) {
    if (denominators[i] === 0) continue;
    const d = numerators[i] - r * denominators[i];
    ss += d * d;
  }
  const ybar = sy / n;
  const variance = n >= 2 ? ss / (n * (n - 1) * ybar * ybar) : Number.NaN;
  // request-level residual sum of squares: Σ (x_i − R̂)² over requests
  const requestSs = requestSumSquares !== undefined ? requestSumSquares - sy * r * r : sy * r * (1 - r);
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
 * through the empirical quantile function. Needs each unit's samples (`units[u]` holds unit u's values).
 */
export function clusteredQuantile(
  units: readonly (readonly number[])[],
  q: number,
  alpha = 0.05,
): ClusteredQuantile {
  if (!(q > 0 && q < 1)) throw new RangeError(`clusteredQuantile: q must be in (0, 1), got ${q}`);
  const pooled: number[] = [];
  for (const u of units) for (const x of u) pooled.push(x);
  const requests = pooled.length;
  const nonEmpty = units.filter((u) => u.length > 0);
  if (requests === 0) {
    return {
      estimate: Number.NaN,
      ci: [Number.NaN, Number.NaN],
      standardError: Number.NaN,
      requests,
      units: 0,
    };
  }
  pooled.sort((a, b) => a - b);
  const quantileOf = (p: number) => sortedPercentile(pooled, Math.min(1, Math.max(0, p)) * 100);
  const estimate = quantileOf(q);
  const below = nonEmpty.map((u) => u.reduce((n, x) => n + (x <= estimate ? 1 : 0), 0));
  const f = ratioSummary(
    below,
    nonEmpty.map((u) => u.length),
  );
  const z = normalQuantile(1 - alpha / 2);
  const seF = Number.isFinite(f.variance) ? Math.sqrt(f.variance) : Number.POSITIVE_INFINITY;
  const ci: Interval = [quantileOf(q - z * seF), quantileOf(q + z * seF)];
  return { estimate, ci, standardError: (ci[1] - ci[0]) / (2 * z), requests, units: nonEmpty.length };
}

function sortedPercentile(sorted: readonly number[], q: number): number {
  const h = (sorted.length - 1) * (q / 100);
  const below = Math.floor(h);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (h - below) * (sorted[above] - sorted[below]);
}
