/**
 * SLA-aware routing: which variant of a model serves a request. Pure (no I/O, no clock), so the policy can be
 * tested case by case and explained verbatim by `GET /v1/models/:model/route`.
 *
 * Policy: among the model's `active` variants keep those whose accuracy meets the task SLA (a request may demand
 * more with `x-sluice-min-accuracy`, never less) and, when the SLA sets one, whose measured p50 latency is within
 * its maximum; serve the lowest p50 latency, then the fewest parameters. When none qualifies, serve the most
 * accurate active variant and say so, unless the SLA is strict (then refuse). Variants cooling down after a
 * failure are tried only after every other option.
 */

export interface RoutableVariant {
  version: number;
  status: "staged" | "active" | "retired";
  accuracy: number;
  latencyP50Ms: number;
  params: number;
  sparsity: number;
}

/** Just the fields routing reads, e.g. from a registry row, so explanations carry nothing else. */
export function routableFields(v: RoutableVariant): RoutableVariant {
  return {
    version: v.version,
    status: v.status,
    accuracy: v.accuracy,
    latencyP50Ms: v.latencyP50Ms,
    params: v.params,
    sparsity: v.sparsity,
  };
}

export interface Sla {
  metric: "accuracy";
  min: number;
  maxLatencyMs: number | null;
  strict: boolean;
}

export interface RouteRequest {
  /** The task's SLA, or null when none is set (then every active variant meets it). */
  sla: Sla | null;
  /** From `x-sluice-min-accuracy`: may raise the bar, never lower it. */
  requestedMinAccuracy?: number;
  /** Versions skipped for a while after failing to load or run. */
  coolingDown?: ReadonlySet<number>;
}

export type CandidateVerdict =
  | "chosen"
  | "eligible"
  | "below_sla"
  | "over_latency"
  | "cooling_down"
  | "inactive";

export interface CandidateExplanation extends RoutableVariant {
  verdict: CandidateVerdict;
  why: string;
}

export type RouteOutcome = "met" | "unmet" | "refused" | "unavailable";

export interface RouteDecision {
  /** The accuracy bar actually applied: max(task SLA, request), and where each came from. */
  sla: {
    minAccuracy: number;
    taskMin: number | null;
    requestedMin: number | null;
    maxLatencyMs: number | null;
    strict: boolean;
  };
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

/** Lowest latency first, then fewest parameters, then the newer version (a deterministic last resort). */
function byCost(a: RoutableVariant, b: RoutableVariant): number {
  return a.latencyP50Ms - b.latencyP50Ms || a.params - b.params || b.version - a.version;
}

/** Most accurate first, then the cheaper one. */
function byAccuracy(a: RoutableVariant, b: RoutableVariant): number {
  return b.accuracy - a.accuracy || byCost(a, b);
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

export function selectVariant(variants: readonly RoutableVariant[], request: RouteRequest): RouteDecision {
  const taskMin = request.sla?.min ?? null;
  const requested = request.requestedMinAccuracy ?? null;
  const minAccuracy = Math.max(taskMin ?? 0, requested ?? 0);
  const maxLatencyMs = request.sla?.maxLatencyMs ?? null;
  const strict = request.sla?.strict ?? false;
  const cooling = request.coolingDown ?? new Set<number>();

  const verdicts = new Map<number, { verdict: CandidateVerdict; why: string }>();
  const active = variants.filter((v) => v.status === "active");
  for (const v of variants) {
    if (v.status !== "active") verdicts.set(v.version, { verdict: "inactive", why: `status is ${v.status}` });
  }

  const qualifying: RoutableVariant[] = [];
  const missing: RoutableVariant[] = [];
  for (const v of active) {
    if (v.accuracy < minAccuracy) {
      verdicts.set(v.version, {
        verdict: "below_sla",
        why: `accuracy ${pct(v.accuracy)} < required ${pct(minAccuracy)}`,
      });
      missing.push(v);
    } else if (maxLatencyMs !== null && v.latencyP50Ms > maxLatencyMs) {
      verdicts.set(v.version, {
        verdict: "over_latency",
        why: `p50 ${v.latencyP50Ms} ms > SLA maximum ${maxLatencyMs} ms`,
      });
      missing.push(v);
    } else {
      verdicts.set(v.version, { verdict: "eligible", why: "meets the SLA" });
      qualifying.push(v);
    }
  }

  // Healthy variants before cooling ones; within each group, the policy's own order.
  const healthyFirst = (list: RoutableVariant[]) => [
    ...list.filter((v) => !cooling.has(v.version)),
    ...list.filter((v) => cooling.has(v.version)),
  ];
  const meeting = healthyFirst([...qualifying].sort(byCost));
  const fallbacks = strict ? [] : healthyFirst([...missing].sort(byAccuracy));
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
  const bar = `accuracy >= ${pct(minAccuracy)}${maxLatencyMs !== null ? ` and p50 <= ${maxLatencyMs} ms` : ""}`;
  if (active.length === 0) {
    outcome = "unavailable";
    reason = "the model has no active variant";
  } else if (chosen && meetsSla[chosen.version]) {
    outcome = "met";
    reason =
      meeting.length === 1
        ? `v${chosen.version} is the only active variant with ${bar}`
        : `v${chosen.version} has the lowest p50 latency (then fewest parameters) of ${meeting.length} variants with ${bar}`;
  } else if (chosen) {
    outcome = "unmet";
    reason = `no active variant meets ${bar}; serving the most accurate, v${chosen.version} (${pct(chosen.accuracy)})`;
  } else {
    outcome = "refused";
    reason = `no active variant meets ${bar} and the SLA is strict`;
  }
  if (chosen) verdicts.set(chosen.version, { verdict: "chosen", why: reason });

  return {
    sla: { minAccuracy, taskMin, requestedMin: requested, maxLatencyMs, strict },
    candidates: variants.map((v) => ({ ...routableFields(v), ...verdicts.get(v.version)! })),
    chosen: chosen?.version ?? null,
    order: order.map((v) => v.version),
    meetsSla,
    outcome,
    reason,
  };
}
