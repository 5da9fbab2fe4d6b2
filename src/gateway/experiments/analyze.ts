/**
 * Experiment analysis: per-unit traffic of each arm + experiment design -> typed results and a recommendation in
 * plain words. Pure and runtime-agnostic (runs in the Worker behind GET /v1/experiments/:id/results).
 *
 * The unit of analysis is the unit of assignment. Units (users, API keys) are randomised to arms; their
 * requests are not independent draws, so every metric is first aggregated per unit and inference treats units
 * as the sample:
 * - per arm, accuracy (correct / labelled requests), error rate (errors / requests) and mean latency
 *   (Σ latency / successful requests) are ratio metrics over units with delta-method variances; their per-arm
 *   intervals are Wilson on the effective sample size (`clusteredWilsonInterval`);
 * - the comparisons (accuracy, mean latency) test per-unit means (each unit weighs 1: the unit's accuracy,
 *   the unit's mean latency) with a Welch-type t (`ratioDifferenceTest` with unit denominators). Request-
 *   weighted ratios were tried first and are valid asymptotically, but with heavy-tailed requests per unit
 *   (Pareto 1.3: infinite variance) a few huge units dominate them and 300 units per arm gave 11-12% false
 *   positives at alpha = 0.05; unit means are bounded and stay at alpha;
 * - p95 latency uses Woodruff's interval over units (`clusteredQuantileSorted`), valid for quantiles of clustered
 *   samples;
 * - SRM counts units; the sequential confidence sequences take the delta-method variances.
 * Requests without a unit id (assigned at random per request) are summarised apart (`unsticky`) and never
 * enter these estimates. An experiment whose traffic never carries unit ids was randomised per request, so
 * there each request is its own unit (`unitKind: "request"`).
 * The per-unit aggregates are an `ArmTraffic` per arm (traffic.ts), updated request by request, so a caller that
 * looks at a growing experiment many times pays per look in units, not in all requests so far.
 *
 * Guarantees that the tests check:
 * - With no true difference (A/A), "promote" is recommended with probability <= alpha, also when units send
 *   many correlated requests (seeded clustered simulation in the tests; `npm run sim:ab` for the full table).
 *   A promotion needs a significant improvement in a two-sided test at alpha, which happens with probability
 *   alpha/2 under the null; there are at most two such paths (more accurate, or non-inferior and faster), so
 *   together <= alpha. With several treatment arms the comparisons use a Bonferroni-adjusted alpha / (arms - 1).
 * - "Non-inferior and faster" is an intersection-union test (Berger 1982): both the non-inferiority test and
 *   the latency test must reject at alpha, so no multiplicity adjustment is needed between them.
 * - A fixed-horizon design gives no verdict before its planned units are reached (peeking at fixed-n tests
 *   inflates false positives); a sequential design uses always-valid confidence sequences instead and may
 *   stop at any look.
 */
import {
  type ClusteredQuantile,
  clusteredProportionNonInferiority,
  clusteredQuantileSorted,
  clusteredWilsonInterval,
  EMPTY_RATIO,
  type Interval,
  mixtureVarianceFor,
  normalMixtureConfidenceSequence,
  normalQuantile,
  normalSf,
  type RatioSummary,
  ratioDifferenceTest,
  ratioFromSums,
  type SampleRatioCheck,
  sampleRatioMismatch,
  sortedPercentile,
} from "./stats.ts";
import { ArmTraffic, type UnitData } from "./traffic.ts";

export { ArmTraffic, type RequestOutcome, type UnitData } from "./traffic.ts";

// ---------------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------------

/** Requests without a unit id: the same fields, pooled. Reported, never mixed into the unit analysis. */
export type UnstickyData = UnitData;

export interface ArmData {
  /** one entry per distinct unit seen on the arm (the analysis does not depend on their order) */
  units: readonly UnitData[];
  unsticky?: UnstickyData;
}

export type PrimaryMetric = "accuracy" | "latency";

export type ExperimentDesign =
  | { kind: "fixed"; plannedUnits: number }
  /** plannedUnits (optional) tunes where the confidence sequence is tightest and when to call "no difference" */
  | { kind: "sequential"; plannedUnits?: number };

