/**
 * ONNX sessions per isolate: created lazily on first use, kept in an LRU bounded by a byte budget, and shared by
 * content (two variants with the same artifact share one session). With each session, the limits its graph puts
 * on its inputs (model-limits.ts) are read once, so requests are validated against them before ORT runs. The
 * tokenizer is not part of a session: only routes that tokenize load it (tokenizers.ts), so a broken
 * tokenizer.json never stops /v2 infer. Concurrent first requests for one artifact share a single load. Every
 * artifact read from R2 is checked against the registry's sha256 before ORT sees it; a mismatch is an
 * `ArtifactError` and the bytes are never served.
 *
 * The budget counts model bytes, a good proxy for a session's weights. ORT's wasm heap never shrinks, so the
 * budget bounds the high-water mark rather than freeing memory back to the isolate;
 * a released session's memory is reused by the next one. A session in use by a request is never released: the
 * cache may run over budget while requests hold sessions and evicts as soon as they let go.
 *
 * Sharing a load across requests follows workerd's rule (see isolate-wait.ts): the request that starts a load
 * awaits its own R2 reads and session creation; the others never await that promise (workerd would cancel them
 * as hung). They wait on the load's plain record, polling on their own timers, and take the entry it leaves.
 * The load is handed to the loader's `waitUntil`, so it finishes even if the loader's client goes away; a load
 * that still never lands (its request cancelled) is taken over by a waiter after `loadWaitMs`.
 * onnxruntime-web calls (session creation, runs) are serialised per isolate by `ortLock`: its wasm stack is
 * held across awaits inside a run, and its one-time backend start-up is a promise shared by whoever calls first.
 */
import type { InferenceSession } from "onnxruntime-web/wasm";
import { type Manifest, manifestGraphOptimization } from "../core/manifest";
import { sha256Hex } from "../registry/artifacts";
import { IsolateLock, WaitTimeout, waitFor } from "./isolate-wait";
import { type ModelLimits, readModelLimits } from "./model-limits";

/** Where a variant's files are and what they must hash to (from its registry row). */
export interface ArtifactRef {
  artifactKey: string;
  sha256: string;
  bytes: number;
  tokenizerKey: string | null;
  tokenizerSha256: string | null;
  /** The variant's manifest: whether its graph was optimised at export decides the session's level. */
  manifest?: Pick<Manifest, "graphOptimization">;
}

export interface LoadedVariant {
  session: InferenceSession;
  /** What the graph itself bounds: token-id ranges and the sequence length (read once, at load). */
  limits: ModelLimits;
  /** Bytes charged against the budget. */
  bytes: number;
}

export type ArtifactProblem = "missing" | "checksum" | "invalid" | "too_large";

/** The variant's files cannot be served; the variant is at fault, not the request. */
export class ArtifactError extends Error {
  override name = "ArtifactError";
  constructor(
    readonly problem: ArtifactProblem,
    message: string,
  ) {
    super(message);
  }
}

export type ReadLimits = (model: Uint8Array) => Promise<ModelLimits>;
export type GraphOptimizationLevel = NonNullable<InferenceSession.SessionOptions["graphOptimizationLevel"]>;
export type CreateSession = (
  model: Uint8Array,
  graphOptimizationLevel: GraphOptimizationLevel,
) => Promise<InferenceSession>;

/**
 * The session's optimisation level: a graph fused at export (manifest graphOptimization "edge", checked in
 * this wasm build) is not optimised again ("disabled": bench:fusion measured creating it at "all" slower, with
 * no faster runs); any other graph gets onnxruntime's full optimisation, as it always has.
 */
export function sessionLevelFor(ref: Pick<ArtifactRef, "manifest">): GraphOptimizationLevel {
  return ref.manifest && manifestGraphOptimization(ref.manifest) === "edge" ? "disabled" : "all";
}

/**
 * Where a cold load's time went, in ms: R2 reads, sha256 checks, session creation (incl. ORT's start-up and
 * reading the graph's limits).
 */
export interface LoadBreakdown {
  r2: number;
  verify: number;
  session: number;
}

interface Entry extends LoadedVariant {
  breakdown: LoadBreakdown;
  key: string;
  /** Requests currently holding the session. */
  refs: number;
}

