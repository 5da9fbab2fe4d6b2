/**
 * SLA-aware routing: which variant of a model serves a request. Pure (no I/O, no clock), so the policy can be
 * tested case by case and explained verbatim by `GET /v1/models/:model/route`.
 *
 * Policy: among the model's `active` variants keep those whose accuracy meets the task SLA (a request may demand
 * more with `x-sluice-min-accuracy`, never less) and, when the SLA sets one, whose measured p50 latency is within
 * its maximum; serve the lowest p50 latency, then the fewest parameters. The latency compared is the edge runtime's
 * (onnxruntime-web wasm, manifest `latency.edge`: what the gateway pays per request) when every active variant has
 * one, else onnxruntime-node's for all of them (never the two mixed: they rank int8 and fused graphs differently). An SLA with a non-inferiority `margin`
 * δ also demands evidence: a variant qualifies only when the lower confidence bound of (its accuracy − the most
 * accurate active variant's) is above −δ, from a paired interval on the examples of the shared eval split
 * (Newcombe's method 10; unpaired when the splits differ), Bonferroni-corrected over the variants compared. When none qualifies, serve the most
 * accurate active variant and say so, unless the SLA is strict (then refuse). Variants cooling down after a
 * failure are tried only after every other option.
 *
 * Live feedback (labelled requests, src/gateway/live-evidence.ts) can only demote: a variant whose feedback
 * reached the minimum and whose cluster-robust upper bound is below the SLA floor, or below the best variant's
 * lower bound minus the margin, is not eligible. Each candidate's explanation names the evidence it was judged on.
 */
import { DEFAULT_SLA_CONFIDENCE, type PairedCounts, pairedCounts } from "../core/evidence";
import { type LiveEvidence, type LiveFeedback, type LiveMinimum, liveRule } from "./live-evidence";
import { pairedDifferenceInterval, unpairedDifferenceInterval } from "./paired";

export interface RoutableVariant {
  version: number;
  status: "staged" | "active" | "retired";
  accuracy: number;
  /** onnxruntime-node p50 (manifest `latency.p50Ms`). */
  latencyP50Ms: number;
  /** onnxruntime-web wasm p50 (manifest `latency.edge.p50Ms`); null or absent: not measured. */
  edgeLatencyP50Ms?: number | null;
  params: number;
  sparsity: number;
  /** With sparsity, the variant's coordinates in its family (absent: fp32). */
  precision?: "fp32" | "int8";
  /** Per-example evidence from export (manifest `metrics.evalSet` + `metrics.evidence`). */
  evidence?: VariantEvidence;
  /** Labelled live traffic served by this variant (src/gateway/live-feedback.ts); absent: none. */
  live?: LiveFeedback;
}

export interface VariantEvidence {
  evalSet: string;
  /** sha256 of the eval split: equal fingerprints mean the same examples in the same order. */
  evalSha256: string;
  size: number;
  /** Which examples the variant got right (absent for variants exported before evidence was recorded). */
  correct?: boolean[];
}

/** Just the fields routing reads, e.g. from a registry row, so explanations carry nothing else. */
export function routableFields(v: RoutableVariant): Omit<RoutableVariant, "evidence" | "live"> {
  return {
    version: v.version,
    status: v.status,
    accuracy: v.accuracy,
    latencyP50Ms: v.latencyP50Ms,
    edgeLatencyP50Ms: v.edgeLatencyP50Ms ?? null,
    params: v.params,
    sparsity: v.sparsity,
    precision: v.precision ?? "fp32",
  };
}

export interface Sla {
  metric: "accuracy";
  min: number;
  /** Non-inferiority margin δ to the most accurate active variant, proven at `confidence`; null: none. */
  margin?: number | null;
  confidence?: number;
  maxLatencyMs: number | null;
  strict: boolean;
}

/** How a variant's accuracy compares with the most accurate active variant's (the margin test). */
export interface MarginEvidence {
  against: number;
  /** Point estimate and interval of accuracy(variant) − accuracy(best), at the Bonferroni-corrected level. */
  difference: number;
  interval: [number, number];
  /** Per comparison, two-sided (so the lower bound is one-sided at half of it). */
  alpha: number;
  paired: boolean;
  /** Paired only: examples only this variant got right, and only the best got right. */
  discordant?: { variantOnly: number; bestOnly: number };
  examples: number;
  evalSet: string;
}

