/**
 * Invalidation across isolates. Every registry write bumps one D1 counter in the same batch (transaction) as
 * the write (`bumpGeneration`, src/registry/store.ts), so no write commits unannounced. Each isolate reads the
 * counter at most once per `REGISTRY_POLL_MS` (default 1000 ms), on the first request after the interval ran
 * out and before that request reads any cache; when it moved, the isolate publishes a change on its signal
 * and every subscribed cache drops what it holds (IsolateCache.invalidate: loads in flight are not cached).
 *
 * The bound: a request that starts `REGISTRY_POLL_MS` plus one generation read after a write committed is
 * answered from registry data at least as new as the write, in every isolate. (The request that finds the
 * interval over waits for the read; requests arriving while it is in flight do not wait, since workerd cancels
 * a request that awaits another request's I/O, hence the one read's time.)
 *
 * A failed read drops every cache (freshness cannot be confirmed) and lets the next request try again.
 */
import type { MiddlewareHandler } from "hono";
import type { AuthBindings } from "./auth";
import { registryConfig } from "./config";
import { type RegistrySignal, type RegistrySignalVariables, registrySignal } from "./invalidation";
import { readGeneration, registryDb } from "./store";

export class RegistryGeneration {
  /** The generation last read; undefined before the first read. */
  private seen: number | undefined;
  private checkedAt = Number.NEGATIVE_INFINITY;
  /** Reads made (observable so a test can prove the poll interval holds). */
  reads = 0;

  constructor(
    readonly signal: RegistrySignal = registrySignal,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the counter if `pollMs` has passed since the last read; returns whether it read. */
  async check(d1: D1Database, pollMs: number): Promise<boolean> {
    const now = this.now();
    if (now - this.checkedAt < pollMs) return false;
    // Claimed before the read, so requests arriving meanwhile do not each read it too.
    this.checkedAt = now;
    this.reads++;
    let generation: number;
    try {
      generation = await readGeneration(registryDb(d1));
    } catch (err) {
      console.error("registry generation read failed; dropping registry caches", err);
      this.checkedAt = Number.NEGATIVE_INFINITY;
      this.signal.publish({});
      return true;
    }
    // The first read publishes too: a concurrent request may have filled a cache before a write that this
    // read already sees.
    if (generation !== this.seen) this.signal.publish({});
    this.seen = generation;
    return true;
  }
}

/** This isolate's watcher. */
export const registryGeneration = new RegistryGeneration();

export interface GenerationCheckOptions {
  /** The watcher (tests pass one per simulated isolate, with its own signal and clock); default: the isolate's. */
  generation?: RegistryGeneration;
  /** Overrides REGISTRY_POLL_MS. */
  pollMs?: number;
}

/**
 * App middleware, before every route that reads a registry cache: sets `c.var.registrySignal` (the registry's
 * write routes publish on it) and polls the generation. A read shows as `server-timing: generation`.
 */
export function checkRegistryGeneration(
  options: GenerationCheckOptions = {},
): MiddlewareHandler<{ Bindings: AuthBindings; Variables: RegistrySignalVariables }> {
  const watcher = options.generation ?? registryGeneration;
  return async (c, next) => {
    c.set("registrySignal", watcher.signal);
    const t0 = performance.now();
    if (await watcher.check(c.env.DB, options.pollMs ?? registryConfig(c.env).registryPollMs)) {
      c.header("server-timing", `generation;dur=${(performance.now() - t0).toFixed(2)}`, { append: true });
    }
    await next();
  };
}
