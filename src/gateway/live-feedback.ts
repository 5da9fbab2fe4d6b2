/**
 * The per-variant aggregate of live feedback that routing reads (the rule itself is live-evidence.ts), computed
 * in one place: one D1 round trip per model, cached per isolate.
 *
 * Two sources, both attributed to the version that actually answered (so a request that fell back counts for
 * the variant that served it), never to the one a client names:
 * - experiment feedback (`feedback`, by request id) joined to its exposure, which the gateway recorded with the
 *   served version, the prediction and the unit; errors and requests without a single prediction carry nothing
 *   to score;
 * - routed feedback (`routed_feedback`), from a feedback token the gateway signed when it served the request
 *   (src/gateway/feedback-token.ts), which carries the same facts.
 * The unit is the request's unit id; a request without one is its own unit, and is also counted apart
 * (`withoutUnit`) so the explanation shows how much of the evidence assumes such requests are independent.
 * Units of the two sources are never merged (an experiment's unit ids are raw, a token's are digests): a user
 * seen in both counts as two units.
 *
 * Only requests served within the window (`liveFeedbackWindowMs`, default 14 days, on the served time, not the
 * label's) count, so a variant's old traffic does not decide its fate forever.
 *
 * Each source's query groups twice, per (version, unit) and then per version, and returns the per-unit sums of
 * squares the cluster-robust interval needs: one row per variant, however many units labelled it. As the
 * sources' units are disjoint, their sums add.
 */