export interface AnalysisConfig {
  /** in arm-index order; names are what the recommendation calls the arms */
  arms: readonly { name: string; weight: number }[];
  controlArm: number;
  primaryMetric: PrimaryMetric;
  /** two-sided significance level, e.g. 0.05 */
  alpha: number;
  guardrails?: { maxErrorRate?: number; maxP95Ms?: number };
  /** the task's SLA: minimum accuracy an arm must be shown to meet (minus the margin) */
  slaMinAccuracy?: number;
  /** absolute accuracy margin for non-inferiority (default 0 vs the SLA; vs control only when > 0) */
  nonInferiorityMargin?: number;
  design: ExperimentDesign;
  /**
   * "unit" (default): `units` are units of assignment. "request": the experiment was randomised per request
   * (no unit ids anywhere) and each entry of `units` is one request; only changes how SRM is labelled.
   */
  unitKind?: "unit" | "request";
}

/** Tuning point of the confidence sequence when a sequential design has no planned size. */
export const DEFAULT_SEQUENTIAL_TUNING_UNITS = 10_000;
/** Fewer latency samples than this and p95 is neither compared nor judged against its guardrail. */
export const MIN_SAMPLES_FOR_P95 = 20;

// ---------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------

export interface ArmStats {
  arm: number;
  name: string;
  isControl: boolean;
  units: number;
  /** requests with a unit id (the analysed population) */
  requests: number;
  unstickyRequests: number;
  latency: {
    /** successful requests */
    count: number;
    /** units with at least one successful request */
    units: number;
    meanMs: number;
    /** delta-method interval over units */
    meanCi: Interval;
    p50Ms: number;
    p95Ms: number;
    /** Woodruff interval over units */
    p95Ci: Interval;
    /** percentiles are exact order statistics of the raw samples (always true since per-unit analysis) */
    exactPercentiles: boolean;
  } | null;
  /** Wilson interval on the effective sample size (requests / design effect) */
  errorRate: { errors: number; requests: number; rate: number; ci: Interval };
  accuracy: {
    correct: number;
    total: number;
    /** units with labelled feedback */
    units: number;
    rate: number;
    /** Wilson interval on the effective sample size: exactly Wilson's when each unit has one label */
    ci: Interval;
    /** variance inflation from clustering (1: none) */
    designEffect: number;
  } | null;
  /** requests without a unit id: reported apart, never part of the estimates above */
  unsticky: {
    requests: number;
    errors: number;
    latencyMeanMs: number | null;
    accuracy: { correct: number; total: number; rate: number } | null;
  } | null;
}

export interface MetricComparison {
  /**
   * "delta-method" (ratio metrics over units, Welch-type t) and "woodruff" (p95 over units) for fixed
   * designs; "confidence-sequence" (always valid, from the same per-unit variances) for sequential ones
   */
  method: "delta-method" | "woodruff" | "confidence-sequence";
  control: number;
  treatment: number;
  /** treatment - control */
  difference: number;
  /** difference / control */
  relativeDifference: number;
  ci: Interval;
  pValue: number;
  /** the alpha used (Bonferroni-adjusted with more than one treatment arm) */
  alpha: number;
  significant: boolean;
}

export interface ArmComparison {
  arm: number;
  name: string;
  /** mean latency (ms) */
  latency: MetricComparison | null;
  /** p95 latency (ms); reported, not used for the decision (the p95 guardrail is) */
  p95: MetricComparison | null;
  accuracy: MetricComparison | null;
  /** (p50_treatment - p50_control) / p50_control */
  p50RelativeChange: number | null;
}

export interface NonInferiorityCheck {
  arm: number;
  name: string;
  basis: "sla" | "control";
  threshold: number;
  estimate: number;
  lowerBound: number;
  pValue: number;
  nonInferior: boolean;
}

export interface GuardrailBreach {
  arm: number;
  name: string;
  metric: "errorRate" | "p95Ms";
  value: number;
  limit: number;
  /** true when even the lower confidence bound (over units) is above the limit */
  confident: boolean;
}

