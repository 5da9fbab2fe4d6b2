/**
 * Serving one request on a routed list of variants: load (through the session cache), run, and on failure fall
 * back to the next candidate. A variant whose artifact cannot be loaded is cooled down at once. A variant that
 * fails to *run* is cooled down only if a later candidate runs the same request. Inputs are validated against
 * the io signature and the graph's own limits before any run (oip.ts), so a run that still fails on every
 * variant is the gateway's failure: a 500 "inference failed" with the request id, the runtime's message logged
 * with that id and never answered, and nobody is cooled down (the variants did not fail each other's inputs).
 */
import type { VariantRow } from "../registry/schema";
import type { CatalogEntry } from "./catalog";
import { GatewayError } from "./errors";
import type { KeepAlive, LoadedVariant, SessionCache } from "./sessions";

/** Isolate-local memory of recently failing variants. */
export class Cooldowns {
  private readonly until = new Map<string, number>();

  constructor(
    readonly ms: number,
    private readonly now: () => number = Date.now,
  ) {}

  mark(modelId: number, version: number): void {
    this.until.set(`${modelId}@${version}`, this.now() + this.ms);
  }

  /** Versions of the model still cooling down. */
  active(modelId: number): Set<number> {
    const out = new Set<number>();
    const now = this.now();
    for (const [key, until] of this.until) {
      const [model, version] = key.split("@").map(Number);
      if (until <= now) this.until.delete(key);
      else if (model === modelId) out.add(version);
    }
    return out;
  }
}

/** Raised by a request's `run` step when the model itself fails on the input (as opposed to loading). */
export class RunError extends Error {
  override name = "RunError";
}

/**
 * Per-stage durations in milliseconds, reported in `server-timing`. `total` counts from the handler's start;
 * `pre` (from `since`) is the time between the request's arrival and that start, spent in the app's middleware.
 */
export class Timings {
  private readonly start = performance.now();
  readonly stages: Record<string, number> = { route: 0, load: 0, tokenize: 0, infer: 0 };

  /** Timings of a handler whose request arrived at `receivedAt` (src/http/received-at.ts), if known. */
  static since(receivedAt: number | undefined): Timings {
    const t = new Timings();
    if (receivedAt !== undefined) t.stages.pre = Math.max(0, t.start - receivedAt);
    return t;
  }

  async time<T>(stage: string, work: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      this.stages[stage] = (this.stages[stage] ?? 0) + performance.now() - t0;
    }
  }

  add(stage: string, ms: number): void {
    this.stages[stage] = (this.stages[stage] ?? 0) + ms;
  }

  header(): string {
    const total = performance.now() - this.start;
    return [...Object.entries(this.stages), ["total", total] as const]
      .map(([name, ms]) => `${name};dur=${ms.toFixed(3)}`)
      .join(", ");
  }
}

export interface Attempt {
  version: number;
  stage: "load" | "run";
  error: string;
}

export interface Served<T> {
  result: T;
  variant: VariantRow;
  /** Variants that failed before this one served the request. */
  attempts: Attempt[];
  /** Whether the session was already in the cache. */
  cached: boolean;
}

export interface ServeContext {
  sessions: SessionCache;
  cooldowns: Cooldowns;
  bucket: R2Bucket;
  timings: Timings;
  /** The request's waitUntil, so a session load it starts finishes for the requests sharing it. */
  keepAlive?: KeepAlive;
  /** The request's id (src/http/request-id.ts), in the log lines and the 5xx this module answers. */
  requestId: string;
}

/**
 * Tries `order` (versions, best first) until one variant serves `run`. `run` receives the loaded variant and
 * throws RunError when the model fails on the input; any other error it throws is the request's (re-thrown).
 */
export async function serveWithFallback<T>(
  ctx: ServeContext,
  entry: CatalogEntry,
  order: readonly number[],
  run: (variant: VariantRow, loaded: LoadedVariant) => Promise<T>,
): Promise<Served<T>> {
  const attempts: Attempt[] = [];
  const modelId = entry.model.id;
  for (const version of order) {
    const variant = entry.variants.find((v) => v.version === version);
    if (!variant) continue;
    let lease: Awaited<ReturnType<SessionCache["acquire"]>>;
    try {
      lease = await ctx.timings.time("load", () => ctx.sessions.acquire(ctx.bucket, variant, ctx.keepAlive));
    } catch (err) {
      ctx.cooldowns.mark(modelId, version);
      console.warn(
        `gateway: ${entry.model.name}@${version} failed to load (request ${ctx.requestId}): ${messageOf(err)}`,
      );
      attempts.push({ version, stage: "load", error: messageOf(err) });
      continue;
    }
    // A cold load says where its time went (server-timing r2, verify, session).
    if (lease.breakdown)
      for (const [stage, ms] of Object.entries(lease.breakdown)) ctx.timings.add(stage, ms);
    try {
      const result = await run(variant, lease.variant);
      // The request is servable, so whoever failed to run it before is at fault.
      for (const a of attempts) if (a.stage === "run") ctx.cooldowns.mark(modelId, a.version);
      return { result, variant, attempts, cached: lease.cached };
    } catch (err) {
      if (!(err instanceof RunError)) throw err;
      attempts.push({ version, stage: "run", error: err.message });
    } finally {
      lease.release();
    }
  }
  const summary = attempts.map((a) => `v${a.version} (${a.stage}): ${a.error}`).join("; ");
  if (attempts.some((a) => a.stage === "run")) {
    console.error(`gateway: ${entry.model.name}: inference failed (request ${ctx.requestId}): ${summary}`);
    throw new GatewayError(500, "inference_failed", "inference failed");
  }
  // Load failures carry the gateway's own messages (missing, sha256 mismatch, not loadable), never the runtime's.
  throw new GatewayError(
    503,
    "no_variant_available",
    attempts.length > 0
      ? `no variant of '${entry.model.name}' could be loaded: ${summary}`
      : `model '${entry.model.name}' has no variant to serve`,
  );
}

export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
