/**
 * Experiment queries (Drizzle over D1): experiments and their arms, the exposure event store and feedback.
 * Handlers never write SQL; every read and write of the experiment tables is a typed function here.
 */
import { and, asc, desc, eq, inArray, sql } from "drizzle-orm";
import { type DrizzleD1Database, drizzle } from "drizzle-orm/d1";
import * as experimentSchema from "../../registry/experiments-schema";
import {
  type ExperimentArmRow,
  type ExperimentGuardrails,
  type ExperimentRow,
  type ExperimentStatus,
  experimentArms,
  experiments,
  exposures,
  feedback,
  routedFeedback,
} from "../../registry/experiments-schema";
import * as registrySchema from "../../registry/schema";
import { aliases, type ModelRow, models, type VariantRow, variants } from "../../registry/schema";
import { bumpGeneration } from "../../registry/store";

const schema = { ...registrySchema, ...experimentSchema };
export type ExperimentDb = DrizzleD1Database<typeof schema>;

export function experimentDb(d1: D1Database): ExperimentDb {
  return drizzle(d1, { schema });
}

export interface ExperimentWithArms {
  experiment: ExperimentRow;
  model: ModelRow;
  arms: (ExperimentArmRow & { variant: VariantRow | null })[];
}

export interface NewExperiment {
  modelId: number;
  name: string;
  seed: string;
  unit: string;
  primaryMetric: "accuracy" | "latency";
  guardrails: ExperimentGuardrails;
  alpha: number;
  design: "fixed" | "sequential";
  plannedUnits: number | null;
  nonInferiorityMargin: number;
  controlArm: number;
  arms: { variantId: number; version: number; weight: number }[];
}

/**
 * Inserts the experiment and its arms atomically: one D1 batch (a transaction), the arms referring to the
 * experiment just inserted (the largest id: AUTOINCREMENT ids only grow, and D1 runs one writer at a time).
 */
export async function insertExperiment(db: ExperimentDb, e: NewExperiment): Promise<number> {
  const { arms, ...row } = e;
  const newId = sql<number>`(select max(${experiments.id}) from ${experiments})`;
  const [created] = await db.batch([
    db.insert(experiments).values(row).returning({ id: experiments.id }),
    db.insert(experimentArms).values(arms.map((a, arm) => ({ experimentId: newId, arm, ...a }))),
    bumpGeneration(db), // every experiment write: other isolates' running-experiment caches must see it
  ]);
  return created[0].id;
}

export async function replaceArms(
  db: ExperimentDb,
  experimentId: number,
  arms: { variantId: number; version: number; weight: number }[],
): Promise<void> {
  await db.batch([
    db.delete(experimentArms).where(eq(experimentArms.experimentId, experimentId)),
    db.insert(experimentArms).values(arms.map((a, arm) => ({ experimentId, arm, ...a }))),
    bumpGeneration(db),
  ]);
}

export async function updateExperiment(
  db: ExperimentDb,
  id: number,
  values: Partial<Omit<ExperimentRow, "id" | "modelId" | "createdAt">>,
): Promise<void> {
  await db.batch([db.update(experiments).set(values).where(eq(experiments.id, id)), bumpGeneration(db)]);
}

async function withArms(db: ExperimentDb, rows: ExperimentRow[]): Promise<ExperimentWithArms[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const armRows = await db
    .select({ arm: experimentArms, variant: variants })
    .from(experimentArms)
    .leftJoin(variants, eq(variants.id, experimentArms.variantId))
    .where(inArray(experimentArms.experimentId, ids))
    .orderBy(asc(experimentArms.experimentId), asc(experimentArms.arm))
    .all();
  const modelRows = await db
    .select()
    .from(models)
    .where(
      inArray(
        models.id,
        rows.map((r) => r.modelId),
      ),
    )
    .all();
  return rows.map((experiment) => ({
    experiment,
    model: modelRows.find((m) => m.id === experiment.modelId)!,
    arms: armRows
      .filter((a) => a.arm.experimentId === experiment.id)
      .map((a) => ({ ...a.arm, variant: a.variant })),
  }));
}

export async function findExperiment(db: ExperimentDb, id: number): Promise<ExperimentWithArms | undefined> {
  const row = await db.select().from(experiments).where(eq(experiments.id, id)).get();
  return row ? (await withArms(db, [row]))[0] : undefined;
}

