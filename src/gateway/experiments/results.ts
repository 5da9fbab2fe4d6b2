/**
 * An experiment's results: the event store aggregated per arm (D1), then `analyzeExperiment`. Shared by
 * `GET /v1/experiments/:id/results`, promotion and the dashboard.
 *
 * Population analysed: requests that carried a unit id (sticky), when the experiment has any; requests without
 * one were assigned at random and are reported apart (`unstickyRequests`). An experiment whose traffic never
 * carries unit ids is analysed per request (randomised per request, which is still a valid experiment).
 */
import { findTaskSla, registryDb } from "../../registry/store";
import {
  type AnalysisConfig,
  type ArmData,
  analyzeExperiment,
  type ExperimentResults,
  type UnitData,
} from "./analyze";
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
  const data: ArmData[] = e.arms.map((a) => armData(rows, a.arm, stickyOnly));
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
    results: analyzeExperiment(config, data),
    pendingFeedback,
    slaMinAccuracy: slaMin,
    population: stickyOnly ? "sticky" : "all-requests",
  };
}

function emptyUnit(): UnitData & { latencyMs: number[] } {
  return { requests: 0, errors: 0, latencyMs: [], labelled: 0, correct: 0 };
}

function add(u: ReturnType<typeof emptyUnit>, r: ExposureForAnalysis): void {
  u.requests++;
  if (r.error) u.errors++;
  else u.latencyMs.push(r.latencyMs);
  if (r.labelled) {
    u.labelled++;
    if (r.correct) u.correct++;
  }
}

/**
 * One arm's traffic per unit: sticky requests grouped by unit id (rows come ordered by unit), requests without a
 * unit id pooled apart. Without any unit ids (randomised per request) every request is its own unit.
 */
export function armData(rows: readonly ExposureForAnalysis[], arm: number, stickyOnly: boolean): ArmData {
  const units = new Map<string, ReturnType<typeof emptyUnit>>();
  const perRequest: UnitData[] = [];
  const unsticky = emptyUnit();
  for (const r of rows) {
    if (r.arm !== arm) continue;
    if (!stickyOnly) {
      const u = emptyUnit();
      add(u, r);
      perRequest.push(u);
    } else if (r.sticky && r.unitId !== null) {
      let u = units.get(r.unitId);
      if (!u) {
        u = emptyUnit();
        units.set(r.unitId, u);
      }
      add(u, r);
    } else {
      add(unsticky, r);
    }
  }
  return stickyOnly ? { units: [...units.values()], unsticky } : { units: perRequest };
}