export type DecisionAction =
  | "promote"
  | "keep-control"
  | "keep-collecting"
  | "no-difference"
  | "untrustworthy";

export interface ExperimentResults {
  design: ExperimentDesign;
  primaryMetric: PrimaryMetric;
  alpha: number;
  /** what one independent observation is: a unit of assignment, or a request (randomised per request) */
  analysisUnit: "unit" | "request";
  progress: { units: number; plannedUnits: number | null; complete: boolean };
  arms: ArmStats[];
  comparisons: ArmComparison[];
  /** on units (on requests when the experiment was randomised per request) */
  srm: SampleRatioCheck & { basis: "units" | "requests"; observed: number[] };
  nonInferiority: NonInferiorityCheck[];
  guardrailBreaches: GuardrailBreach[];
  decision: { action: DecisionAction; arm: number | null };
  recommendation: string;
}

// ---------------------------------------------------------------------------------------------------------
// Per-arm summaries
// ---------------------------------------------------------------------------------------------------------

function validate(config: AnalysisConfig, arms: number): void {
  const k = config.arms.length;
  if (k < 2) throw new RangeError("arms: an experiment needs at least two arms");
  if (arms !== k) throw new RangeError(`data: expected ${k} arms of data, got ${arms}`);
  if (!Number.isInteger(config.controlArm) || config.controlArm < 0 || config.controlArm >= k) {
    throw new RangeError(`controlArm: must be an arm index in [0, ${k - 1}], got ${config.controlArm}`);
  }
  if (!(config.alpha > 0 && config.alpha < 0.5))
    throw new RangeError(`alpha: must be in (0, 0.5), got ${config.alpha}`);
  const planned = config.design.plannedUnits;
  if (planned !== undefined && !(Number.isInteger(planned) && planned > 0)) {
    throw new RangeError(`design.plannedUnits: must be a positive integer, got ${planned}`);
  }
  if (config.slaMinAccuracy !== undefined && !(config.slaMinAccuracy > 0 && config.slaMinAccuracy < 1)) {
    throw new RangeError(`slaMinAccuracy: must be in (0, 1), got ${config.slaMinAccuracy}`);
  }
}

/** Everything the comparisons need about one arm, computed once. */
interface ArmSummary {
  units: number;
  requests: number;
  errors: RatioSummary;
  latency: RatioSummary;
  accuracy: RatioSummary;
  /** per unit, its latency samples sorted ascending (units with none left out) */
  latencyByUnit: (readonly number[])[];
  latencyCount: number;
  /** every latency sample, sorted ascending: shared by p50 and every p95 */
  sortedLatency: ArrayLike<number>;
  /** Woodruff p95 over units at a given alpha, memoised (the arm's interval and the comparisons share it) */
  p95: (alpha: number) => ClusteredQuantile;
  /** per-unit means (each unit weighs 1): what the comparisons test */
  latencyUnitMean: RatioSummary;
  accuracyUnitMean: RatioSummary;
}

/**
 * One arm's summary from its per-unit aggregates: linear in the units (plus the pooled latency merge), never in
 * the requests, so analysing a growing experiment at every look stays cheap. Every ratio metric is the
 * delta-method summary of `ratioSummary` (two passes: sums, then residuals around the ratio), written out over
 * the units directly rather than through per-metric arrays: a look at a 2,000-unit experiment visits each unit
 * twice instead of allocating and walking a dozen arrays. test/node/experiments-traffic.test.ts checks the
 * result against `ratioSummary` on the same units.
 */
