/**
 * Experiment analysis: per-arm aggregates + experiment design -> typed results and a recommendation in plain
 * words. Pure and runtime-agnostic (runs in the Worker behind GET /v1/experiments/:id/results).
 *
 * Guarantees that the tests check:
 * - With no true difference (A/A), "promote" is recommended with probability <= alpha. A promotion needs a
 *   significant improvement in a two-sided test at alpha, which happens with probability alpha/2 under the
 *   null; there are at most two such paths (more accurate, or non-inferior and faster), so together <= alpha.
 *   With several treatment arms the comparisons use a Bonferroni-adjusted alpha / (arms - 1).
 * - "Non-inferior and faster" is an intersection-union test (Berger 1982): both the non-inferiority test and
 *   the latency test must reject at alpha, so no multiplicity adjustment is needed between them.
 * - A fixed-horizon design gives no verdict before its planned units are reached (peeking at fixed-n tests
 *   inflates false positives); a sequential design uses always-valid confidence sequences instead and may
 *   stop at any look.
 *
 * Limitation, stated: latency and accuracy are analysed per request (per feedback item). Assignment is per
 * unit, so when units send many requests each, requests are correlated and the intervals are too narrow; the
 * unit-level (delta-method) analysis needs per-unit aggregates, which the event pipeline does not keep.
 */
import {
  histogramMoments,
  histogramQuantile,
  type LatencyHistogram,
  latencyHistogramFromSamples,
} from "./latency.ts";
import {
  differenceNonInferiority,
  differenceVariance,
  type Interval,
  type MeanSummary,
  mixtureVarianceFor,
  normalMixtureConfidenceSequence,
  percentile,
  proportionNonInferiority,
  type SampleRatioCheck,
  sampleRatioMismatch,
  summarize,
  twoProportionTest,
  welchTTest,
  wilsonInterval,
} from "./stats.ts";

// ---------------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------------

/** Latency of an arm's successful requests: raw per-request samples, or a mergeable aggregate. */
export type LatencyInput = LatencyHistogram | { samples: readonly number[] };

export interface ArmData {
  /** distinct units (sticky assignments) seen on the arm */
  units: number;
  /** requests from those units */
  requests: number;
  /** of `requests`, how many failed */
  errors: number;
  latency: LatencyInput;
  /** labelled feedback joined to the arm's requests */
  feedback: { correct: number; total: number };
  /** requests without a unit id, assigned at random; reported, never mixed into the unit-level analysis */
  unstickyRequests?: number;
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
}

/** Tuning point of the confidence sequence when a sequential design has no planned size. */
export const DEFAULT_SEQUENTIAL_TUNING_UNITS = 10_000;
/** Fewer latency samples than this and p95 is not judged against its guardrail. */
export const MIN_SAMPLES_FOR_P95 = 20;

// ---------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------

export interface ArmStats {
  arm: number;
  name: string;
  isControl: boolean;
  units: number;
  requests: number;
  unstickyRequests: number;
  latency: {
    count: number;
    meanMs: number;
    p50Ms: number;
    p95Ms: number;
    /** true for raw samples; false when percentiles come from the histogram (within 1%) */
    exactPercentiles: boolean;
  } | null;
  errorRate: { errors: number; requests: number; rate: number; ci: Interval };
  accuracy: { correct: number; total: number; rate: number; ci: Interval } | null;
}

export interface MetricComparison {
  /** "welch" and "two-proportion" for fixed designs, "confidence-sequence" (always valid) for sequential */
  method: "welch" | "two-proportion" | "confidence-sequence";
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
  /** true when even the lower confidence bound (error rate) is above the limit */
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
  progress: { units: number; plannedUnits: number | null; complete: boolean };
  arms: ArmStats[];
  comparisons: ArmComparison[];
  /** on units (on requests when no arm has sticky units) */
  srm: SampleRatioCheck & { basis: "units" | "requests"; observed: number[] };
  nonInferiority: NonInferiorityCheck[];
  guardrailBreaches: GuardrailBreach[];
  decision: { action: DecisionAction; arm: number | null };
  recommendation: string;
}

// ---------------------------------------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------------------------------------