export interface RouteRequest {
  /** The task's SLA, or null when none is set (then every active variant meets it). */
  sla: Sla | null;
  /** From `x-sluice-min-accuracy`: may raise the bar, never lower it. */
  requestedMinAccuracy?: number;
  /** Versions skipped for a while after failing to load or run. */
  coolingDown?: ReadonlySet<number>;
  /** Why live feedback could not be read (the variants then carry none); routing goes on with eval evidence. */
  liveUnavailable?: string;
  /** Overrides the live-feedback minimum (tests). */
  liveMinimum?: LiveMinimum;
  /** The window live feedback was read over, in days (shown in each candidate's `live`). */
  liveWindowDays?: number;
}

export type CandidateVerdict =
  | "chosen"
  | "eligible"
  | "below_sla"
  | "below_margin"
  | "demoted_by_feedback"
  | "over_latency"
  | "cooling_down"
  | "inactive";

export interface CandidateExplanation extends Omit<RoutableVariant, "evidence" | "live"> {
  verdict: CandidateVerdict;
  why: string;
  /** What the verdict was judged on: the eval split only, or the eval split and counting live feedback. */
  evidence: "eval" | "eval+live";
  margin?: MarginEvidence;
  live?: LiveEvidence;
}

export type RouteOutcome = "met" | "unmet" | "refused" | "unavailable";

/** Which runtime's p50 a decision compared (and judged an SLA's maxLatencyMs on), and why that one. */
export interface LatencyBasis {
  runtime: "edge" | "node";
  /** The candidate field it is: `edgeLatencyP50Ms` or `latencyP50Ms`. */
  field: "edgeLatencyP50Ms" | "latencyP50Ms";
  why: string;
  /** Node basis: the active versions without an edge figure (why it is not the edge one). */
  lacking?: number[];
}

export interface RouteDecision {
  /** The accuracy bar actually applied: max(task SLA, request), and where each came from. */
  sla: {
    minAccuracy: number;
    taskMin: number | null;
    requestedMin: number | null;
    margin: number | null;
    confidence: number;
    maxLatencyMs: number | null;
    strict: boolean;
  };
  latency: LatencyBasis;
  candidates: CandidateExplanation[];
  /** The version to serve, or null when refused/unavailable. */
  chosen: number | null;
  /** Versions to try in order (chosen first); later entries are the fallbacks. */
  order: number[];
  /** Whether each entry of `order` meets the SLA (a fallback past the qualifying ones does not). */
  meetsSla: Record<number, boolean>;
  outcome: RouteOutcome;
  reason: string;
}

const RUNTIME_LABEL = { edge: "onnxruntime-web wasm", node: "onnxruntime-node" } as const;

/** The edge figure when every active variant has one, else onnxruntime-node's for all (never mixed). */
export function latencyBasis(active: readonly RoutableVariant[]): LatencyBasis {
  const lacking = active.filter((v) => v.edgeLatencyP50Ms == null).map((v) => v.version);
  if (active.length > 0 && lacking.length === 0)
    return {
      runtime: "edge",
      field: "edgeLatencyP50Ms",
      why: `p50 latency in ${RUNTIME_LABEL.edge} (the runtime that serves them), recorded for every active variant`,
    };
  return {
    runtime: "node",
    field: "latencyP50Ms",
    why:
      active.length === 0
        ? `p50 latency in ${RUNTIME_LABEL.node}`
        : `p50 latency in ${RUNTIME_LABEL.node}: ${lackingEdge(lacking)}, and the two runtimes are not compared with each other`,
    ...(active.length > 0 ? { lacking } : {}),
  };
}

const lackingEdge = (versions: number[]) =>
  `${versions.map((v) => `v${v}`).join(", ")} ${versions.length === 1 ? "has" : "have"} no ${RUNTIME_LABEL.edge} figure`;

const latencyOn = (basis: LatencyBasis, v: RoutableVariant): number =>
  basis.runtime === "edge" ? (v.edgeLatencyP50Ms as number) : v.latencyP50Ms;