function summarizeArm(t: ArmTraffic): ArmSummary {
  const all = t.units;
  // pass 1: sums. e: errors / requests; l: Σ latency / successful requests; a: correct / labelled;
  // lm, am: per-unit means (each unit weighs 1) of latency and accuracy
  let n = 0;
  let eX = 0;
  let eY = 0;
  let lN = 0;
  let lX = 0;
  let lY = 0;
  let aN = 0;
  let aX = 0;
  let aY = 0;
  let lmX = 0;
  let lmXX = 0;
  let amX = 0;
  let amXX = 0;
  const latencyByUnit: (readonly number[])[] = [];
  for (let i = 0; i < all.length; i++) {
    const u = all[i];
    if (u.requests === 0) continue;
    n++;
    eX += u.errors;
    eY += u.requests;
    const k = u.sortedLatencyMs.length;
    if (k > 0) {
      lN++;
      lX += u.latencySum;
      lY += k;
      const m = u.latencySum / k;
      lmX += m;
      lmXX += m * m;
      latencyByUnit.push(u.sortedLatencyMs);
    }
    if (u.labelled > 0) {
      aN++;
      aX += u.correct;
      aY += u.labelled;
      const m = u.correct / u.labelled;
      amX += m;
      amXX += m * m;
    }
  }
  // pass 2: residual sums of squares around each ratio
  const eR = eX / eY;
  const lR = lX / lY;
  const aR = aX / aY;
  const lmR = lmX / lN;
  const amR = amX / aN;
  let eSs = 0;
  let lSs = 0;
  let aSs = 0;
  let lmSs = 0;
  let amSs = 0;
  for (let i = 0; i < all.length; i++) {
    const u = all[i];
    if (u.requests === 0) continue;
    const de = u.errors - eR * u.requests;
    eSs += de * de;
    const k = u.sortedLatencyMs.length;
    if (k > 0) {
      const dl = u.latencySum - lR * k;
      lSs += dl * dl;
      const dm = u.latencySum / k - lmR;
      lmSs += dm * dm;
    }
    if (u.labelled > 0) {
      const da = u.correct - aR * u.labelled;
      aSs += da * da;
      const dm = u.correct / u.labelled - amR;
      amSs += dm * dm;
    }
  }
  // request-level residual sums of squares (for the design effects), as `ratioSummary` computes them
  const summary = (units: number, x: number, y: number, ss: number, requestSs: number) =>
    units === 0 ? EMPTY_RATIO : ratioFromSums(units, x, y, ss, requestSs);
  const sortedLatency = t.sortedLatency();
  const p95ByAlpha = new Map<number, ClusteredQuantile>();
  const p95 = (alpha: number) => {
    let q = p95ByAlpha.get(alpha);
    if (!q) {
      q = clusteredQuantileSorted(latencyByUnit, sortedLatency, 0.95, alpha);
      p95ByAlpha.set(alpha, q);
    }
    return q;
  };
  return {
    units: n,
    requests: eY,
    errors: summary(n, eX, eY, eSs, eY * eR * (1 - eR)),
    latency: summary(lN, lX, lY, lSs, t.latencySumSquares - lY * lR * lR),
    accuracy: summary(aN, aX, aY, aSs, aY * aR * (1 - aR)),
    latencyByUnit,
    latencyCount: sortedLatency.length,
    sortedLatency,
    p95,
    latencyUnitMean: summary(lN, lmX, lN, lmSs, lmXX - lN * lmR * lmR),
    accuracyUnitMean: summary(aN, amX, aN, amSs, amXX - aN * amR * amR),
  };
}

function percent(x: number): string {
  return `${Math.round(Math.abs(x) * 100)}%`;
}

function points(x: number): string {
  return `${(Math.abs(x) * 100).toFixed(1)} pts`;
}

function describeBreach(b: GuardrailBreach): string {
  return b.metric === "errorRate"
    ? `arm ${b.name} breaches the error-rate guardrail (${(b.value * 100).toFixed(1)}% > ${(b.limit * 100).toFixed(1)}%)`
    : `arm ${b.name} breaches the p95 guardrail (${Math.round(b.value)} ms > ${b.limit} ms)`;
}

function formatP(p: number): string {
  return p < 0.001 ? "p < 0.001" : `p = ${p.toFixed(3)}`;
}

/** A comparison's estimates, before its interval and test. */
type ComparisonEstimates = Pick<
  MetricComparison,
  "control" | "treatment" | "difference" | "relativeDifference" | "alpha"
>;

function estimates(control: number, treatment: number, alpha: number): ComparisonEstimates {
  return {
    control,
    treatment,
    difference: treatment - control,
    relativeDifference: control !== 0 ? (treatment - control) / control : Number.NaN,
    alpha,
  };
}

