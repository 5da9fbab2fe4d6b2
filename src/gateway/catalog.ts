/**
 * What the gateway needs to know about a model, read from the registry (Drizzle over D1) and kept in the isolate
 * for a short TTL, so the hot path costs no D1 round trip. Unknown models are cached too (a stream of 404s must
 * not become a stream of D1 queries).
 *
 * Only settled results are shared between requests, never a query in flight: workerd cancels a request that
 * awaits a promise another request's I/O will settle ("the Worker's code had hung", see isolate-wait.ts). So
 * concurrent misses (at most one per request in flight, once per TTL) each run their own cheap, indexed query;
 * the first to land fills the cache.
 *
 * Staleness: a variant activated or retired through another isolate is seen here at this isolate's next
 * generation poll (src/registry/generation.ts), at most `ttlMs` later in any case. `invalidate` is how the
 * registry signal (and tests) drop an entry at once.
 */

import { DEFAULT_SLA_CONFIDENCE, decodeBitset } from "../core/evidence";
import { type Defer, IsolateCache } from "../core/isolate-cache";
import { parsePositiveId } from "../http/params";
import type { ModelRow, TaskSlaRow, VariantRow } from "../registry/schema";
import {
  type AliasWithVersion,
  findModel,
  findTaskSla,
  listAliases,
  listVariants,
  registryDb,
} from "../registry/store";
import { type RoutableVariant, routableFields, type Sla, type VariantEvidence } from "./routing";

export interface CatalogEntry {
  model: ModelRow;
  /** Every variant of the model, by version. */
  variants: VariantRow[];
  sla: TaskSlaRow | null;
  aliases: AliasWithVersion[];
}

export class Catalog {
  private readonly cache: IsolateCache<CatalogEntry | null>;

  constructor(
    ttlMs: number,
    now: () => number = Date.now,
    /** Bound on cached names, so requests for endless unknown names cannot grow the isolate's memory. */
    maxEntries = 1_000,
  ) {
    this.cache = new IsolateCache({ ttlMs, maxEntries, now });
  }

  /** D1 round trips made (observable so a test can prove the cache works). */
  get queries(): number {
    return this.cache.loads;
  }

  /** Background reloads started (a busy isolate reloads an entry before its TTL runs out). */
  get refreshes(): number {
    return this.cache.refreshes;
  }

  /**
   * The model and its variants, SLA and aliases; null when no such model is registered. With `defer` (the
   * request's waitUntil), an entry near the end of its TTL is reloaded in the background.
   */
  async lookup(d1: D1Database, name: string, defer?: Defer): Promise<CatalogEntry | null> {
    // A failed query (D1 unavailable) throws and caches nothing; one in flight across a write is not cached.
    return this.cache.get(name, () => this.query(d1, name), defer);
  }

  invalidate(name?: string): void {
    this.cache.invalidate(name);
  }

  private async query(d1: D1Database, name: string): Promise<CatalogEntry | null> {
    const db = registryDb(d1);
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

/** Decoded evidence per cached row (rows live as long as their catalog entry, so this cannot grow past it). */
const evidenceOfRow = new WeakMap<VariantRow, VariantEvidence>();

function evidenceOf(v: VariantRow): VariantEvidence {
  let e = evidenceOfRow.get(v);
  if (!e) {
    const { evalSet, evidence } = v.manifest.metrics;
    let correct: boolean[] | undefined;
    try {
      correct = evidence ? decodeBitset(evidence.correct, evalSet.size) : undefined;
    } catch {
      correct = undefined; // a malformed bitset is no evidence; the comparison falls back to unpaired
    }
    e = { evalSet: evalSet.name, evalSha256: evalSet.sha256, size: evalSet.size, correct };
    evidenceOfRow.set(v, e);
  }
  return e;
}

/** The registry row as the routing policy sees it. */
export function routable(v: VariantRow): RoutableVariant {
  return { ...routableFields(v), evidence: evidenceOf(v) };
}

export function slaOf(row: TaskSlaRow | null): Sla | null {
  if (!row) return null;
  return {
    metric: row.metric,
    min: row.min,
    margin: row.margin ?? null,
    confidence: row.confidence ?? DEFAULT_SLA_CONFIDENCE,
    maxLatencyMs: row.maxLatencyMs ?? null,
    strict: row.strict,
  };
}

/**
 * A pinned version: a number (`3`) or an alias name (`prod`). Retired variants are not served; staged ones are,
 * so a variant can be tried by version before it takes routed traffic.
 */
export function findPinned(entry: CatalogEntry, version: string): VariantRow | undefined {
  const byAlias = entry.aliases.find((a) => a.alias === version);
  const n = byAlias ? byAlias.version : parsePositiveId(version);
  return entry.variants.find((v) => v.version === n && v.status !== "retired");
}