/** Lowest latency (on `basis`) first, then fewest parameters, then the newer version (a deterministic last resort). */
function byCost(basis: LatencyBasis) {
  return (a: RoutableVariant, b: RoutableVariant): number =>
    latencyOn(basis, a) - latencyOn(basis, b) || a.params - b.params || b.version - a.version;
}

/** Most accurate first, then the cheaper one. */
function byAccuracy(basis: LatencyBasis) {
  const cost = byCost(basis);
  return (a: RoutableVariant, b: RoutableVariant): number => b.accuracy - a.accuracy || cost(a, b);
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const pts = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(2)} pts`;

/**
 * The 2×2 table of two evidence bitsets, computed once per pair: the catalog keeps each row's decoded evidence
 * (one array per cached row), so routing a request does not walk the eval split again.
 */
const pairedMemo = new WeakMap<boolean[], WeakMap<boolean[], PairedCounts>>();
function pairedCountsOf(a: boolean[], b: boolean[]): PairedCounts {
  const inner = pairedMemo.get(a) ?? new WeakMap<boolean[], PairedCounts>();
  pairedMemo.set(a, inner);
  const t = inner.get(b) ?? pairedCounts(a, b);
  inner.set(b, t);
  return t;
}

/** accuracy(v) − accuracy(best): paired on a shared eval split's examples, else from the two samples. */
export function compareWithBest(v: RoutableVariant, best: RoutableVariant, alpha: number): MarginEvidence {
  const a = v.evidence;
  const b = best.evidence;
  const base = { against: best.version, difference: v.accuracy - best.accuracy, alpha };
  if (a?.correct && b?.correct && a.evalSha256 === b.evalSha256 && a.size === b.size) {
    const t = pairedCountsOf(a.correct, b.correct);
    return {
      ...base,
      interval: pairedDifferenceInterval(t, alpha),
      paired: true,
      discordant: { variantOnly: t.firstOnly, bestOnly: t.secondOnly },
      examples: a.size,
      evalSet: a.evalSet,
    };
  }
  if (!a || !b) return { ...base, interval: [-1, 1], paired: false, examples: 0, evalSet: "none" };
  const count = (x: RoutableVariant, e: VariantEvidence) => ({
    correct: Math.round(x.accuracy * e.size),
    n: e.size,
  });
  return {
    ...base,
    interval: unpairedDifferenceInterval(count(v, a), count(best, b), alpha),
    paired: false,
    examples: a.size + b.size,
    evalSet: `${a.evalSet} vs ${b.evalSet}`,
  };
}

function describeMargin(m: MarginEvidence, margin: number, confidence: number, k: number): string {
  const level = `${(100 * confidence).toFixed(0)}%${k > 1 ? ` (Bonferroni over ${k})` : ""}`;
  const how = m.paired
    ? `paired on ${m.evalSet}, ${m.examples} examples: ${m.discordant!.variantOnly} right only here, ${m.discordant!.bestOnly} right only on v${m.against}`
    : m.examples === 0
      ? "no per-example evidence"
      : `unpaired, different eval splits (${m.evalSet})`;
  return `accuracy vs v${m.against} ${pts(m.difference)}, ${level} lower bound ${pts(m.interval[0])} ${m.interval[0] > -margin ? ">" : "≤"} −${(100 * margin).toFixed(2)} pts margin (${how})`;
}

function describeLive(l: LiveEvidence, margin: number | null, confidence: number): string {
  const apart = l.withoutUnit > 0 ? ` (${l.withoutUnit} without a unit, each its own)` : "";
  const seen = `live feedback: ${l.labelled} labelled from ${l.units} unit${l.units === 1 ? "" : "s"}${apart}`;
  if (!l.counts) {
    return `${seen}, below the minimum (${l.minimum.labelled} labelled from ${l.minimum.units} units): eval evidence only`;
  }
  const k = l.bonferroni ?? 1;
  const level = `${(100 * confidence).toFixed(0)}%${k > 1 ? ` (Bonferroni over ${k} bounds)` : ""}`;
  const [lo, hi] = l.interval!;
  const tests: string[] = [];
  if (l.floor)
    tests.push(`upper bound ${pct(hi)} ${l.floor.below ? "<" : "≥"} SLA floor ${pct(l.floor.threshold)}`);
  if (l.margin && margin !== null) {
    tests.push(
      `upper bound ${pct(hi)} ${l.margin.below ? "<" : "≥"} ${pct(l.margin.threshold)} (v${l.margin.against}'s ${l.margin.referenceFrom} lower bound ${pct(l.margin.reference)} − ${(100 * margin).toFixed(2)} pts margin)`,
    );
  }
  return `${seen}, accuracy ${pct(l.accuracy)}, ${level} interval [${pct(lo)}, ${pct(hi)}]${tests.length ? `: ${tests.join(", ")}` : ""}`;
}