export async function listExperiments(
  db: ExperimentDb,
  filters: { modelId?: number; status?: ExperimentStatus } = {},
): Promise<ExperimentWithArms[]> {
  const rows = await db
    .select()
    .from(experiments)
    .where(
      and(
        filters.modelId !== undefined ? eq(experiments.modelId, filters.modelId) : undefined,
        filters.status ? eq(experiments.status, filters.status) : undefined,
      ),
    )
    .orderBy(desc(experiments.id))
    .all();
  return withArms(db, rows);
}

/** The model's running experiment, if any (at most one, by a unique partial index). */
export async function findRunningExperiment(
  db: ExperimentDb,
  modelId: number,
): Promise<ExperimentWithArms | undefined> {
  const row = await db
    .select()
    .from(experiments)
    .where(and(eq(experiments.modelId, modelId), eq(experiments.status, "running")))
    .get();
  return row ? (await withArms(db, [row]))[0] : undefined;
}

// --- aggregates for analysis ------------------------------------------------------------------------------

export interface ArmAggregate {
  arm: number;
  units: number;
  requests: number;
  errors: number;
  stickyRequests: number;
  unstickyRequests: number;
}

/**
 * Per-arm counts. `sticky` selects which requests are counted as the analysed population: sticky requests
 * when the experiment has any, all requests otherwise (see `aggregateExperiment`).
 */
export async function armCounts(db: ExperimentDb, experimentId: number): Promise<ArmAggregate[]> {
  const rows = await db
    .select({
      arm: exposures.arm,
      units: sql<number>`count(distinct case when ${exposures.sticky} then ${exposures.unitId} end)`,
      stickyRequests: sql<number>`sum(case when ${exposures.sticky} then 1 else 0 end)`,
      unstickyRequests: sql<number>`sum(case when ${exposures.sticky} then 0 else 1 end)`,
      stickyErrors: sql<number>`sum(case when ${exposures.sticky} and ${exposures.error} then 1 else 0 end)`,
      allErrors: sql<number>`sum(case when ${exposures.error} then 1 else 0 end)`,
    })
    .from(exposures)
    .where(eq(exposures.experimentId, experimentId))
    .groupBy(exposures.arm)
    .all();
  const anySticky = rows.some((r) => r.stickyRequests > 0);
  return rows.map((r) => ({
    arm: r.arm,
    units: r.units,
    requests: anySticky ? r.stickyRequests : r.unstickyRequests,
    errors: anySticky ? r.stickyErrors : r.allErrors,
    stickyRequests: r.stickyRequests,
    unstickyRequests: r.unstickyRequests,
  }));
}

/** Latencies (ms) of successful requests, per arm, from the analysed population. */
export async function armLatencies(
  db: ExperimentDb,
  experimentId: number,
  stickyOnly: boolean,
): Promise<Map<number, number[]>> {
  const rows = await db
    .select({ arm: exposures.arm, latencyMs: exposures.latencyMs })
    .from(exposures)
    .where(
      and(
        eq(exposures.experimentId, experimentId),
        eq(exposures.error, false),
        stickyOnly ? eq(exposures.sticky, true) : undefined,
      ),
    )
    .all();
  const out = new Map<number, number[]>();
  for (const r of rows) {
    const list = out.get(r.arm) ?? [];
    list.push(r.latencyMs);
    out.set(r.arm, list);
  }
  return out;
}

/** Feedback joined to exposures on request id: per arm, how many predictions were right. */
export async function armFeedback(
  db: ExperimentDb,
  experimentId: number,
  stickyOnly: boolean,
): Promise<Map<number, { correct: number; total: number }>> {
  const rows = await db
    .select({
      arm: exposures.arm,
      total: sql<number>`count(*)`,
      correct: sql<number>`sum(case when ${feedback.label} = ${exposures.predicted} then 1 else 0 end)`,
    })
    .from(feedback)
    .innerJoin(exposures, eq(exposures.requestId, feedback.requestId))
    .where(
      and(
        eq(exposures.experimentId, experimentId),
        eq(exposures.error, false),
        sql`${exposures.predicted} is not null`,
        stickyOnly ? eq(exposures.sticky, true) : undefined,
      ),
    )
    .groupBy(exposures.arm)
    .all();
  return new Map(rows.map((r) => [r.arm, { correct: r.correct, total: r.total }]));
}

/** Feedback whose exposure has not been written (yet): still in the queue, or never served. */
export async function pendingFeedbackCount(db: ExperimentDb, experimentId: number): Promise<number> {
  const row = await db
    .select({ n: sql<number>`count(*)` })
    .from(feedback)
    .leftJoin(exposures, eq(exposures.requestId, feedback.requestId))
    .where(and(eq(feedback.experimentId, experimentId), sql`${exposures.id} is null`))
    .get();
  return row?.n ?? 0;
}

