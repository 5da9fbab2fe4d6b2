/**
 * Registry queries (Drizzle over D1). Handlers never write SQL; every read and write the registry does is a
 * typed function here.
 */
import { and, asc, count, eq, gte, isNull, lte, or, sql } from "drizzle-orm";
import { type DrizzleD1Database, drizzle } from "drizzle-orm/d1";
import { type IoSignature, type Manifest, manifestPrecision } from "../core/manifest";
import * as schema from "./schema";
import {
  type AliasRow,
  type ApiKeyRow,
  aliases,
  apiKeys,
  type ModelRow,
  models,
  registryGeneration,
  type TaskSlaRow,
  taskSlas,
  type VariantRow,
  type VariantStatus,
  variants,
} from "./schema";

export type RegistryDb = DrizzleD1Database<typeof schema>;

export function registryDb(d1: D1Database): RegistryDb {
  return drizzle(d1, { schema });
}

/** True when a D1 error (possibly wrapped by Drizzle) is a UNIQUE constraint violation. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (/UNIQUE constraint failed/i.test(e.message)) return true;
  }
  return false;
}

// --- the generation counter (src/registry/generation.ts) --------------------------------------------------

/**
 * The statement that bumps the registry's generation. Every write below runs it in the same D1 batch (one
 * transaction) as the write itself, so a write cannot commit without other isolates learning of it. An upsert,
 * so the row needs no seeding by a migration.
 */
export function bumpGeneration<S extends Record<string, unknown>>(db: DrizzleD1Database<S>) {
  return db
    .insert(registryGeneration)
    .values({ id: 1, generation: 1 })
    .onConflictDoUpdate({
      target: registryGeneration.id,
      set: { generation: sql`${registryGeneration.generation} + 1` },
    });
}

/** The current generation (0 before the first write). */
export async function readGeneration(db: RegistryDb): Promise<number> {
  const row = await db
    .select({ generation: registryGeneration.generation })
    .from(registryGeneration)
    .where(eq(registryGeneration.id, 1))
    .get();
  return row?.generation ?? 0;
}

// --- models -----------------------------------------------------------------------------------------------

export async function findModel(db: RegistryDb, name: string): Promise<ModelRow | undefined> {
  return db.select().from(models).where(eq(models.name, name)).get();
}

export async function listModels(db: RegistryDb): Promise<ModelRow[]> {
  return db.select().from(models).orderBy(asc(models.name)).all();
}

export interface NewModel {
  name: string;
  task: string;
  labels: string[];
  io: IoSignature;
}

export async function insertModel(db: RegistryDb, model: NewModel): Promise<ModelRow> {
  const [rows] = await db.batch([db.insert(models).values(model).returning(), bumpGeneration(db)]);
  return rows[0];
}

// --- variants ---------------------------------------------------------------------------------------------

export interface VariantFilters {
  status?: VariantStatus;
  minAccuracy?: number;
  maxSparsity?: number;
}

export async function listVariants(
  db: RegistryDb,
  modelId: number,
  filters: VariantFilters = {},
): Promise<VariantRow[]> {
  return db
    .select()
    .from(variants)
    .where(
      and(
        eq(variants.modelId, modelId),
        filters.status ? eq(variants.status, filters.status) : undefined,
        filters.minAccuracy !== undefined ? gte(variants.accuracy, filters.minAccuracy) : undefined,
        filters.maxSparsity !== undefined ? lte(variants.sparsity, filters.maxSparsity) : undefined,
      ),
    )
    .orderBy(asc(variants.version))
    .all();
}

export async function findVariant(
  db: RegistryDb,
  modelId: number,
  version: number,
): Promise<VariantRow | undefined> {
  return db
    .select()
    .from(variants)
    .where(and(eq(variants.modelId, modelId), eq(variants.version, version)))
    .get();
}

export async function findVariantBySha256(
  db: RegistryDb,
  modelId: number,
  sha256: string,
): Promise<VariantRow | undefined> {
  return db
    .select()
    .from(variants)
    .where(and(eq(variants.modelId, modelId), eq(variants.sha256, sha256)))
    .get();
}

export interface NewVariant {
  manifest: Manifest;
  artifactKey: string;
  sha256: string;
  bytes: number;
  tokenizerKey: string | null;
  tokenizerSha256: string | null;
}

/**
 * Inserts a staged variant with the model's next version. One D1 batch (a transaction): bump the model's
 * version counter, then insert with the bumped value read inside the same transaction, so concurrent
 * registrations get distinct versions and a failed insert does not consume a version.
 */
export async function insertVariant(db: RegistryDb, modelId: number, v: NewVariant): Promise<VariantRow> {
  const m = v.manifest;
  const [, inserted] = await db.batch([
    db
      .update(models)
      .set({ lastVersion: sql`${models.lastVersion} + 1` })
      .where(eq(models.id, modelId)),
    db
      .insert(variants)
      .values({
        modelId,
        version: sql`(SELECT ${models.lastVersion} FROM ${models} WHERE ${models.id} = ${modelId})`,
        status: "staged",
        sparsity: m.sparsity.removed,
        precision: manifestPrecision(m),
        params: m.sparsity.params,
        accuracy: m.metrics.accuracy,
        latencyP50Ms: m.latency.p50Ms,
        edgeLatencyP50Ms: m.latency.edge?.p50Ms ?? null,
        manifest: m,
        artifactKey: v.artifactKey,
        sha256: v.sha256,
        bytes: v.bytes,
        tokenizerKey: v.tokenizerKey,
        tokenizerSha256: v.tokenizerSha256,
      })
      .returning(),
    bumpGeneration(db),
  ]);
  return inserted[0];
}

