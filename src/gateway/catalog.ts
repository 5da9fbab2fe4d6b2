/**
 * What the gateway needs to know about a model, read from the registry (Drizzle over D1) and kept in the isolate
 * for a short TTL, so the hot path costs no D1 round trip. Concurrent lookups of one model share one query, and
 * unknown models are cached too (a stream of 404s must not become a stream of D1 queries).
 *
 * Staleness is bounded by the TTL: a variant activated or retired through another isolate is seen here at most
 * `ttlMs` later. `invalidate` lets same-isolate writers (and tests) drop an entry at once.
 */

import type { ModelRow, TaskSlaRow, VariantRow } from "../registry/schema";
import {
  type AliasWithVersion,
  findModel,
  findTaskSla,
  listAliases,
  listVariants,
  registryDb,
} from "../registry/store";
import type { RoutableVariant, Sla } from "./routing";

export interface CatalogEntry {
  model: ModelRow;
  /** Every variant of the model, by version. */
  variants: VariantRow[];
  sla: TaskSlaRow | null;
  aliases: AliasWithVersion[];
}

interface Cached {
  expiresAt: number;
  value: Promise<CatalogEntry | null>;
}

export class Catalog {
  private readonly entries = new Map<string, Cached>();
  /** D1 round trips made (observable so a test can prove the cache works). */
  queries = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
    /** Bound on cached names, so requests for endless unknown names cannot grow the isolate's memory. */
    private readonly maxEntries = 1_000,
  ) {}

  /** The model and its variants, SLA and aliases; null when no such model is registered. */
  lookup(d1: D1Database, name: string): Promise<CatalogEntry | null> {
    const hit = this.entries.get(name);
    if (hit && hit.expiresAt > this.now()) return hit.value;
    const value = this.query(d1, name);
    const entry: Cached = { expiresAt: this.now() + this.ttlMs, value };
    this.entries.delete(name);
    this.entries.set(name, entry);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    // A failed query (D1 unavailable) must not be served from the cache.
    value.catch(() => {
      if (this.entries.get(name) === entry) this.entries.delete(name);
    });
    return value;
  }

  invalidate(name?: string): void {
    if (name === undefined) this.entries.clear();
    else this.entries.delete(name);
  }

  private async query(d1: D1Database, name: string): Promise<CatalogEntry | null> {
    const db = registryDb(d1);
    this.queries++;
    const model = await findModel(db, name);
    if (!model) return null;
    const [variants, sla, aliases] = await Promise.all([
      listVariants(db, model.id),
      findTaskSla(db, model.task),
      listAliases(db, model.id),
    ]);
    return { model, variants, sla: sla ?? null, aliases };
  }
}

/** The registry row as the routing policy sees it. */
export function routable(v: VariantRow): RoutableVariant {
  return {
    version: v.version,
    status: v.status,
    accuracy: v.accuracy,
    latencyP50Ms: v.latencyP50Ms,
    params: v.params,
    sparsity: v.sparsity,
  };
}

export function slaOf(row: TaskSlaRow | null): Sla | null {
  if (!row) return null;
  return { metric: row.metric, min: row.min, maxLatencyMs: row.maxLatencyMs ?? null, strict: row.strict };
}

/**
 * A pinned version: a number (`3`) or an alias name (`prod`). Retired variants are not served; staged ones are,
 * so a variant can be tried by version before it takes routed traffic.
 */
export function findPinned(entry: CatalogEntry, version: string): VariantRow | undefined {
  const byAlias = entry.aliases.find((a) => a.alias === version);
  const n = byAlias ? byAlias.version : /^[1-9][0-9]{0,9}$/.test(version) ? Number(version) : Number.NaN;
  return entry.variants.find((v) => v.version === n && v.status !== "retired");
}