// --- feedback ---------------------------------------------------------------------------------------------

/** Stores a label once per request id; returns the stored row (the earlier one when it already existed). */
export async function insertFeedback(
  db: ExperimentDb,
  row: { requestId: string; experimentId: number; label: string },
): Promise<{ stored: typeof feedback.$inferSelect; created: boolean }> {
  const inserted = await db.insert(feedback).values(row).onConflictDoNothing().returning().get();
  if (inserted) return { stored: inserted, created: true };
  const stored = await db.select().from(feedback).where(eq(feedback.requestId, row.requestId)).get();
  return { stored: stored!, created: false };
}

/** Stores the label of a routed request once per token nonce; returns the stored row (the earlier one if any). */
export async function insertRoutedFeedback(
  db: ExperimentDb,
  row: typeof routedFeedback.$inferInsert,
): Promise<{ stored: typeof routedFeedback.$inferSelect; created: boolean }> {
  const inserted = await db.insert(routedFeedback).values(row).onConflictDoNothing().returning().get();
  if (inserted) return { stored: inserted, created: true };
  const stored = await db.select().from(routedFeedback).where(eq(routedFeedback.nonce, row.nonce)).get();
  return { stored: stored!, created: false };
}

export async function findExposure(db: ExperimentDb, requestId: string) {
  return db.select().from(exposures).where(eq(exposures.requestId, requestId)).get();
}

// --- promotion ------------------------------------------------------------------------------------------

export interface Promotion {
  experimentId: number;
  modelId: number;
  winnerArm: number;
  winnerVariantId: number;
  /** variants of the other arms: set back to `staged` (out of routing, still pinnable, not retired) */
  loserVariantIds: number[];
  /** alias pointed at the winner */
  alias: string;
}

/**
 * Applies a promotion in one D1 batch (a transaction): the winner becomes `active` and the alias target, the
 * other arms' variants go back to `staged`, and the experiment is marked promoted. All or nothing.
 */
export async function applyPromotion(db: ExperimentDb, p: Promotion): Promise<void> {
  const now = sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`;
  await db.batch([
    db.update(variants).set({ status: "active" }).where(eq(variants.id, p.winnerVariantId)),
    ...p.loserVariantIds.map((id) =>
      db.update(variants).set({ status: "staged" }).where(eq(variants.id, id)),
    ),
    db
      .insert(aliases)
      .values({ modelId: p.modelId, alias: p.alias, variantId: p.winnerVariantId })
      .onConflictDoUpdate({
        target: [aliases.modelId, aliases.alias],
        set: { variantId: p.winnerVariantId, updatedAt: now },
      }),
    db
      .update(experiments)
      .set({
        status: "promoted",
        winnerArm: p.winnerArm,
        stoppedAt: sql`coalesce(${experiments.stoppedAt}, ${now})`,
      })
      .where(eq(experiments.id, p.experimentId)),
    bumpGeneration(db),
  ]);
}

/** One exposure, as the per-unit analysis needs it (feedback joined), ordered by arm, unit and id. */
export interface ExposureForAnalysis {
  arm: number;
  unitId: string | null;
  sticky: boolean;
  latencyMs: number;
  error: boolean;
  labelled: boolean;
  correct: boolean;
}

export async function exposuresForAnalysis(
  db: ExperimentDb,
  experimentId: number,
): Promise<ExposureForAnalysis[]> {
  const rows = await db
    .select({
      arm: exposures.arm,
      unitId: exposures.unitId,
      sticky: exposures.sticky,
      latencyMs: exposures.latencyMs,
      error: exposures.error,
      label: feedback.label,
      predicted: exposures.predicted,
    })
    .from(exposures)
    .leftJoin(feedback, eq(feedback.requestId, exposures.requestId))
    .where(eq(exposures.experimentId, experimentId))
    .orderBy(asc(exposures.arm), asc(exposures.unitId), asc(exposures.id))
    .all();
  return rows.map((r) => {
    const labelled = !r.error && r.predicted !== null && r.label !== null;
    return {
      arm: r.arm,
      unitId: r.unitId,
      sticky: r.sticky,
      latencyMs: r.latencyMs,
      error: r.error,
      labelled,
      correct: labelled && r.label === r.predicted,
    };
  });
}
