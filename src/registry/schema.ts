/**
 * Registry schema as code. `npm run db:generate` (drizzle-kit) turns changes here into SQL under
 * `migrations/`; a test fails when the two drift apart.
 */
import { sql } from "drizzle-orm";
import { index, integer, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import type { IoSignature, Manifest } from "../core/manifest";

const timestamp = (column: string) =>
  text(column).notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`);

export const models = sqliteTable("models", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  name: text("name").notNull().unique(),
  task: text("task").notNull(),
  labels: text("labels", { mode: "json" }).$type<string[]>().notNull(),
  io: text("io", { mode: "json" }).$type<IoSignature>().notNull(),
  /** Highest variant version ever assigned; versions are never reused, even after a variant is deleted. */
  lastVersion: integer("last_version").notNull().default(0),
  createdAt: timestamp("created_at"),
});

export const VARIANT_STATUSES = ["staged", "active", "retired"] as const;
export type VariantStatus = (typeof VARIANT_STATUSES)[number];

export const variants = sqliteTable(
  "variants",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    modelId: integer("model_id")
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    /** Auto-incremented per model: 1, 2, 3, ... (never reused). */
    version: integer("version").notNull(),
    status: text("status", { enum: VARIANT_STATUSES }).notNull().default("staged"),
    // Manifest fields the gateway queries and routes on.
    sparsity: real("sparsity").notNull(),
    /** Weight precision, the family's second axis (manifest `precision`; rows from before it are fp32). */
    precision: text("precision", { enum: ["fp32", "int8"] })
      .notNull()
      .default("fp32"),
    params: integer("params").notNull(),
    accuracy: real("accuracy").notNull(),
    /** onnxruntime-node p50 at the manifest's batch x seqLen (`latency.p50Ms`). */
    latencyP50Ms: real("latency_p50_ms").notNull(),
    /** onnxruntime-web wasm p50, the runtime that serves it (`latency.edge.p50Ms`); null: not measured. */
    edgeLatencyP50Ms: real("edge_latency_p50_ms"),
    manifest: text("manifest", { mode: "json" }).$type<Manifest>().notNull(),
    artifactKey: text("artifact_key").notNull(),
    sha256: text("sha256").notNull(),
    bytes: integer("bytes").notNull(),
    tokenizerKey: text("tokenizer_key"),
    tokenizerSha256: text("tokenizer_sha256"),
    createdAt: timestamp("created_at"),
  },
  (t) => [
    uniqueIndex("variants_model_version").on(t.modelId, t.version),
    uniqueIndex("variants_model_sha256").on(t.modelId, t.sha256),
    index("variants_model_status").on(t.modelId, t.status),
  ],
);

export const aliases = sqliteTable(
  "aliases",
  {
    modelId: integer("model_id")
      .notNull()
      .references(() => models.id, { onDelete: "cascade" }),
    alias: text("alias").notNull(),
    variantId: integer("variant_id")
      .notNull()
      .references(() => variants.id, { onDelete: "restrict" }),
    updatedAt: timestamp("updated_at"),
  },
  (t) => [uniqueIndex("aliases_model_alias").on(t.modelId, t.alias)],
);

export const taskSlas = sqliteTable("task_slas", {
  task: text("task").primaryKey(),
  metric: text("metric", { enum: ["accuracy"] }).notNull(),
  min: real("min").notNull(),
  /** Non-inferiority margin to the most accurate active variant, proven at `confidence` (gateway/routing.ts). */
  margin: real("margin"),
  confidence: real("confidence"),
  maxLatencyMs: real("max_latency_ms"),
  /** Strict SLAs answer 503 instead of serving a variant that misses them. */
  strict: integer("strict", { mode: "boolean" }).notNull().default(false),
  updatedAt: timestamp("updated_at"),
});

/** What an API key may do: `admin` implies `infer` and `feedback` (registry writes still need the admin token). */
export const API_KEY_SCOPES = ["infer", "feedback", "admin"] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export const apiKeys = sqliteTable("api_keys", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  /** sha256 of the key; the key itself is shown once at creation and never stored. */
  keyHash: text("key_hash").notNull().unique(),
  prefix: text("prefix").notNull(),
  scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull(),
  /** Model names the key may use; null = every model. */
  models: text("models", { mode: "json" }).$type<string[]>(),
  createdAt: timestamp("created_at"),
  revokedAt: text("revoked_at"),
});

export type ModelRow = typeof models.$inferSelect;
export type VariantRow = typeof variants.$inferSelect;
export type AliasRow = typeof aliases.$inferSelect;
export type TaskSlaRow = typeof taskSlas.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;

/**
 * One row (id 1): a counter every registry write bumps in the same D1 batch as the write, so no write can
 * commit without it. Each isolate polls it (src/registry/generation.ts) and drops its registry-derived caches
 * when it moved: how a write made through one isolate reaches the caches of all the others.
 */
export const registryGeneration = sqliteTable("registry_generation", {
  id: integer("id").primaryKey(),
  generation: integer("generation").notNull().default(0),
});