/** A load in progress, as other requests see it: plain fields only, never the loader's promise. */
interface PendingLoad {
  /** Requests sharing this load (the loader included); they all hold the entry once it lands. */
  waiters: number;
  startedAt: number;
  /** Set when the load lands... */
  entry?: Entry;
  /** ...or fails (waiters fail with the same error). */
  error?: unknown;
}

/** Lets a load outlive the request that started it (the request's `ctx.waitUntil`). */
export type KeepAlive = (work: Promise<unknown>) => void;

export interface Lease {
  variant: LoadedVariant;
  /** True when the session was already loaded (no R2 read, no session creation). */
  cached: boolean;
  /** For the request(s) that waited for the load: how long its parts took. */
  breakdown?: LoadBreakdown;
  release(): void;
}

export interface SessionCacheStats {
  budgetBytes: number;
  usedBytes: number;
  loads: number;
  hits: number;
  evictions: number;
  /** Cache keys, least recently used first. */
  keys: string[];
}

/** One onnxruntime-web call at a time per isolate (creations and runs; see the module comment). */
export const ortLock = new IsolateLock("onnxruntime-web");

/** Creates sessions with onnxruntime-web, loaded on first use (importing it compiles a 14 MB wasm module). */
const createWithOrtWeb: CreateSession = async (model, graphOptimizationLevel) => {
  const { loadOrt } = await import("./ort-wasm");
  return ortLock.run(() =>
    loadOrt().InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel }),
  );
};

/** How often a request waiting for another's load looks at it, and how long before it loads itself. */
const LOAD_POLL_MS = 2;
const DEFAULT_LOAD_WAIT_MS = 30_000;

export class SessionCache {
  /** Map order is recency order: the first key is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, PendingLoad>();
  private usedBytes = 0;
  private loads = 0;
  private hits = 0;
  private evictions = 0;

  constructor(
    readonly budgetBytes: number,
    private readonly createSession: CreateSession = createWithOrtWeb,
    private readonly loadWaitMs = DEFAULT_LOAD_WAIT_MS,
    private readonly readLimits: ReadLimits = readLimitsWithOrtWeb,
  ) {}

  /** Whether a verified session for `ref`'s artifact is loaded (readiness needs no R2 read then). */
  has(ref: Pick<ArtifactRef, "sha256">): boolean {
    return this.entries.has(cacheKey(ref));
  }

