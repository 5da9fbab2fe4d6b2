/**
 * The live-feedback rule of routing (docs/routing-evidence.md), as pure functions: when a variant's labelled
 * live traffic demotes it. Feedback only ever demotes: clients choose which requests they label, so live
 * accuracy is evidence against a variant, never the proof that qualifies one (that stays the eval split's).
 *
 * A variant's feedback counts once it has at least LIVE_MIN_LABELLED labelled requests from LIVE_MIN_UNITS
 * distinct units. Its accuracy interval is cluster-robust by unit: requests of one unit (user, API key) are
 * correlated, so the Wilson interval is taken on the effective sample size N / deff, deff from the per-unit
 * delta-method variance (`clusteredWilsonInterval`, src/gateway/experiments/stats.ts). A variant is demoted
 * when its one-sided upper bound is below
 * - the SLA floor (the applied minimum accuracy, when above 0), or
 * - with a non-inferiority margin δ, the reference minus δ: the reference is the most accurate active variant's
 *   one-sided lower bound, from its own live feedback when that counts, else from its eval split (Wilson on the
 *   split's examples; that assumes live traffic is no harder than the split, see the docs).
 * Every one-sided bound used is at (1 − confidence)/k, k the number of bounds (Bonferroni), so the chance of
 * demoting any variant wrongly is at most 1 − confidence.
 */
import {
  clusteredWilsonInterval,
  EMPTY_RATIO,
  type Interval,
  type RatioSummary,
  ratioFromSums,
  wilsonInterval,
} from "./experiments/stats";

/** Fewest labelled requests of a variant before its feedback counts. */
export const LIVE_MIN_LABELLED = 200;
/** Fewest distinct units (unit id, or the request id when the request had none) among them. */
export const LIVE_MIN_UNITS = 20;

/**
 * A variant's labelled live traffic, as per-unit sufficient statistics: y_u labelled requests and x_u correct
 * ones in unit u. The sums of squares and products are all the delta-method variance needs, so the aggregate
 * query returns one row per variant, however many units there are.
 */
export interface LiveFeedback {
  units: number;
  /** Σ y_u, Σ x_u */
  labelled: number;
  correct: number;
  /** Σ x_u², Σ x_u·y_u, Σ y_u² */
  correctSq: number;
  correctLabelled: number;
  labelledSq: number;
  /** Labelled requests that had no unit id (each is its own unit above); reported apart. */
  withoutUnit?: number;
  /** Labelled requests by source: served in an experiment, or outside one (SLA-routed or pinned). */
  fromExperiments?: number;
  fromRouted?: number;
}

/**
 * The ratio summary (estimate, delta-method variance, design effect) of `ratioSummary` in stats.ts, from the
 * per-unit moments instead of the per-unit arrays: Σ_u (x_u − R y_u)² = Σx² − 2R Σxy + R² Σy².
 */
export function liveSummary(f: LiveFeedback): RatioSummary {
  for (const [name, value] of Object.entries(f)) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`live feedback: ${name} is ${value}`);
  }
  if (f.correct > f.labelled) throw new RangeError("live feedback: correct exceeds labelled");
  if (f.units === 0 || f.labelled === 0) return EMPTY_RATIO;
  const r = f.correct / f.labelled;
  // Integer sums: exact in a double up to 2^53; the difference is clamped only against rounding.
  const ss = Math.max(0, f.correctSq - 2 * r * f.correctLabelled + r * r * f.labelledSq);
  return ratioFromSums(f.units, f.correct, f.labelled, ss, f.labelled * r * (1 - r));
}

export interface LiveMinimum {
  labelled: number;
  units: number;
}

export const LIVE_MINIMUM: LiveMinimum = { labelled: LIVE_MIN_LABELLED, units: LIVE_MIN_UNITS };

export function liveCounts(f: LiveFeedback | undefined, minimum: LiveMinimum = LIVE_MINIMUM): boolean {
  return f !== undefined && f.labelled >= minimum.labelled && f.units >= minimum.units;
}