import { and, eq, gte, isNotNull, type SQL, type Subquery, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { type Defer, IsolateCache } from "../core/isolate-cache";
import { experiments, exposures, feedback, routedFeedback } from "../registry/experiments-schema";
import { onRegistryChange, type RegistrySignal } from "../registry/invalidation";
import type { LiveFeedback } from "./live-evidence";

/** How long an isolate reuses a model's feedback aggregate by default (GatewayConfig.liveFeedbackTtlMs). */
export const LIVE_FEEDBACK_TTL_MS = 30_000;
/** Default window of live evidence (GatewayConfig.liveFeedbackWindowMs, var LIVE_FEEDBACK_WINDOW_DAYS). */
export const LIVE_FEEDBACK_WINDOW_MS = 14 * 86_400_000;
/** Most models one isolate keeps an aggregate for (least recently used go first). */
export const LIVE_FEEDBACK_CACHE_MAX = 1_000;

type Db = ReturnType<typeof drizzle>;

type Aliased = SQL.Aliased<number>;
/** A per-(version, unit) subquery: one row per unit with its labelled, correct and unit-less request counts. */
type PerUnit = Subquery<"per_unit"> & {
  version: Aliased;
  labelled: Aliased;
  correct: Aliased;
  unitless: Aliased;
};

/** Per-unit rows to per-version sums (the moments `liveSummary` needs), as one select. */
function perVersion(db: Db, u: PerUnit) {
  return db
    .select({
      version: sql<number>`${u.version}`,
      units: sql<number>`count(*)`,
      labelled: sql<number>`sum(${u.labelled})`,
      correct: sql<number>`sum(${u.correct})`,
      correctSq: sql<number>`sum(${u.correct} * ${u.correct})`,
      correctLabelled: sql<number>`sum(${u.correct} * ${u.labelled})`,
      labelledSq: sql<number>`sum(${u.labelled} * ${u.labelled})`,
      withoutUnit: sql<number>`sum(${u.unitless})`,
    })
    .from(u)
    .groupBy(sql`${u.version}`);
}

/** Per version of the model: its labelled live traffic served at or after `since` (both sources added). */
export async function queryLiveFeedback(
  d1: D1Database,
  modelId: number,
  since: Date = new Date(Date.now() - LIVE_FEEDBACK_WINDOW_MS),
): Promise<Map<number, LiveFeedback>> {
  const db = drizzle(d1);
  const cutoff = since.toISOString(); // same format as served_at, so the text comparison is chronological
  const expUnit = sql`coalesce(${exposures.unitId}, ${exposures.requestId})`;
  const fromExperiments = db
    .select({
      version: sql<number>`${exposures.servedVersion}`.as("version"),
      labelled: sql<number>`count(*)`.as("labelled"),
      correct: sql<number>`sum(case when ${feedback.label} = ${exposures.predicted} then 1 else 0 end)`.as(
        "correct",
      ),
      unitless: sql<number>`sum(case when ${exposures.unitId} is null then 1 else 0 end)`.as("unitless"),
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
        gte(exposures.servedAt, cutoff),
      ),
    )
    .groupBy(exposures.servedVersion, expUnit)
    .as("per_unit");
  const routedUnit = sql`coalesce(${routedFeedback.unitId}, ${routedFeedback.nonce})`;
  const fromRouted = db
    .select({
      version: sql<number>`${routedFeedback.version}`.as("version"),
      labelled: sql<number>`count(*)`.as("labelled"),
      correct:
        sql<number>`sum(case when ${routedFeedback.label} = ${routedFeedback.predicted} then 1 else 0 end)`.as(
          "correct",
        ),
      unitless: sql<number>`sum(case when ${routedFeedback.unitId} is null then 1 else 0 end)`.as("unitless"),
    })
    .from(routedFeedback)
    .where(and(eq(routedFeedback.modelId, modelId), gte(routedFeedback.servedAt, cutoff)))
    .groupBy(routedFeedback.version, routedUnit)
    .as("per_unit");
  const [experimentRows, routedRows] = await db.batch([
    perVersion(db, fromExperiments),
    perVersion(db, fromRouted),
  ]);
  const out = new Map<number, LiveFeedback>();
  const add = (rows: typeof experimentRows, source: "fromExperiments" | "fromRouted") => {
    for (const { version, ...f } of rows) {
      const prev = out.get(version);
      const sum: LiveFeedback = prev
        ? {
            units: prev.units + f.units,
            labelled: prev.labelled + f.labelled,
            correct: prev.correct + f.correct,
            correctSq: prev.correctSq + f.correctSq,
            correctLabelled: prev.correctLabelled + f.correctLabelled,
            labelledSq: prev.labelledSq + f.labelledSq,
            withoutUnit: (prev.withoutUnit ?? 0) + f.withoutUnit,
            fromExperiments: prev.fromExperiments ?? 0,
            fromRouted: prev.fromRouted ?? 0,
          }
        : { ...f, fromExperiments: 0, fromRouted: 0 };
      sum[source] = f.labelled;
      out.set(version, sum);
    }
  };
  add(experimentRows, "fromExperiments");
  add(routedRows, "fromRouted");
  return out;
}

/**
 * Per-isolate cache of the aggregate, keyed by the model's registry id (taken from the catalog row, never from
 * the request; the window is the isolate's configuration, not part of the key), bounded and with a TTL. Registry writes (a variant activated, a model deleted) drop it at once
 * (src/registry/invalidation.ts); new feedback is seen when the TTL runs out.
 */
export class LiveFeedbackCache {
  private readonly cache: IsolateCache<Map<number, LiveFeedback>>;

  constructor(
    ttlMs = LIVE_FEEDBACK_TTL_MS,
    now: () => number = Date.now,
    maxEntries = LIVE_FEEDBACK_CACHE_MAX,
    private readonly windowMs = LIVE_FEEDBACK_WINDOW_MS,
  ) {
    this.cache = new IsolateCache({ ttlMs, maxEntries, now });
    this.now = now;
  }

  private readonly now: () => number;

  /** D1 queries made (observable so a test can prove the cache works). */
  get queries(): number {
    return this.cache.loads;
  }

  get size(): number {
    return this.cache.size;
  }

  /** With `defer` (the request's waitUntil), an aggregate near the end of its TTL is reloaded in the background. */
  lookup(d1: D1Database, modelId: number, defer?: Defer): Promise<Map<number, LiveFeedback>> {
    if (!Number.isSafeInteger(modelId) || modelId <= 0) throw new RangeError(`model id ${modelId}`);
    // The window's start moves with the clock; a cached aggregate's is at most one TTL old.
    return this.cache.get(
      String(modelId),
      () => queryLiveFeedback(d1, modelId, new Date(this.now() - this.windowMs)),
      defer,
    );
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
