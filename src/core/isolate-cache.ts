/**
 * The one shape of per-isolate cache the Worker uses for registry lookups: bounded (least recently used go
 * first), each value trusted for a TTL, and invalidated explicitly. A generation counter makes invalidation safe
 * against queries in flight: a value loaded across an invalidation is returned to its request but not cached.
 *
 * Only settled values are shared between requests, never a promise in flight: workerd cancels a request that
 * waits on I/O another request started ("the Worker's code had hung"), so concurrent misses each load.
 *
 * Refresh ahead: a hit on a value older than `refreshAfterMs` (counted, like the TTL, from when its load was
 * sent) is answered from the cache and, when the caller passes `defer` (its request's waitUntil), starts a
 * reload in the background that replaces the entry when it lands. A busy isolate then never waits for a reload
 * on the request path, and the bound does not move: no value is served more than `ttlMs` after its load was
 * sent (an entry whose reload has not landed by then is a miss, loaded in the foreground as before). A reload
 * whose value may not be kept (`keep`: a revoked API key) drops the entry at once. At most one background reload
 * per key per `refreshAfterMs`, also when one fails or never settles (its request cancelled).
 *
 * Callers key it only by validated names (a model name that passed ModelName), so a client cannot choose what
 * fills it; the bound holds either way.
 */
export interface IsolateCacheOptions<V = unknown> {
  ttlMs: number;
  maxEntries: number;
  now?: () => number;
  /** Whether a loaded value may be stored (default: every value); e.g. the API-key cache keeps no misses. */
  keep?: (value: V) => boolean;
  /** Age after which a hit also reloads in the background (with `defer`); default 0.8 x ttlMs. */
  refreshAfterMs?: number;
}

/** Hands background work to the request's `waitUntil`, so it finishes after the response. */
export type Defer = (work: Promise<unknown>) => void;

interface Entry<V> {
  /** When the load that produced `value` was sent. */
  sentAt: number;
  value: V;
  /** When the latest background reload of this entry was started. */
  refreshSince?: number;
}

export class IsolateCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private generation = 0;
  private readonly now: () => number;
  private readonly refreshAfterMs: number;
  /** Loads made, foreground and background (observable so a test can prove the cache works). */
  loads = 0;
  /** Background reloads started (observable so a test can tell them from foreground loads). */
  refreshes = 0;

  constructor(private readonly options: IsolateCacheOptions<V>) {
    this.now = options.now ?? Date.now;
    this.refreshAfterMs = options.refreshAfterMs ?? options.ttlMs * 0.8;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The cached value within its TTL, else `load()`'s (cached unless invalidated meanwhile). Errors cache nothing.
   * With `defer`, a hit past `refreshAfterMs` also reloads in the background (see the module comment).
   */
  async get(key: string, load: () => Promise<V>, defer?: Defer): Promise<V> {
    const now = this.now();
    const hit = this.entries.get(key);
    if (hit && hit.sentAt + this.options.ttlMs > now) {
      this.entries.delete(key); // re-insert: most recently used last
      this.entries.set(key, hit);
      if (
        defer &&
        now - hit.sentAt >= this.refreshAfterMs &&
        (hit.refreshSince === undefined || now - hit.refreshSince >= this.refreshAfterMs)
      ) {
        hit.refreshSince = now;
        this.refreshes++;
        defer(
          this.load(key, load).catch((err) => {
            // The entry stays until its TTL; then a foreground load answers (and reports) the failure.
            console.warn(`isolate cache: background reload of '${key.slice(0, 80)}' failed`, err);
          }),
        );
      }
      return hit.value;
    }
    return this.load(key, load);
  }

  /** Drops one key, or everything; loads in flight at this moment will not be cached. */
  invalidate(key?: string): void {
    this.generation++;
    if (key === undefined) this.entries.clear();
    else this.entries.delete(key);
  }

  private async load(key: string, load: () => Promise<V>): Promise<V> {
    // The TTL counts from when the load was sent, so a write during the load is seen within one TTL at most.
    const sentAt = this.now();
    const generation = this.generation;
    this.loads++;
    const value = await load();
    if (generation !== this.generation) return value;
    const current = this.entries.get(key);
    if (current && current.sentAt > sentAt) return value; // a newer load has landed meanwhile
    this.entries.delete(key);
    if (this.options.keep?.(value) ?? true) {
      this.entries.set(key, { sentAt, value });
      while (this.entries.size > this.options.maxEntries) {
        this.entries.delete(this.entries.keys().next().value as string);
      }
    }
    return value;
  }
}