function validate(config: AnalysisConfig, data: readonly ArmData[]): void {
  const k = config.arms.length;
  if (k < 2) throw new RangeError("arms: an experiment needs at least two arms");
  if (data.length !== k) throw new RangeError(`data: expected ${k} arms of data, got ${data.length}`);
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
  data.forEach((d, i) => {
    for (const field of ["units", "requests", "errors"] as const) {
      if (!(Number.isInteger(d[field]) && d[field] >= 0)) {
        throw new RangeError(`data[${i}].${field}: must be an integer >= 0, got ${d[field]}`);
      }
    }
    if (d.errors > d.requests) throw new RangeError(`data[${i}].errors: exceeds requests`);
    if (!(d.feedback.correct >= 0 && d.feedback.correct <= d.feedback.total)) {
      throw new RangeError(`data[${i}].feedback: need 0 <= correct <= total`);
    }
  });
}

interface LatencyView {
  summary: MeanSummary;
  p50: number;
  p95: number;
  exact: boolean;
}

function latencyView(input: LatencyInput): LatencyView | null {
  if ("samples" in input) {
    if (input.samples.length === 0) return null;
    // validates the samples the same way the histogram does
    latencyHistogramFromSamples(input.samples);
    return {
      summary: summarize(input.samples),
      p50: percentile(input.samples, 50),
      p95: percentile(input.samples, 95),
      exact: true,
    };
  }
  if (input.count === 0) return null;
  return {
    summary: histogramMoments(input),
    p50: histogramQuantile(input, 0.5),
    p95: histogramQuantile(input, 0.95),
    exact: false,
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

/**
 * Interval and test for one metric's difference: with a sequential design, the always-valid confidence
 * sequence (normal mixture, from the difference's `variance`, tuned at `tuningScale` times the current size);
 * otherwise the metric's fixed-horizon test.
 */
function compareMetric(
  estimates: ComparisonEstimates,
  design: { sequential: boolean; tuningScale: number; variance: number },
  fixedTest: () => Pick<MetricComparison, "method" | "ci" | "pValue">,
): MetricComparison {
  const { alpha } = estimates;
  if (design.sequential) {
    const v = design.variance;
    const cs = normalMixtureConfidenceSequence(
      estimates.difference,
      v,
      alpha,
      mixtureVarianceFor(v * design.tuningScale, alpha),
    );
    return {
      ...estimates,
      method: "confidence-sequence",
      ci: cs.ci,
      pValue: cs.pValue,
      significant: cs.pValue < alpha,
    };
  }
  const f = fixedTest();
  return { ...estimates, method: f.method, ci: f.ci, pValue: f.pValue, significant: f.pValue < alpha };
}

export function analyzeExperiment(config: AnalysisConfig, data: readonly ArmData[]): ExperimentResults {
  validate(config, data);
  const { alpha, controlArm, design } = config;
  const names = config.arms.map((a) => a.name);
  const treatmentArms = config.arms.map((_, i) => i).filter((i) => i !== controlArm);
  const comparisonAlpha = alpha / treatmentArms.length;
  const sequential = design.kind === "sequential";

  // --- per-arm statistics
  const latency = data.map((d) => latencyView(d.latency));
  const arms: ArmStats[] = data.map((d, i) => {
    const lv = latency[i];
    return {
      arm: i,
      name: names[i],
      isControl: i === controlArm,
      units: d.units,
      requests: d.requests,
      unstickyRequests: d.unstickyRequests ?? 0,
      latency: lv
        ? {
            count: lv.summary.n,
            meanMs: lv.summary.mean,
            p50Ms: lv.p50,
            p95Ms: lv.p95,
            exactPercentiles: lv.exact,
          }
        : null,
      errorRate: {
        errors: d.errors,
        requests: d.requests,
        rate: d.requests > 0 ? d.errors / d.requests : 0,
        ci: wilsonInterval(d.errors, d.requests, alpha),
      },
      accuracy:
        d.feedback.total > 0
          ? {
              correct: d.feedback.correct,
              total: d.feedback.total,
              rate: d.feedback.correct / d.feedback.total,
              ci: wilsonInterval(d.feedback.correct, d.feedback.total, alpha),
            }
          : null,
    };
  });

  // --- progress
  const totalUnits = data.reduce((s, d) => s + d.units, 0);
  const plannedUnits = design.plannedUnits ?? null;
  const complete = plannedUnits !== null && totalUnits >= plannedUnits;
  // Where the confidence sequences are tuned to be tightest; fixed for the life of the experiment.
  const tuningUnits = plannedUnits ?? DEFAULT_SEQUENTIAL_TUNING_UNITS;
  const tuningScale = totalUnits > 0 ? totalUnits / tuningUnits : 1;

  // --- sample-ratio mismatch on units (requests when the experiment has no unit ids)
  const basis = totalUnits > 0 ? "units" : "requests";
  const observed = data.map((d) => (basis === "units" ? d.units : d.requests));
  const srm = {
    ...sampleRatioMismatch(
      observed,
      config.arms.map((a) => a.weight),
    ),
    basis,
    observed,
  } as const;

  // --- comparisons vs control
  const control = data[controlArm];
  const controlLatency = latency[controlArm];
  const comparisons: ArmComparison[] = treatmentArms.map((i) => {
    const d = data[i];
    const lv = latency[i];
    let latencyCmp: MetricComparison | null = null;
    if (controlLatency && lv && controlLatency.summary.n >= 2 && lv.summary.n >= 2) {
      const c = controlLatency.summary;
      const t = lv.summary;
      latencyCmp = compareMetric(
        {
          control: c.mean,
          treatment: t.mean,
          difference: t.mean - c.mean,
          relativeDifference: (t.mean - c.mean) / c.mean,
          alpha: comparisonAlpha,
        },
        { sequential, tuningScale, variance: t.variance / t.n + c.variance / c.n },
        () => {
          const w = welchTTest(c, t, comparisonAlpha);
          return { method: "welch", ci: w.ci, pValue: w.pValue };
        },
      );
    }

    let accuracyCmp: MetricComparison | null = null;
    if (control.feedback.total > 0 && d.feedback.total > 0) {
      const c = { successes: control.feedback.correct, n: control.feedback.total };
      const t = { successes: d.feedback.correct, n: d.feedback.total };
      const pc = c.successes / c.n;
      const pt = t.successes / t.n;
      accuracyCmp = compareMetric(
        {
          control: pc,
          treatment: pt,
          difference: pt - pc,
          relativeDifference: pc > 0 ? (pt - pc) / pc : Number.NaN,
          alpha: comparisonAlpha,
        },
        { sequential, tuningScale, variance: differenceVariance(c, t) },
        () => {
          const z = twoProportionTest(c, t, comparisonAlpha);
          return { method: "two-proportion", ci: z.ci, pValue: z.pValue };
        },
      );
    }

    const p50RelativeChange =
      controlLatency && lv && controlLatency.p50 > 0
        ? (lv.p50 - controlLatency.p50) / controlLatency.p50
        : null;
    return { arm: i, name: names[i], latency: latencyCmp, accuracy: accuracyCmp, p50RelativeChange };
  });

  // --- non-inferiority of accuracy: against the SLA (every arm), and against control when a margin is set
  const margin = config.nonInferiorityMargin ?? 0;
  const nonInferiority: NonInferiorityCheck[] = [];
  data.forEach((d, i) => {
    if (d.feedback.total === 0) return;
    if (config.slaMinAccuracy !== undefined) {
      const threshold = config.slaMinAccuracy - margin;
      if (sequential) {
        // always-valid version: the lower end of the confidence sequence for the accuracy must clear θ
        const p = d.feedback.correct / d.feedback.total;
        const v = Math.max(p * (1 - p), 1e-9) / d.feedback.total;
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
        const r = proportionNonInferiority(d.feedback.correct, d.feedback.total, threshold, alpha);
        nonInferiority.push({ arm: i, name: names[i], basis: "sla", ...r });
      }
    }
    if (margin > 0 && i !== controlArm && control.feedback.total > 0) {
      const r = differenceNonInferiority(
        { successes: control.feedback.correct, n: control.feedback.total },
        { successes: d.feedback.correct, n: d.feedback.total },
        margin,
        comparisonAlpha,
      );
      nonInferiority.push({ arm: i, name: names[i], basis: "control", ...r });
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
        confident: false,
      });
    }
  });

  const results: Omit<ExperimentResults, "decision" | "recommendation"> = {
    design,
    primaryMetric: config.primaryMetric,
    alpha,
    progress: { units: totalUnits, plannedUnits, complete },
    arms,
    comparisons,
    srm,
    nonInferiority,
    guardrailBreaches,
  };
  return { ...results, ...decide(config, data, results) };
}

// ---------------------------------------------------------------------------------------------------------
// Decision
// ---------------------------------------------------------------------------------------------------------

function decide(
  config: AnalysisConfig,
  data: readonly ArmData[],
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

  const hasFeedback = data.every((d) => d.feedback.total > 0);
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
