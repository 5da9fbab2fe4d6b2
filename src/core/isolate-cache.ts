/**
 * The one shape of per-isolate cache the Worker uses for registry lookups: bounded (least recently used go
 * first), each value trusted for a TTL, and invalidated explicitly. A generation counter makes invalidation safe
 * against queries in flight: a value loaded across an invalidation is returned to its request but not cached.
 *
 * Only settled values are shared between requests, never a promise in flight: workerd cancels a request that
 * waits on I/O another request started ("the Worker's code had hung"), so concurrent misses each load.
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
}

export class IsolateCache<V> {
  private readonly entries = new Map<string, { expiresAt: number; value: V }>();
  private generation = 0;
  private readonly now: () => number;
  /** Loads made (observable so a test can prove the cache works). */
  loads = 0;

  constructor(private readonly options: IsolateCacheOptions<V>) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value within its TTL, else `load()`'s (cached unless invalidated meanwhile). Errors cache nothing. */
  async get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit && hit.expiresAt > this.now()) {
      this.entries.delete(key); // re-insert: most recently used last
      this.entries.set(key, hit);
      return hit.value;
    }
    // The TTL counts from when the load was sent, so a write during the load is seen within one TTL at most.
    const sentAt = this.now();
    const generation = this.generation;
    this.loads++;
    const value = await load();
    if (generation === this.generation && (this.options.keep?.(value) ?? true)) {
      this.entries.delete(key);
      this.entries.set(key, { expiresAt: sentAt + this.options.ttlMs, value });
      while (this.entries.size > this.options.maxEntries) {
        this.entries.delete(this.entries.keys().next().value as string);
      }
    }
    return value;
  }

  /** Drops one key, or everything; loads in flight at this moment will not be cached. */
  invalidate(key?: string): void {
    this.generation++;
    if (key === undefined) this.entries.clear();
    else this.entries.delete(key);
  }
}
