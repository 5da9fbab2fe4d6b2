/**
 * An experiment's results: the event store aggregated per arm (D1), then `analyzeExperiment`. Shared by
 * `GET /v1/experiments/:id/results`, promotion and the dashboard.
 *
 * Population analysed: requests that carried a unit id (sticky), when the experiment has any; requests without
 * one were assigned at random and are reported apart (`unstickyRequests`). An experiment whose traffic never
 * carries unit ids is analysed per request (randomised per request, which is still a valid experiment).
 */
import { findTaskSla, registryDb } from "../../registry/store";
import { type AnalysisConfig, ArmTraffic, analyzeTraffic, type ExperimentResults } from "./analyze";
import { armName } from "./serving";
import {
  type ExperimentDb,
  type ExperimentWithArms,
  type ExposureForAnalysis,
  exposuresForAnalysis,
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
  const [rows, pendingFeedback, sla] = await Promise.all([
    exposuresForAnalysis(db, id),
    pendingFeedbackCount(db, id),
    findTaskSla(registryDb(d1), e.model.task),
  ]);
  const stickyOnly = rows.some((r) => r.sticky);
  const traffic = e.arms.map((a) => armTraffic(rows, a.arm, stickyOnly));
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
    unitKind: stickyOnly ? "unit" : "request",
    design:
      x.design === "fixed"
        ? { kind: "fixed", plannedUnits: x.plannedUnits ?? 1 }
        : { kind: "sequential", ...(x.plannedUnits ? { plannedUnits: x.plannedUnits } : {}) },
  };
  return {
    results: analyzeTraffic(config, traffic),
    pendingFeedback,
    slaMinAccuracy: slaMin,
    population: stickyOnly ? "sticky" : "all-requests",
  };
}

/**
 * One arm's traffic per unit: sticky requests grouped by unit id, requests without a unit id pooled apart.
 * Without any unit ids (randomised per request) every request is its own unit.
 */
export function armTraffic(
  rows: readonly ExposureForAnalysis[],
  arm: number,
  stickyOnly: boolean,
): ArmTraffic {
  const t = new ArmTraffic();
  let request = 0;
  for (const r of rows) {
    if (r.arm !== arm) continue;
    if (!stickyOnly) t.addRequest(request++, r);
    else if (r.sticky && r.unitId !== null) t.addRequest(r.unitId, r);
    else t.addUnstickyRequest(r);
  }
  return t;
}
