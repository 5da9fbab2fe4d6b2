/**
 * The per-variant aggregate of live feedback that routing reads (the rule itself is live-evidence.ts), computed
 * in one place: one D1 query per model, cached per isolate.
 *
 * Feedback (`POST /v1/feedback`) is stored by request id; it joins its exposure, which says which version
 * actually served the request (`served_version`, so an arm that fell back counts for the variant that answered),
 * what it predicted and for which unit. Errors and requests without a single prediction carry no label to
 * score. The unit is the exposure's unit id, or the request id when the request had none (then the request is
 * its own unit, the conservative choice). Feedback of every experiment of the model counts, with no time window.
 *
 * The query groups twice, per (version, unit) and then per version, and returns the per-unit sums of squares
 * the cluster-robust interval needs: one row per variant, however many units labelled it.
 */
import { and, eq, isNotNull, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { IsolateCache } from "../core/isolate-cache";
import { experiments, exposures, feedback } from "../registry/experiments-schema";
import { onRegistryChange, type RegistrySignal } from "../registry/invalidation";
import type { LiveFeedback } from "./live-evidence";

/** How long an isolate reuses a model's feedback aggregate by default (GatewayConfig.liveFeedbackTtlMs). */
export const LIVE_FEEDBACK_TTL_MS = 30_000;
/** Most models one isolate keeps an aggregate for (least recently used go first). */
export const LIVE_FEEDBACK_CACHE_MAX = 1_000;

/** Per version of the model: its labelled live traffic. */
export async function queryLiveFeedback(d1: D1Database, modelId: number): Promise<Map<number, LiveFeedback>> {
  const db = drizzle(d1);
  const correct = sql<number>`sum(case when ${feedback.label} = ${exposures.predicted} then 1 else 0 end)`;
  const perUnit = db
    .select({
      version: sql<number>`${exposures.servedVersion}`.as("version"),
      unit: sql<string>`coalesce(${exposures.unitId}, ${exposures.requestId})`.as("unit"),
      labelled: sql<number>`count(*)`.as("labelled"),
      correct: correct.as("correct"),
    })
    .from(feedback)
    .innerJoin(exposures, eq(exposures.requestId, feedback.requestId))
    .innerJoin(experiments, eq(experiments.id, feedback.experimentId))
    .where(
      and(
        eq(experiments.modelId, modelId),
        eq(exposures.error, false),
        isNotNull(exposures.predicted),
        isNotNull(exposures.servedVersion),
      ),
    )
    .groupBy(exposures.servedVersion, sql`coalesce(${exposures.unitId}, ${exposures.requestId})`)
    .as("per_unit");
  const rows = await db
    .select({
      version: perUnit.version,
      units: sql<number>`count(*)`,
      labelled: sql<number>`sum(${perUnit.labelled})`,
      correct: sql<number>`sum(${perUnit.correct})`,
      correctSq: sql<number>`sum(${perUnit.correct} * ${perUnit.correct})`,
      correctLabelled: sql<number>`sum(${perUnit.correct} * ${perUnit.labelled})`,
      labelledSq: sql<number>`sum(${perUnit.labelled} * ${perUnit.labelled})`,
    })
    .from(perUnit)
    .groupBy(sql`${perUnit.version}`)
    .all();
  return new Map(rows.map(({ version, ...f }) => [version, f]));
}

/**
 * Per-isolate cache of the aggregate, keyed by the model's registry id (taken from the catalog row, never from
 * the request), bounded and with a TTL. Registry writes (a variant activated, a model deleted) drop it at once
 * (src/registry/invalidation.ts); new feedback is seen when the TTL runs out.
 */
export class LiveFeedbackCache {
  private readonly cache: IsolateCache<Map<number, LiveFeedback>>;

  constructor(
    ttlMs = LIVE_FEEDBACK_TTL_MS,
    now: () => number = Date.now,
    maxEntries = LIVE_FEEDBACK_CACHE_MAX,
  ) {
    this.cache = new IsolateCache({ ttlMs, maxEntries, now });
  }

  /** D1 queries made (observable so a test can prove the cache works). */
  get queries(): number {
    return this.cache.loads;
  }

  get size(): number {
    return this.cache.size;
  }

  lookup(d1: D1Database, modelId: number): Promise<Map<number, LiveFeedback>> {
    if (!Number.isSafeInteger(modelId) || modelId <= 0) throw new RangeError(`model id ${modelId}`);
    return this.cache.get(String(modelId), () => queryLiveFeedback(d1, modelId));
  }

  invalidate(): void {
    this.cache.invalidate();
  }

  /** Drops everything on any registry change (keys are ids, changes name models; writes are rare). */
  subscribe(signal?: RegistrySignal): () => void {
    const drop = () => this.invalidate();
    return signal ? signal.on(drop) : onRegistryChange(drop);
  }
}