export function selectVariant(variants: readonly RoutableVariant[], request: RouteRequest): RouteDecision {
  const taskMin = request.sla?.min ?? null;
  const requested = request.requestedMinAccuracy ?? null;
  const minAccuracy = Math.max(taskMin ?? 0, requested ?? 0);
  const maxLatencyMs = request.sla?.maxLatencyMs ?? null;
  const strict = request.sla?.strict ?? false;
  const margin = request.sla?.margin ?? null;
  const confidence = request.sla?.confidence ?? DEFAULT_SLA_CONFIDENCE;
  const cooling = request.coolingDown ?? new Set<number>();

  const verdicts = new Map<number, { verdict: CandidateVerdict; why: string }>();
  const active = variants.filter((v) => v.status === "active");
  const basis = latencyBasis(active);
  const runtime = RUNTIME_LABEL[basis.runtime];
  for (const v of variants) {
    if (v.status !== "active") verdicts.set(v.version, { verdict: "inactive", why: `status is ${v.status}` });
  }

  // The margin test: every other active variant against the most accurate one, one-sided at (1 − confidence)/k.
  const margins = new Map<number, MarginEvidence>();
  const best = [...active].sort(byAccuracy(basis))[0];
  const compared = margin === null || !best ? [] : active.filter((v) => v !== best);
  for (const v of compared)
    margins.set(v.version, compareWithBest(v, best, (2 * (1 - confidence)) / compared.length));
  const marginWhy = (v: RoutableVariant) =>
    margin === null
      ? ""
      : v === best
        ? `; the most accurate active variant (the margin's reference)`
        : `; ${describeMargin(margins.get(v.version)!, margin, confidence, compared.length)}`;

  // Live feedback: demotes only, and only variants whose feedback reached the minimum (live-evidence.ts).
  const bestCorrect = best?.evidence?.correct;
  const live = liveRule({
    feedback: new Map(active.flatMap((v) => (v.live ? [[v.version, v.live] as const] : []))),
    versions: active.map((v) => v.version),
    minAccuracy,
    margin,
    confidence,
    best:
      margin !== null && best
        ? {
            version: best.version,
            evalCorrect: bestCorrect
              ? bestCorrect.filter(Boolean).length
              : Math.round(best.accuracy * (best.evidence?.size ?? 0)),
            evalSize: best.evidence?.size ?? 0,
          }
        : undefined,
    minimum: request.liveMinimum,
    windowDays: request.liveWindowDays,
  });
  const liveWhy = (v: RoutableVariant) => {
    const l = live.get(v.version);
    if (l) return `; ${describeLive(l, margin, confidence)}`;
    return request.liveUnavailable
      ? `; live feedback unavailable (${request.liveUnavailable}): eval evidence only`
      : "; no live feedback: eval evidence only";
  };

  const qualifying: RoutableVariant[] = [];
  const missing: RoutableVariant[] = [];
  for (const v of active) {
    const m = margins.get(v.version);
    if (v.accuracy < minAccuracy) {
      verdicts.set(v.version, {
        verdict: "below_sla",
        why: `accuracy ${pct(v.accuracy)} < required ${pct(minAccuracy)}${liveWhy(v)}`,
      });
      missing.push(v);
    } else if (margin !== null && m && !(m.interval[0] > -margin)) {
      verdicts.set(v.version, {
        verdict: "below_margin",
        why: `not proven within the margin: ${marginWhy(v).slice(2)}${liveWhy(v)}`,
      });
      missing.push(v);
    } else if (live.get(v.version)?.demoted) {
      verdicts.set(v.version, {
        verdict: "demoted_by_feedback",
        why: `demoted by ${liveWhy(v).slice(2)}${marginWhy(v)}`,
      });
      missing.push(v);
    } else if (maxLatencyMs !== null && latencyOn(basis, v) > maxLatencyMs) {
      verdicts.set(v.version, {
        verdict: "over_latency",
        why: `${runtime} p50 ${latencyOn(basis, v)} ms > SLA maximum ${maxLatencyMs} ms${liveWhy(v)}`,
      });
      missing.push(v);
    } else {
      verdicts.set(v.version, { verdict: "eligible", why: `meets the SLA${marginWhy(v)}${liveWhy(v)}` });
      qualifying.push(v);
    }
  }

  // Healthy variants before cooling ones; within each group, the policy's own order.
  const healthyFirst = (list: RoutableVariant[]) => [
    ...list.filter((v) => !cooling.has(v.version)),
    ...list.filter((v) => cooling.has(v.version)),
  ];
  const meeting = healthyFirst([...qualifying].sort(byCost(basis)));
  const fallbacks = strict ? [] : healthyFirst([...missing].sort(byAccuracy(basis)));
  const order = [...meeting, ...fallbacks];
  const meetsSla: Record<number, boolean> = {};
  for (const v of meeting) meetsSla[v.version] = true;
  for (const v of fallbacks) meetsSla[v.version] = false;
  for (const v of order) {
    if (cooling.has(v.version)) {
      const previous = verdicts.get(v.version)!;
      verdicts.set(v.version, {
        verdict: "cooling_down",
        why: `${previous.why}; failed recently, tried only after the others`,
      });
    }
  }

  const chosen = order[0] ?? null;
  let outcome: RouteOutcome;
  let reason: string;
  const floor = margin !== null && minAccuracy === 0 ? "" : `accuracy >= ${pct(minAccuracy)}`;
  const bar = `${floor}${margin !== null ? `${floor ? " and " : ""}accuracy proven within ${(100 * margin).toFixed(2)} pts of the best at ${(100 * confidence).toFixed(0)}%` : ""}${maxLatencyMs !== null ? ` and ${runtime} p50 <= ${maxLatencyMs} ms` : ""}${[...live.values()].some((l) => l.counts) ? " and not demoted by live feedback" : ""}`;
  if (active.length === 0) {
    outcome = "unavailable";
    reason = "the model has no active variant";
  } else if (chosen && meetsSla[chosen.version]) {
    outcome = "met";
    reason =
      meeting.length === 1
        ? `v${chosen.version} is the only active variant with ${bar}`
        : `v${chosen.version} has the lowest ${runtime} p50 latency (then fewest parameters) of ${meeting.length} variants with ${bar}${basis.lacking ? ` (${lackingEdge(basis.lacking)})` : ""}`;
  } else if (chosen) {
    outcome = "unmet";
    reason = `no active variant meets ${bar}; serving the most accurate, v${chosen.version} (${pct(chosen.accuracy)})`;
  } else {
    outcome = "refused";
    reason = `no active variant meets ${bar} and the SLA is strict`;
  }
  if (chosen) {
    verdicts.set(chosen.version, {
      verdict: "chosen",
      why: `${reason}${marginWhy(chosen)}${liveWhy(chosen)}`,
    });
  }

  return {
    sla: { minAccuracy, taskMin, requestedMin: requested, margin, confidence, maxLatencyMs, strict },
    latency: basis,
    candidates: variants.map((v) => {
      const m = margins.get(v.version);
      const l = live.get(v.version);
      return {
        ...routableFields(v),
        ...verdicts.get(v.version)!,
        evidence: l?.counts ? ("eval+live" as const) : ("eval" as const),
        ...(m ? { margin: m } : {}),
        ...(l ? { live: l } : {}),
      };
    }),
    chosen: chosen?.version ?? null,
    order: order.map((v) => v.version),
    meetsSla,
    outcome,
    reason,
  };
}