  /**
   * The loaded variant for `ref`, held until `release()` is called. `keepAlive` (the request's waitUntil) lets
   * a load this request starts finish for the others even if this request is cancelled.
   */
  async acquire(bucket: R2Bucket, ref: ArtifactRef, keepAlive?: KeepAlive): Promise<Lease> {
    const key = cacheKey(ref);
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key); // re-insert: most recently used
      this.entries.set(key, hit);
      hit.refs++;
      this.hits++;
      return this.lease(hit, true);
    }
    const pending = this.pending.get(key);
    if (pending && Date.now() - pending.startedAt < this.loadWaitMs)
      return this.join(pending, bucket, ref, keepAlive);
    // No load in progress (or one that never landed): this request loads. Registered before the load starts,
    // so the load's own clean-up always finds it.
    const mine: PendingLoad = { waiters: 1, startedAt: Date.now() };
    this.pending.set(key, mine);
    const loading = this.load(bucket, ref, key, mine);
    keepAlive?.(loading.catch(() => {}));
    return this.lease(await loading, false);
  }

  /** Waits for another request's load by polling its record on this request's own timer (never its promise). */
  private async join(
    load: PendingLoad,
    bucket: R2Bucket,
    ref: ArtifactRef,
    keepAlive?: KeepAlive,
  ): Promise<Lease> {
    load.waiters++;
    try {
      await waitFor(() => load.entry !== undefined || load.error !== undefined, {
        pollMs: LOAD_POLL_MS,
        timeoutMs: Math.max(0, load.startedAt + this.loadWaitMs - Date.now()),
        what: "another request's load",
      });
    } catch (err) {
      if (!(err instanceof WaitTimeout)) throw err;
      load.waiters--; // the load never landed (its request was cancelled): load it ourselves
      return this.acquire(bucket, ref, keepAlive);
    }
    if (load.error !== undefined) throw load.error;
    return this.lease(load.entry as Entry, false);
  }

  stats(): SessionCacheStats {
    return {
      budgetBytes: this.budgetBytes,
      usedBytes: this.usedBytes,
      loads: this.loads,
      hits: this.hits,
      evictions: this.evictions,
      keys: [...this.entries.keys()],
    };
  }

  private lease(entry: Entry, cached: boolean): Lease {
    let released = false;
    return {
      variant: entry,
      cached,
      ...(cached ? {} : { breakdown: entry.breakdown }),
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        this.evictOverBudget();
      },
    };
  }

  private async load(bucket: R2Bucket, ref: ArtifactRef, key: string, me: PendingLoad): Promise<Entry> {
    try {
      if (ref.bytes > this.budgetBytes) {
        throw new ArtifactError(
          "too_large",
          `artifact is ${mb(ref.bytes)} MB, more than the whole session budget of ${mb(this.budgetBytes)} MB`,
        );
      }
      const breakdown: LoadBreakdown = { r2: 0, verify: 0, session: 0 };
      const model = await fetchVerified(bucket, ref.artifactKey, ref.sha256, "model.onnx", breakdown);
      let session: InferenceSession;
      const t0 = performance.now();
      try {
        session = await this.createSession(model, sessionLevelFor(ref));
      } catch (err) {
        // The runtime's own message (with its build machine's paths) is logged, never answered.
        console.warn(`gateway: onnxruntime cannot load ${ref.artifactKey}: ${message(err)}`);
        throw new ArtifactError("invalid", "onnxruntime cannot load model.onnx");
      }
      const limits = await this.readLimits(model);
      breakdown.session = performance.now() - t0;
      this.loads++;
      const existing = this.entries.get(key);
      if (existing) {
        // A load taken over from this one (it ran past loadWaitMs) landed first: keep that one.
        void session.release().catch(() => {});
        existing.refs += me.waiters;
        me.entry = existing;
        return existing;
      }
      // Everyone who joined this load holds the entry from the moment it exists, so eviction cannot take it.
      const entry: Entry = {
        key,
        session,
        limits,
        bytes: model.byteLength,
        refs: me.waiters,
        breakdown,
      };
      this.entries.set(key, entry);
      this.usedBytes += entry.bytes;
      this.evictOverBudget();
      me.entry = entry;
      return entry;
    } catch (err) {
      me.error = err;
      throw err;
    } finally {
      if (this.pending.get(key) === me) this.pending.delete(key);
    }
  }

  /** Drops least recently used sessions nobody holds until the cache fits its budget. */
  private evictOverBudget(): void {
    for (const entry of this.entries.values()) {
      if (this.usedBytes <= this.budgetBytes) return;
      if (entry.refs > 0) continue;
      this.entries.delete(entry.key);
      this.usedBytes -= entry.bytes;
      this.evictions++;
      void entry.session.release().catch(() => {}); // best effort: the session is unreachable either way
    }
  }
}

function cacheKey(ref: Pick<ArtifactRef, "sha256">): string {
  return ref.sha256;
}

/** The graph's limits, its position probe run on onnxruntime-web (under the isolate's ORT lock). */
const readLimitsWithOrtWeb: ReadLimits = async (model) => {
  const { loadOrt } = await import("./ort-wasm");
  const ort = loadOrt();
  return readModelLimits(model, (probe, feeds, length, output) =>
    ortLock.run(async () => {
      const session = await ort.InferenceSession.create(probe, { executionProviders: ["wasm"] });
      try {
        const inputs = Object.fromEntries(
          Object.entries(feeds).map(([name, data]) => [name, new ort.Tensor("int64", data, [1, length])]),
        );
        return (await session.run(inputs, [output]))[output].data as BigInt64Array;
      } finally {
        await session.release();
      }
    }),
  );
};

/** Reads an object from R2 and checks its sha256 against the registry's before anyone uses the bytes. */
export async function fetchVerified(
  bucket: R2Bucket,
  key: string,
  sha256: string,
  what: string,
  breakdown: LoadBreakdown,
): Promise<Uint8Array> {
  let t0 = performance.now();
  const object = await bucket.get(key);
  if (!object) throw new ArtifactError("missing", `${what} is missing from R2 (${key})`);
  const bytes = new Uint8Array(await object.arrayBuffer());
  breakdown.r2 += performance.now() - t0;
  t0 = performance.now();
  const actual = await sha256Hex(bytes);
  breakdown.verify += performance.now() - t0;
  if (actual !== sha256) {
    throw new ArtifactError("checksum", `${what} in R2 has sha256 ${actual}, the registry says ${sha256}`);
  }
  return bytes;
}

const mb = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1);
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
