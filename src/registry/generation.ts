/**
 * Invalidation across isolates. Every registry write bumps one D1 counter in the same batch (transaction) as
 * the write (`bumpGeneration`, src/registry/store.ts), so no write commits unannounced. Each isolate polls the
 * counter, before a request reads any cache; when it moved, the isolate publishes a change on its signal and
 * every subscribed cache drops what it holds (IsolateCache.invalidate: loads in flight are not cached).
 *
 * Polling, with N = `REGISTRY_POLL_MS` (default 1000 ms): once the isolate's latest read is N old, the next
 * request starts a read in the background (waitUntil) and goes on, so a busy isolate never waits for one;
 * only when the latest read is 2N old (an idle isolate) does the request wait for its own. At most one read per
 * N per isolate in steady state.
 *
 * The bound: every request is answered from caches that reflect every write committed before the isolate's
 * latest completed read was sent, and that read is less than 2N old; so a write is seen by every isolate for
 * requests that start 2N after it committed.
 *
 * A failed read drops every cache (freshness cannot be confirmed) and leaves the age as it was, so the next
 * request tries again (waiting, once the age reaches 2N).
 */
import type { MiddlewareHandler } from "hono";
import { queueHeader } from "../http/response-headers";
import type { AuthBindings } from "./auth";
import { registryConfig } from "./config";
import { type RegistrySignal, type RegistrySignalVariables, registrySignal } from "./invalidation";
import { readGeneration, registryDb } from "./store";

export type GenerationCheck = "none" | "background" | "read";

export class RegistryGeneration {
  /** The generation last read; undefined before the first read. */
  private seen: number | undefined;
  /** When the latest completed read was sent: every write committed before it is reflected in the caches. */
  private readAt = Number.NEGATIVE_INFINITY;
  /** When the latest background read was started. */
  private backgroundSince = Number.NEGATIVE_INFINITY;
  /** Reads made (observable so a test can prove the poll interval holds). */
  reads = 0;

  constructor(
    readonly signal: RegistrySignal = registrySignal,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Polls the counter. Once the latest read is `pollMs` old, a read is started in the background (`defer`,
   * the request's waitUntil) and the request goes on; only when it is `2 * pollMs` old (an isolate that was
   * idle, or no `defer`) does the request wait for its own read. Returns what it did.
   */
  async check(
    d1: D1Database,
    pollMs: number,
    defer?: (work: Promise<unknown>) => void,
  ): Promise<GenerationCheck> {
    const now = this.now();
    const age = now - this.readAt;
    if (age < pollMs) return "none";
    if (defer && age < 2 * pollMs) {
      // At most one background read per pollMs: one that failed, or never settled (its request cancelled),
      // is retried pollMs later, not by every request meanwhile.
      if (now - this.backgroundSince < pollMs) return "none";
      this.backgroundSince = now;
      defer(this.read(d1, now));
      return "background";
    }
    await this.read(d1, now);
    return "read";
  }

  private async read(d1: D1Database, sentAt: number): Promise<void> {
    this.reads++;
    let generation: number;
    try {
      generation = await readGeneration(registryDb(d1));
    } catch (err) {
      console.error("registry generation read failed; dropping registry caches", err);
      this.signal.publish({});
      return;
    }
    if (sentAt < this.readAt) return; // a newer read has landed meanwhile
    // The first read publishes too: a concurrent request may have filled a cache before a write that this
    // read already sees.
    if (generation !== this.seen) this.signal.publish({});
    this.seen = generation;
    this.readAt = sentAt;
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
    let defer: ((work: Promise<unknown>) => void) | undefined;
    try {
      const ctx = c.executionCtx;
      defer = (work) => ctx.waitUntil(work);
    } catch {
      defer = undefined; // app.request() without an ExecutionContext: every due read is waited for
    }
    const t0 = performance.now();
    const did = await watcher.check(c.env.DB, options.pollMs ?? registryConfig(c.env).registryPollMs, defer);
    if (did === "read") {
      queueHeader(c, "server-timing", `generation;dur=${(performance.now() - t0).toFixed(2)}`, true);
    }
    await next();
  };
}