/** What routing knows about one candidate's live feedback, as `/route` shows it. */
export interface LiveEvidence {
  labelled: number;
  units: number;
  correct: number;
  /** correct / labelled */
  accuracy: number;
  /** Labelled requests without a unit id (each counted as its own unit), reported apart. */
  withoutUnit: number;
  /** Labelled requests served in an experiment, and outside one (SLA-routed or pinned, by feedback token). */
  sources: { experiments: number; routed: number };
  /** Only requests served within this many days count (absent: no window given). */
  windowDays?: number;
  /** Whether it reached the minimum (else it is shown, and nothing else). */
  counts: boolean;
  minimum: LiveMinimum;
  /** Counting only: the cluster-robust interval, two-sided at `alpha` (each bound one-sided at alpha/2). */
  interval?: Interval;
  alpha?: number;
  /** Counting only: the number of one-sided bounds the level is Bonferroni-corrected over. */
  bonferroni?: number;
  designEffect?: number;
  /** Counting only: the demotion test against the SLA floor and, with a margin, against the reference. */
  floor?: { threshold: number; below: boolean };
  margin?: {
    against: number;
    /** The reference's lower bound, and where it came from. */
    reference: number;
    referenceFrom: "live" | "eval";
    threshold: number;
    below: boolean;
  };
  demoted: boolean;
}

export interface LiveRuleInput {
  /** Per active version: its live feedback (absent: none). */
  feedback: ReadonlyMap<number, LiveFeedback>;
  /** The active versions routing compares. */
  versions: readonly number[];
  /** The applied minimum accuracy (0: no floor). */
  minAccuracy: number;
  margin: number | null;
  confidence: number;
  /** The most accurate active variant (by eval) and its eval-split counts, when a margin applies. */
  best?: { version: number; evalCorrect: number; evalSize: number };
  minimum?: LiveMinimum;
  /** The window the feedback was read over, in days (shown, not applied: the query applies it). */
  windowDays?: number;
}

/** The live verdict of every active version that has feedback (counting or not). */
export function liveRule(input: LiveRuleInput): Map<number, LiveEvidence> {
  const minimum = input.minimum ?? LIVE_MINIMUM;
  const { margin, best } = input;
  const counting = input.versions.filter((v) => liveCounts(input.feedback.get(v), minimum));
  const floorApplies = input.minAccuracy > 0;
  const marginCandidates = margin !== null && best ? counting.filter((v) => v !== best.version) : [];
  // One upper bound per counting variant (floor or margin test), plus the reference's lower bound.
  const upperBounds = counting.filter((v) => floorApplies || marginCandidates.includes(v)).length;
  const k = upperBounds + (marginCandidates.length > 0 ? 1 : 0);
  const oneSided = k > 0 ? (1 - input.confidence) / k : 1 - input.confidence;
  const alpha = 2 * oneSided;

  let reference: { value: number; from: "live" | "eval" } | undefined;
  if (best && marginCandidates.length > 0) {
    const own = input.feedback.get(best.version);
    reference = counting.includes(best.version)
      ? { value: clusteredWilsonInterval(liveSummary(own!), alpha)[0], from: "live" }
      : { value: wilsonInterval(best.evalCorrect, best.evalSize, alpha)[0], from: "eval" };
  }

  const out = new Map<number, LiveEvidence>();
  for (const version of input.versions) {
    const f = input.feedback.get(version);
    if (!f || f.labelled === 0) continue;
    const base = {
      labelled: f.labelled,
      units: f.units,
      correct: f.correct,
      accuracy: f.correct / f.labelled,
      withoutUnit: f.withoutUnit ?? 0,
      sources: { experiments: f.fromExperiments ?? 0, routed: f.fromRouted ?? 0 },
      ...(input.windowDays !== undefined ? { windowDays: input.windowDays } : {}),
      minimum,
    };
    if (!counting.includes(version)) {
      out.set(version, { ...base, counts: false, demoted: false });
      continue;
    }
    const summary = liveSummary(f);
    const interval = clusteredWilsonInterval(summary, alpha);
    const upper = interval[1];
    const floor = floorApplies
      ? { threshold: input.minAccuracy, below: upper < input.minAccuracy }
      : undefined;
    const marginTest =
      reference && best && margin !== null && version !== best.version
        ? {
            against: best.version,
            reference: reference.value,
            referenceFrom: reference.from,
            threshold: reference.value - margin,
            below: upper < reference.value - margin,
          }
        : undefined;
    out.set(version, {
      ...base,
      counts: true,
      interval,
      alpha,
      bonferroni: k,
      designEffect: summary.designEffect,
      ...(floor ? { floor } : {}),
      ...(marginTest ? { margin: marginTest } : {}),
      demoted: (floor?.below ?? false) || (marginTest?.below ?? false),
    });
  }
  return out;
}
