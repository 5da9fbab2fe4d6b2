/**
 * An experiment's results: the event store aggregated per arm (D1), then `analyzeExperiment`. Shared by
 * `GET /v1/experiments/:id/results`, promotion and the dashboard.
 *
 * Population analysed: requests that carried a unit id (sticky), when the experiment has any; requests without
 * one were assigned at random and are reported apart (`unstickyRequests`). An experiment whose traffic never
 * carries unit ids is analysed per request (randomised per request, which is still a valid experiment).
 */
import { findTaskSla, registryDb } from "../../registry/store";
import { type AnalysisConfig, type ArmData, analyzeExperiment, type ExperimentResults } from "./analyze";
import { latencyHistogramFromSamples } from "./latency";
import { armName } from "./serving";
import {
  armCounts,
  armFeedback,
  armLatencies,
  type ExperimentDb,
  type ExperimentWithArms,
  pendingFeedbackCount,
} from "./store";

export interface ExperimentResultsView {
  results: ExperimentResults;
  /** feedback whose exposure has not been written yet (in the queue) or never existed */
  pendingFeedback: number;
  /** the task SLA the non-inferiority test used, if any */
  slaMinAccuracy: number | null;
  population: "sticky" | "all-requests";
}

export function armLabel(arm: number, version: number): string {
  return `${armName(arm)} (v${version})`;
}

export async function computeResults(
  db: ExperimentDb,
  d1: D1Database,
  e: ExperimentWithArms,
): Promise<ExperimentResultsView> {
  const id = e.experiment.id;
  const counts = await armCounts(db, id);
  const stickyOnly = counts.some((c) => c.stickyRequests > 0);
  const [latencies, feedback, pendingFeedback, sla] = await Promise.all([
    armLatencies(db, id, stickyOnly),
    armFeedback(db, id, stickyOnly),
    pendingFeedbackCount(db, id),
    findTaskSla(registryDb(d1), e.model.task),
  ]);
  const data: ArmData[] = e.arms.map((a) => {
    const c = counts.find((x) => x.arm === a.arm);
    return {
      // without unit ids every request was randomised on its own, so it is its own unit
      units: stickyOnly ? (c?.units ?? 0) : (c?.requests ?? 0),
      requests: c?.requests ?? 0,
      errors: c?.errors ?? 0,
      // mergeable histogram: percentiles within 1%, exact mean/variance (see latency.ts)
      latency: latencyHistogramFromSamples(latencies.get(a.arm) ?? []),
      feedback: feedback.get(a.arm) ?? { correct: 0, total: 0 },
      unstickyRequests: stickyOnly ? (c?.unstickyRequests ?? 0) : 0,
    };
  });
  const slaMin = sla && sla.min > 0 && sla.min < 1 ? sla.min : null;
  const x = e.experiment;
  const config: AnalysisConfig = {
    arms: e.arms.map((a) => ({ name: armLabel(a.arm, a.version), weight: a.weight })),
    controlArm: x.controlArm,
    primaryMetric: x.primaryMetric,
    alpha: x.alpha,
    guardrails: x.guardrails,
    ...(slaMin !== null ? { slaMinAccuracy: slaMin } : {}),
    nonInferiorityMargin: x.nonInferiorityMargin,
    design:
      x.design === "fixed"
        ? { kind: "fixed", plannedUnits: x.plannedUnits ?? 1 }
        : { kind: "sequential", ...(x.plannedUnits ? { plannedUnits: x.plannedUnits } : {}) },
  };
  return {
    results: analyzeExperiment(config, data),
    pendingFeedback,
    slaMinAccuracy: slaMin,
    population: stickyOnly ? "sticky" : "all-requests",
  };
}