export async function setVariantStatus(
  db: RegistryDb,
  variantId: number,
  status: VariantStatus,
): Promise<VariantRow> {
  const [rows] = await db.batch([
    db.update(variants).set({ status }).where(eq(variants.id, variantId)).returning(),
    bumpGeneration(db),
  ]);
  return rows[0];
}

export async function deleteVariantRow(db: RegistryDb, variantId: number): Promise<void> {
  await db.batch([db.delete(variants).where(eq(variants.id, variantId)), bumpGeneration(db)]);
}

/** How many variant rows (of any model) point at an R2 key, as model or tokenizer. */
export async function countArtifactReferences(db: RegistryDb, key: string): Promise<number> {
  const row = await db
    .select({ n: count() })
    .from(variants)
    .where(or(eq(variants.artifactKey, key), eq(variants.tokenizerKey, key)))
    .get();
  return row?.n ?? 0;
}

// --- aliases ----------------------------------------------------------------------------------------------

export interface AliasWithVersion {
  alias: string;
  version: number;
  updatedAt: string;
}

export async function listAliases(db: RegistryDb, modelId: number): Promise<AliasWithVersion[]> {
  return db
    .select({ alias: aliases.alias, version: variants.version, updatedAt: aliases.updatedAt })
    .from(aliases)
    .innerJoin(variants, eq(aliases.variantId, variants.id))
    .where(eq(aliases.modelId, modelId))
    .orderBy(asc(aliases.alias))
    .all();
}

export async function aliasesOfVariant(db: RegistryDb, variantId: number): Promise<AliasRow[]> {
  return db.select().from(aliases).where(eq(aliases.variantId, variantId)).all();
}

export async function upsertAlias(
  db: RegistryDb,
  modelId: number,
  alias: string,
  variantId: number,
): Promise<void> {
  await db.batch([
    db
      .insert(aliases)
      .values({ modelId, alias, variantId })
      .onConflictDoUpdate({
        target: [aliases.modelId, aliases.alias],
        set: { variantId, updatedAt: sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))` },
      }),
    bumpGeneration(db),
  ]);
}

/** Returns whether an alias was there to delete. */
export async function deleteAlias(db: RegistryDb, modelId: number, alias: string): Promise<boolean> {
  const [gone] = await db.batch([
    db
      .delete(aliases)
      .where(and(eq(aliases.modelId, modelId), eq(aliases.alias, alias)))
      .returning(),
    bumpGeneration(db),
  ]);
  return gone.length > 0;
}

// --- task SLAs --------------------------------------------------------------------------------------------

export type NewTaskSla = Omit<TaskSlaRow, "updatedAt">;

export async function upsertTaskSla(db: RegistryDb, sla: NewTaskSla): Promise<TaskSlaRow> {
  const [rows] = await db.batch([
    db
      .insert(taskSlas)
      .values(sla)
      .onConflictDoUpdate({
        target: taskSlas.task,
        set: {
          metric: sla.metric,
          min: sla.min,
          margin: sla.margin,
          confidence: sla.confidence,
          maxLatencyMs: sla.maxLatencyMs,
          strict: sla.strict,
          updatedAt: sql`(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`,
        },
      })
      .returning(),
    bumpGeneration(db),
  ]);
  return rows[0];
}

export async function findTaskSla(db: RegistryDb, task: string): Promise<TaskSlaRow | undefined> {
  return db.select().from(taskSlas).where(eq(taskSlas.task, task)).get();
}

// --- API keys ---------------------------------------------------------------------------------------------

export async function insertApiKey(
  db: RegistryDb,
  key: { keyHash: string; prefix: string; scopes: string[]; models: string[] | null },
): Promise<ApiKeyRow> {
  return db.insert(apiKeys).values(key).returning().get();
}

export async function findActiveApiKeyByHash(
  db: RegistryDb,
  keyHash: string,
): Promise<ApiKeyRow | undefined> {
  return db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.keyHash, keyHash), isNull(apiKeys.revokedAt)))
    .get();
}

export async function listApiKeys(db: RegistryDb): Promise<ApiKeyRow[]> {
  return db.select().from(apiKeys).orderBy(asc(apiKeys.id)).all();
}

/**
 * Marks a key revoked (kept for audit); returns the row, or undefined when there is no such key. Bumps the
 * generation, so every isolate drops its verified keys within the poll interval. (Minting a key does not: an
 * unknown key is never cached, so a new one works everywhere at once.)
 */
export async function revokeApiKey(db: RegistryDb, id: number): Promise<ApiKeyRow | undefined> {
  const [rows] = await db.batch([
    db
      .update(apiKeys)
      .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))` })
      .where(eq(apiKeys.id, id))
      .returning(),
    bumpGeneration(db),
  ]);
  return rows[0];
}
