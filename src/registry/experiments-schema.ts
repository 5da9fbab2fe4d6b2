/**
 * Experiment tables (A/B tests of a model's variants), in their own file and migration so the registry schema
 * stays the registry's. drizzle.config.ts lists both files; `npm run db:generate` covers them together.
 */
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { models, variants } from "./schema";

const timestamp = (column: string) =>
  text(column).notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`);

export const EXPERIMENT_STATUSES = ["draft", "running", "stopped", "promoted"] as const;
export type ExperimentStatus = (typeof EXPERIMENT_STATUSES)[number];

export interface ExperimentGuardrails {
  /** largest acceptable error rate of an arm, e.g. 0.01 */
  maxErrorRate?: number;
  /** largest acceptable p95 latency of an arm, in ms */
  maxP95Ms?: number;
}

export const experiments = sqliteTable(
  "experiments",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    modelId: integer("model_id")
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    status: text("status", { enum: EXPERIMENT_STATUSES }).notNull().default("draft"),
    /** Hash seed of the sticky assignment; random at creation and never changed, so assignments never move. */
    seed: text("seed").notNull(),
    /** A request header naming the unit (e.g. `x-sluice-user`), or `api-key` (the caller's API key). */
    unit: text("unit").notNull(),
    primaryMetric: text("primary_metric", { enum: ["accuracy", "latency"] }).notNull(),
    guardrails: text("guardrails", { mode: "json" }).$type<ExperimentGuardrails>().notNull(),
    /** two-sided significance level */
    alpha: real("alpha").notNull(),
    design: text("design", { enum: ["fixed", "sequential"] }).notNull(),
    /** required for `fixed`; optional tuning point for `sequential` */
    plannedUnits: integer("planned_units"),
    /** absolute accuracy margin for non-inferiority against control (0: only against the task SLA) */
    nonInferiorityMargin: real("non_inferiority_margin").notNull().default(0),
    controlArm: integer("control_arm").notNull().default(0),
    /** arm index that `promote` made the model's production variant */
    winnerArm: integer("winner_arm"),
    createdAt: timestamp("created_at"),
    startedAt: text("started_at"),
    stoppedAt: text("stopped_at"),
  },
  (t) => [
    index("experiments_model").on(t.modelId),
    // At most one running experiment per model, enforced by the database itself so that two concurrent
    // starts cannot both win (the route turns the violation into a 409).
    uniqueIndex("experiments_one_running_per_model").on(t.modelId).where(sql`status = 'running'`),
  ],
);

export const experimentArms = sqliteTable(
  "experiment_arms",
  {
    experimentId: integer("experiment_id")
      .notNull()
      .references(() => experiments.id, { onDelete: "cascade" }),
    /** 0-based position; assignment ranges follow this order */
    arm: integer("arm").notNull(),
    /** null once the variant is deleted (only possible after the experiment stopped); `version` keeps history */
    variantId: integer("variant_id").references(() => variants.id, { onDelete: "set null" }),
    version: integer("version").notNull(),
    weight: real("weight").notNull(),
  },
  (t) => [primaryKey({ columns: [t.experimentId, t.arm] }), index("experiment_arms_variant").on(t.variantId)],
);

/**
 * The event store: one row per served request in an experiment (an "exposure").
 *
 * Per-request rows rather than per-arm aggregates, because
 * - the queue delivers at least once: `request_id` is UNIQUE and the consumer inserts with ON CONFLICT DO
 *   NOTHING, so a retried batch can never count a request twice (aggregates would need a separate dedup
 *   table anyway);
 * - feedback arrives later, keyed by request id, and joins to its exposure (arm, predicted label) at
 *   analysis time in any order;
 * - distinct units per arm (for the sample-ratio check) need the unit ids.
 * The cost, a row per request, is fine at experiment scale; results aggregate with one GROUP BY per query.
 */
export const exposures = sqliteTable(
  "exposures",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    requestId: text("request_id").notNull().unique(),
    experimentId: integer("experiment_id")
      .notNull()
      .references(() => experiments.id, { onDelete: "cascade" }),
    arm: integer("arm").notNull(),
    /** null when the request had no unit id (assigned at random, counted apart) */
    unitId: text("unit_id"),
    sticky: integer("sticky", { mode: "boolean" }).notNull(),
    /** version that actually served the request (differs from the arm's when the arm failed and fell back) */
    servedVersion: integer("served_version"),
    /** server-side time of the whole request (route, load, tokenize, infer) */
    latencyMs: real("latency_ms").notNull(),
    /** the arm's variant failed to load or run this request */
    error: integer("error", { mode: "boolean" }).notNull(),
    /** predicted label, when the request had exactly one prediction (so feedback can be scored) */
    predicted: text("predicted"),
    /** when the gateway served the request (not when the consumer wrote it) */
    servedAt: text("served_at").notNull(),
  },
  (t) => [index("exposures_experiment_arm").on(t.experimentId, t.arm)],
);

/**
 * True labels sent by clients (`POST /v1/feedback`). A separate table keyed by request id, not a column on
 * the exposure, because feedback may arrive before the exposure's queue message has been written; the two
 * join at analysis time.
 */
export const feedback = sqliteTable(
  "feedback",
  {
    requestId: text("request_id").primaryKey(),
    experimentId: integer("experiment_id")
      .notNull()
      .references(() => experiments.id, { onDelete: "cascade" }),
    label: text("label").notNull(),
    createdAt: timestamp("created_at"),
  },
  (t) => [index("feedback_experiment").on(t.experimentId)],
);

/**
 * True labels of requests served outside an experiment (SLA-routed or pinned), from a signed feedback token
 * (src/gateway/feedback-token.ts). The token carries what an exposure row would hold (the version that answered,
 * its prediction, the unit, when it was served), so routed traffic writes nothing per request and only labelled
 * requests cost a row. Keyed by the token's nonce: one label per served request. Deleting a variant or a model
 * deletes its feedback.
 */
export const routedFeedback = sqliteTable(
  "routed_feedback",
  {
    nonce: text("nonce").primaryKey(),
    modelId: integer("model_id")
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    variantId: integer("variant_id")
      .notNull()
      .references(() => variants.id, { onDelete: "cascade" }),
    /** the variant's version (denormalised: the aggregate groups by it without a join) */
    version: integer("version").notNull(),
    /** digest of the request's unit (`u` + 16 hex), null when it had none */
    unitId: text("unit_id"),
    predicted: text("predicted").notNull(),
    label: text("label").notNull(),
    /** when the gateway served the request (from the token), ISO; the live-evidence window is on this */
    servedAt: text("served_at").notNull(),
    createdAt: timestamp("created_at"),
  },
  (t) => [
    index("routed_feedback_model_served").on(t.modelId, t.servedAt),
    index("routed_feedback_variant").on(t.variantId),
  ],
);

export type ExperimentRow = typeof experiments.$inferSelect;
export type ExperimentArmRow = typeof experimentArms.$inferSelect;
export type ExposureRow = typeof exposures.$inferSelect;
export type NewExposure = typeof exposures.$inferInsert;
export type FeedbackRow = typeof feedback.$inferSelect;
export type RoutedFeedbackRow = typeof routedFeedback.$inferSelect;