/**
 * Interval and test for one metric's difference: with a sequential design, the always-valid confidence
 * sequence (normal mixture, from the difference's per-unit `variance`, tuned at `tuningScale` times the current
 * size); otherwise the metric's fixed-horizon test.
 */
function compareMetric(
  est: ComparisonEstimates,
  design: { sequential: boolean; tuningScale: number; variance: number },
  fixedTest: () => Pick<MetricComparison, "method" | "ci" | "pValue">,
): MetricComparison {
  const { alpha } = est;
  if (design.sequential) {
    const v = design.variance;
    const cs = normalMixtureConfidenceSequence(
      est.difference,
      v,
      alpha,
      mixtureVarianceFor(v * design.tuningScale, alpha),
    );
    return {
      ...est,
      method: "confidence-sequence",
      ci: cs.ci,
      pValue: cs.pValue,
      significant: cs.pValue < alpha,
    };
  }
  const f = fixedTest();
  return { ...est, method: f.method, ci: f.ci, pValue: f.pValue, significant: f.pValue < alpha };
}

function compareRatio(
  c: RatioSummary,
  t: RatioSummary,
  alpha: number,
  design: { sequential: boolean; tuningScale: number },
): MetricComparison | null {
  if (c.units < 2 || t.units < 2) return null;
  // No spread between units yet (e.g. every unit so far all correct): no interval can be supported, so no
  // comparison, rather than a zero-width interval that calls any difference significant.
  const variance = c.variance + t.variance;
  if (!(variance > 0)) return null;
  return compareMetric(estimates(c.estimate, t.estimate, alpha), { ...design, variance }, () => {
    const r = ratioDifferenceTest(c, t, alpha);
    return { method: "delta-method", ci: r.ci, pValue: r.pValue };
  });
}

function compareP95(
  c: ArmSummary,
  t: ArmSummary,
  alpha: number,
  design: { sequential: boolean; tuningScale: number },
): MetricComparison | null {
  const enough = (a: ArmSummary) => a.latencyCount >= MIN_SAMPLES_FOR_P95 && a.latencyByUnit.length >= 2;
  if (!enough(c) || !enough(t)) return null;
  const qc = c.p95(alpha);
  const qt = t.p95(alpha);
  const variance = qc.standardError ** 2 + qt.standardError ** 2;
  if (!(variance > 0)) return null; // as in compareRatio: no spread, no comparison
  return compareMetric(estimates(qc.estimate, qt.estimate, alpha), { ...design, variance }, () => {
    const d = qt.estimate - qc.estimate;
    const se = Math.sqrt(variance);
    const z = normalQuantile(1 - alpha / 2);
    return {
      method: "woodruff",
      ci: [d - z * se, d + z * se],
      pValue: Math.min(1, 2 * normalSf(Math.abs(d) / se)),
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------------------------------------

/** Analyses per-unit summaries of each arm's traffic (each unit checked; the results route's input). */
export function analyzeExperiment(config: AnalysisConfig, data: readonly ArmData[]): ExperimentResults {
  validate(config, data.length);
  return analyzeTraffic(
    config,
    data.map((d, i) => ArmTraffic.fromUnits(d.units, d.unsticky, `data[${i}].units`)),
  );
}

/**
 * Analyses each arm's traffic as aggregated so far. A caller that watches a growing experiment (a sequential
 * design looked at after every batch of requests) keeps one `ArmTraffic` per arm, adds requests as they come
 * and calls this at each look: the cost of a look is linear in the units, not in all requests so far.
 */
export function analyzeTraffic(config: AnalysisConfig, traffic: readonly ArmTraffic[]): ExperimentResults {
  validate(config, traffic.length);
  const { alpha, controlArm, design } = config;
  const names = config.arms.map((a) => a.name);
  const treatmentArms = config.arms.map((_, i) => i).filter((i) => i !== controlArm);
  const comparisonAlpha = alpha / treatmentArms.length;
  const sequential = design.kind === "sequential";
  const summaries = traffic.map(summarizeArm);

  // --- per-arm statistics
  const arms: ArmStats[] = traffic.map((d, i) => {
    const s = summaries[i];
    const p95 = s.latencyCount > 0 ? s.p95(alpha) : null;
    const meanHalf =
      s.latency.units >= 2 ? normalQuantile(1 - alpha / 2) * Math.sqrt(s.latency.variance) : Number.NaN;
    const u = d.unsticky;
    return {
      arm: i,
      name: names[i],
      isControl: i === controlArm,
      units: s.units,
      requests: s.requests,
      unstickyRequests: u?.requests ?? 0,
      latency: p95
        ? {
            count: s.latencyCount,
            units: s.latencyByUnit.length,
            meanMs: s.latency.estimate,
            meanCi: [s.latency.estimate - meanHalf, s.latency.estimate + meanHalf],
            p50Ms: sortedPercentile(s.sortedLatency, 50),
            p95Ms: p95.estimate,
            p95Ci: p95.ci,
            exactPercentiles: true,
          }
        : null,
      errorRate: {
        errors: s.errors.numerator,
        requests: s.requests,
        rate: s.requests > 0 ? s.errors.estimate : 0,
        ci: clusteredWilsonInterval(s.errors, alpha),
      },
      accuracy:
        s.accuracy.denominator > 0
          ? {
              correct: s.accuracy.numerator,
              total: s.accuracy.denominator,
              units: s.accuracy.units,
              rate: s.accuracy.estimate,
              ci: clusteredWilsonInterval(s.accuracy, alpha),
              designEffect: s.accuracy.designEffect,
            }
          : null,
      unsticky:
        u && u.requests > 0
          ? {
              requests: u.requests,
              errors: u.errors,
              latencyMeanMs:
                u.latencyMs.length > 0 ? u.latencyMs.reduce((a, b) => a + b, 0) / u.latencyMs.length : null,
              accuracy:
                u.labelled > 0
                  ? { correct: u.correct, total: u.labelled, rate: u.correct / u.labelled }
                  : null,
            }
          : null,
    };
  });

  // --- progress
  const totalUnits = summaries.reduce((n, s) => n + s.units, 0);
  const plannedUnits = design.plannedUnits ?? null;
  const complete = plannedUnits !== null && totalUnits >= plannedUnits;
  // Where the confidence sequences are tuned to be tightest; fixed for the life of the experiment.
  const tuningUnits = plannedUnits ?? DEFAULT_SEQUENTIAL_TUNING_UNITS;
  const tuningScale = totalUnits > 0 ? totalUnits / tuningUnits : 1;
  const seq = { sequential, tuningScale };

  // --- sample-ratio mismatch on units
  const analysisUnit = config.unitKind ?? "unit";
  const observed = summaries.map((s) => s.units);
  const srm = {
    ...sampleRatioMismatch(
      observed,
      config.arms.map((a) => a.weight),
    ),
    basis: analysisUnit === "request" ? "requests" : "units",
    observed,
  } as const;

  // --- comparisons vs control
  const control = summaries[controlArm];
  const comparisons: ArmComparison[] = treatmentArms.map((i) => {
    const t = summaries[i];
    const cp50 = arms[controlArm].latency?.p50Ms;
    const tp50 = arms[i].latency?.p50Ms;
    return {
      arm: i,
      name: names[i],
      latency: compareRatio(control.latencyUnitMean, t.latencyUnitMean, comparisonAlpha, seq),
      p95: compareP95(control, t, comparisonAlpha, seq),
      accuracy: compareRatio(control.accuracyUnitMean, t.accuracyUnitMean, comparisonAlpha, seq),
      p50RelativeChange: cp50 !== undefined && tp50 !== undefined && cp50 > 0 ? (tp50 - cp50) / cp50 : null,
    };
  });

  // --- non-inferiority of accuracy: against the SLA (every arm), and against control when a margin is set
  const margin = config.nonInferiorityMargin ?? 0;
  const nonInferiority: NonInferiorityCheck[] = [];
  summaries.forEach((s, i) => {
    const acc = s.accuracy;
    if (acc.denominator === 0) return;
    if (config.slaMinAccuracy !== undefined) {
      const threshold = config.slaMinAccuracy - margin;
      if (sequential) {
        // always-valid version: the lower end of the confidence sequence for the accuracy must clear θ
        const p = acc.estimate;
        const v = Math.max(
          Number.isFinite(acc.variance) ? acc.variance : 0,
          (p * (1 - p)) / acc.denominator,
          1e-9,
        );
        const cs = normalMixtureConfidenceSequence(
          p,
          v,
          alpha,
          mixtureVarianceFor(v * tuningScale, alpha),
          threshold,
        );
        nonInferiority.push({
          arm: i,
          name: names[i],
          basis: "sla",
          threshold,
          estimate: p,
          lowerBound: cs.ci[0],
          pValue: cs.ci[0] > threshold ? cs.pValue : 1,
          nonInferior: cs.ci[0] > threshold,
        });
      } else {
        const r = clusteredProportionNonInferiority(acc, threshold, alpha);
        nonInferiority.push({ arm: i, name: names[i], basis: "sla", ...r });
      }
    }
    if (margin > 0 && i !== controlArm && control.accuracy.units >= 2 && acc.units >= 2) {
      // one-sided at comparisonAlpha: the lower end of the two-sided 1 - 2·alpha interval must clear -margin
      const r = ratioDifferenceTest(
        control.accuracyUnitMean,
        s.accuracyUnitMean,
        2 * comparisonAlpha,
        -margin,
      );
      const lowerBound = r.ci[0];
      const oneSided = r.statistic > 0 ? r.pValue / 2 : 1 - r.pValue / 2;
      nonInferiority.push({
        arm: i,
        name: names[i],
        basis: "control",
        threshold: -margin,
        estimate: r.difference,
        lowerBound,
        pValue: oneSided,
        nonInferior: lowerBound > -margin,
      });
    }
  });

  // --- guardrails
  const guardrailBreaches: GuardrailBreach[] = [];
  const { maxErrorRate, maxP95Ms } = config.guardrails ?? {};
  arms.forEach((a) => {
    if (maxErrorRate !== undefined && a.requests > 0 && a.errorRate.rate > maxErrorRate) {
      guardrailBreaches.push({
        arm: a.arm,
        name: a.name,
        metric: "errorRate",
        value: a.errorRate.rate,
        limit: maxErrorRate,
        confident: a.errorRate.ci[0] > maxErrorRate,
      });
    }
    if (
      maxP95Ms !== undefined &&
      a.latency &&
      a.latency.count >= MIN_SAMPLES_FOR_P95 &&
      a.latency.p95Ms > maxP95Ms
    ) {
      guardrailBreaches.push({
        arm: a.arm,
        name: a.name,
        metric: "p95Ms",
        value: a.latency.p95Ms,
        limit: maxP95Ms,
        confident: a.latency.p95Ci[0] > maxP95Ms,
      });
    }
  });

  const results: Omit<ExperimentResults, "decision" | "recommendation"> = {
    design,
    primaryMetric: config.primaryMetric,
    alpha,
    analysisUnit,
    progress: { units: totalUnits, plannedUnits, complete },
    arms,
    comparisons,
    srm,
    nonInferiority,
    guardrailBreaches,
  };
  return { ...results, ...decide(config, results) };
}

// ---------------------------------------------------------------------------------------------------------
// Decision
// ---------------------------------------------------------------------------------------------------------

function decide(
  config: AnalysisConfig,
  r: Omit<ExperimentResults, "decision" | "recommendation">,
): Pick<ExperimentResults, "decision" | "recommendation"> {
  const control = r.arms[config.controlArm];
  const say = (action: DecisionAction, arm: number | null, recommendation: string) => ({
    decision: { action, arm },
    recommendation,
  });

  const idle = r.arms.find((a) => a.requests === 0);
  if (idle) return say("keep-collecting", null, `keep collecting: no traffic yet on arm ${idle.name}`);

  if (r.srm.mismatch) {
    const split = r.srm.observed.join("/");
    return say(
      "untrustworthy",
      null,
      `SRM detected: results untrustworthy (${r.srm.basis} split ${split}, ${formatP(r.srm.pValue)}); fix assignment and restart`,
    );
  }

  if (r.design.kind === "fixed" && !r.progress.complete) {
    return say(
      "keep-collecting",
      null,
      `keep collecting: ${r.progress.units} of ${r.progress.plannedUnits} planned units`,
    );
  }

  const hasFeedback = r.arms.every((a) => a.accuracy !== null);
  if (config.primaryMetric === "accuracy" && !hasFeedback) {
    return say(
      "keep-collecting",
      null,
      "keep collecting: accuracy is the primary metric and some arms have no feedback yet",
    );
  }

  const niRequired = r.nonInferiority.length > 0 || config.slaMinAccuracy !== undefined;
  const nonInferior = (arm: number) => {
    const checks = r.nonInferiority.filter((c) => c.arm === arm);
    return checks.length > 0 && checks.every((c) => c.nonInferior);
  };

  interface Candidate {
    arm: number;
    score: number;
    reason: string;
  }
  const candidates: Candidate[] = [];
  const losers: string[] = [];
  for (const c of r.comparisons) {
    const faster = c.latency?.significant === true && c.latency.difference < 0;
    const slower = c.latency?.significant === true && c.latency.difference > 0;
    const moreAccurate = c.accuracy?.significant === true && c.accuracy.difference > 0;
    const lessAccurate = c.accuracy?.significant === true && c.accuracy.difference < 0;
    const speed =
      c.p50RelativeChange !== null && c.p50RelativeChange < 0
        ? `${percent(c.p50RelativeChange)} faster (p50)`
        : `${percent(c.latency?.relativeDifference ?? 0)} faster (mean)`;
    const accuracyOk = niRequired ? nonInferior(c.arm) : !lessAccurate;
    const breaches = r.guardrailBreaches.filter((b) => b.arm === c.arm);
    if (breaches.length > 0) {
      losers.push(breaches.map(describeBreach).join("; "));
      continue;
    }
    if (config.primaryMetric === "accuracy") {
      if (moreAccurate && c.accuracy) {
        candidates.push({
          arm: c.arm,
          score: 1 + c.accuracy.difference,
          reason: `arm ${c.name} is more accurate (+${points(c.accuracy.difference)}, ${formatP(c.accuracy.pValue)})`,
        });
      } else if (lessAccurate && c.accuracy) {
        losers.push(`arm ${c.name} is less accurate (-${points(c.accuracy.difference)})`);
      } else if (faster && accuracyOk && c.latency) {
        candidates.push({
          arm: c.arm,
          score: -c.latency.relativeDifference,
          reason: `arm ${c.name} is non-inferior in accuracy and ${speed}`,
        });
      }
    } else {
      if (faster && accuracyOk && !lessAccurate && c.latency) {
        const accuracyNote = niRequired ? "non-inferior in accuracy and " : "";
        candidates.push({
          arm: c.arm,
          score: -c.latency.relativeDifference,
          reason: `arm ${c.name} is ${accuracyNote}${speed}`,
        });
      } else if (faster && lessAccurate && c.accuracy) {
        losers.push(`arm ${c.name} is ${speed} but less accurate (-${points(c.accuracy.difference)})`);
      } else if (faster) {
        losers.push(`arm ${c.name} is ${speed} but not shown non-inferior in accuracy`);
      } else if (slower && c.latency) {
        losers.push(`arm ${c.name} is ${percent(c.latency.relativeDifference)} slower (mean)`);
      }
    }
  }

  if (candidates.length > 0) {
    const best = candidates.reduce((a, b) => (b.score > a.score ? b : a));
    return say("promote", best.arm, `${best.reason}: promote ${r.arms[best.arm].name}`);
  }
  const why = losers.length > 0 ? ` (${losers.join("; ")})` : "";
  if (losers.length > 0) {
    return say("keep-control", config.controlArm, `keep ${control.name}${why}`);
  }
  if (r.design.kind === "sequential" && !r.progress.complete) {
    const of =
      r.progress.plannedUnits !== null
        ? ` (${r.progress.units} of ${r.progress.plannedUnits} planned units)`
        : "";
    return say(
      "keep-collecting",
      null,
      `keep collecting: no difference detected yet${of}; intervals are always valid`,
    );
  }
  return say("no-difference", config.controlArm, `no difference detected: keep ${control.name}`);
}
