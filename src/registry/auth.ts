/**
 * Access control, in one module.
 *
 * - Registry writes and the dashboard need the admin token (`Authorization: Bearer <ADMIN_TOKEN>`), compared in
 *   constant time (`requireAdmin`).
 * - Inference, routing explanations and feedback need an API key minted by `POST /v1/keys`
 *   (`Authorization: Bearer sk_sluice_…` or `x-api-key: sk_sluice_…`): `requireApiKey(scope)`. Keys carry
 *   scopes (`infer`, `feedback`, `admin`, which implies the other two) and may be limited to named models.
 *   The registry keeps only each key's sha256; a key is found by that hash (unique index) and the stored hash
 *   is compared with the presented one in constant time.
 * - Each isolate caches verified keys for at most `API_KEY_CACHE_TTL_MS` (and at most `API_KEY_CACHE_MAX`
 *   of them), keyed only by the hash of a key that passed the format check: a revoked key stops working at once
 *   in the isolate that revoked it, and everywhere else once that isolate polls the registry's generation
 *   counter (`REGISTRY_POLL_MS`, src/registry/generation.ts; the TTL is the backstop). Unknown keys are never
 *   cached.
 * - A per-key rate limit applies when the Worker has the `KEY_RATE_LIMIT` rate-limiting binding.
 * - `AUTH=off` (a Worker var, for local development only) turns API-key checks off; unset or `on` enforces them,
 *   any other value is a configuration error (503 naming `AUTH`), never a silent "off".
 *
 * Failures: 401 (missing, malformed, oversized, unknown or revoked credential), 403 (valid key without the scope
 * or the model), 429 (rate limit), as JSON in the path's error shape (src/http/errors.ts).
 */
import type { Context, MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { type Defer, IsolateCache } from "../core/isolate-cache";
import { parseBearer, requestCredential } from "../http/credentials";
import { type ErrorDetail, errorBody } from "../http/errors";
import { queueHeader } from "../http/response-headers";
import { deferOf } from "../http/wait-until";
import { sha256Hex } from "./artifacts";
import { registryConfig } from "./config";
import { ApiError } from "./errors";
import { onRegistryChange } from "./invalidation";
import { API_KEY_SCOPES, type ApiKeyRow, type ApiKeyScope } from "./schema";
import { findActiveApiKeyByHash, registryDb } from "./store";

/** The bindings and vars this module reads. */
export interface AuthBindings {
  DB: D1Database;
  /** Secret: bearer token for registry writes and the dashboard. */
  ADMIN_TOKEN?: string;
  /** `off` disables API-key checks (local development only). Unset or `on`: enforced. */
  AUTH?: string;
  /** Workers rate-limiting binding (`[[ratelimits]]` in wrangler.toml), counted per API key. */
  KEY_RATE_LIMIT?: RateLimit;
}

const encoder = new TextEncoder();

/**
 * Constant-time string equality: both sides are hashed to 32-byte digests first, so the comparison neither
 * short-circuits on the first differing byte nor leaks the token's length; workerd's
 * `crypto.subtle.timingSafeEqual` then compares the equal-length digests.
 */
export async function timingSafeStringEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  return crypto.subtle.timingSafeEqual(da, db);
}

/** Rejects the request with 401 unless it carries the admin bearer token. */
export const requireAdmin: MiddlewareHandler<{ Bindings: AuthBindings }> = async (c, next) => {
  const expected = registryConfig(c.env).adminToken;
  if (!expected) {
    throw new ApiError(503, "admin_disabled", "registry writes are disabled: ADMIN_TOKEN is not configured");
  }
  const credential = parseBearer(c.req.header("Authorization"));
  if (credential.kind !== "token") {
    throw new ApiError(
      401,
      "unauthorized",
      credential.kind === "missing"
        ? "missing Authorization: Bearer <admin token>"
        : `Authorization: ${credential.message}`,
      "Authorization",
    );
  }
  if (!(await timingSafeStringEqual(credential.token, expected))) {
    throw new ApiError(401, "unauthorized", "invalid admin token", "Authorization");
  }
  await next();
};

/** The admin token of a request's `Authorization: Bearer` header, if it is the configured one. */
export async function hasAdminBearer(c: Context<{ Bindings: AuthBindings }>): Promise<boolean> {
  const credential = parseBearer(c.req.header("Authorization"));
  const expected = registryConfig(c.env).adminToken;
  return (
    credential.kind === "token" && !!expected && (await timingSafeStringEqual(credential.token, expected))
  );
}

// --- API keys ---------------------------------------------------------------------------------------------

export const API_KEY_PREFIX = "sk_sluice_";

/** A key as minted: the prefix and 32 random bytes, base64url without padding (43 characters). */
export const ApiKey = z
  .string()
  .regex(/^sk_sluice_[A-Za-z0-9_-]{43}$/, "is not a Sluice API key (sk_sluice_ and 43 base64url characters)");

/** A fresh API key (shown to the caller once) and the hash the registry keeps. */
export async function mintApiKey(): Promise<{ key: string; keyHash: string; prefix: string }> {
  const random = crypto.getRandomValues(new Uint8Array(32));
  const body = btoa(String.fromCharCode(...random))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
  const key = `${API_KEY_PREFIX}${body}`;
  return {
    key,
    keyHash: await sha256Hex(encoder.encode(key)),
    prefix: key.slice(0, API_KEY_PREFIX.length + 6),
  };
}

export interface VerifiedApiKey {
  id: number;
  /** Known scopes only (a row's unknown scope grants nothing). */
  scopes: ApiKeyScope[];
  /** Model names the key may use; null = every model. */
  models: string[] | null;
}

/** What the registry row says about a key, checked at the boundary (the row is JSON in D1). */
const StoredKey = z.object({
  id: z.number().int().positive(),
  scopes: z.array(z.string()).transform((s) => API_KEY_SCOPES.filter((k) => s.includes(k))),
  models: z.array(z.string()).nullable(),
});

export function keyAllows(key: VerifiedApiKey, scope: ApiKeyScope): boolean {
  return key.scopes.includes(scope) || key.scopes.includes("admin");
}

export function keyAllowsModel(key: VerifiedApiKey, model: string): boolean {
  return key.models === null || key.models.includes(model);
}

/** How long an isolate trusts a verified key without asking D1 again: the revocation bound across isolates. */
export const API_KEY_CACHE_TTL_MS = 10_000;
/** Most keys one isolate keeps verified at once (least recently used go first). */
export const API_KEY_CACHE_MAX = 1_000;

/**
 * Per-isolate cache of verified keys by sha256 of the key (hex), on the Worker's one cache shape
 * (src/core/isolate-cache.ts: bounded LRU, TTL, invalidation safe against loads in flight). Only keys that
 * passed the format check and matched an active row are stored (`keep`), so a client cannot fill it with
 * made-up keys. Only settled values are shared between requests, never a query in flight (workerd cancels a
 * request that waits on another request's I/O).
 */
export class ApiKeyCache {
  private readonly cache: IsolateCache<VerifiedApiKey | null>;

  constructor(
    readonly ttlMs = API_KEY_CACHE_TTL_MS,
    readonly maxEntries = API_KEY_CACHE_MAX,
    now: () => number = Date.now,
  ) {
    this.cache = new IsolateCache({ ttlMs, maxEntries, now, keep: (key) => key !== null });
  }

  get size(): number {
    return this.cache.size;
  }

  /** D1 queries made (observable so a test can prove the cache works). */
  get queries(): number {
    return this.cache.loads;
  }

  /** Background re-checks started (a busy isolate re-checks a key before its TTL runs out). */
  get refreshes(): number {
    return this.cache.refreshes;
  }

  /**
   * The active key with this hash: from the cache within its TTL, else from D1. With `defer` (the request's
   * waitUntil), a key cached for most of its TTL is re-checked in the background, so a busy isolate does not
   * wait for D1; a revocation that re-check sees drops the key at once, and the TTL bound is unchanged.
   */
  lookup(d1: D1Database, keyHash: string, defer?: Defer): Promise<VerifiedApiKey | null> {
    return this.cache.get(
      keyHash,
      async () => {
        const row = await findActiveApiKeyByHash(registryDb(d1), keyHash);
        if (!row || !(await hashesEqual(row, keyHash))) return null;
        return StoredKey.parse(row);
      },
      defer,
    );
  }

  /**
   * Forgets a key (its revocation, made in this isolate, takes effect here at once), or with no hash every key
   * (a registry change seen through the generation counter: a revocation made in another isolate).
   */
  forget(keyHash?: string): void {
    this.cache.invalidate(keyHash);
  }
}

/** The index found the row by hash; the hashes are still compared in constant time before the key counts. */
async function hashesEqual(row: ApiKeyRow, keyHash: string): Promise<boolean> {
  const a = encoder.encode(row.keyHash);
  const b = encoder.encode(keyHash);
  return a.byteLength === b.byteLength && crypto.subtle.timingSafeEqual(a, b);
}

/**
 * This isolate's cache (the key routes make revocations take effect in it at once). Any registry change drops
 * it: revocations elsewhere arrive through the generation counter (src/registry/generation.ts).
 */
export const apiKeyCache = new ApiKeyCache();
onRegistryChange(() => apiKeyCache.forget());

/** sha256 (hex) of a key string, as the registry stores it. */
export function apiKeyHash(key: string): Promise<string> {
  return sha256Hex(encoder.encode(key));
}

type ApiKeyEnv = { Bindings: AuthBindings; Variables: { apiKey: VerifiedApiKey | null } };

/** The key a request was authorised with (null under AUTH=off). */
export function verifiedKeyOf(c: Context): VerifiedApiKey | null {
  return (c.get("apiKey") as VerifiedApiKey | null | undefined) ?? null;
}

function deny(c: Context, status: 401 | 403 | 429, detail: ErrorDetail): Response {
  const headers: Record<string, string> = {};
  if (status === 401) headers["WWW-Authenticate"] = 'Bearer realm="sluice", error="invalid_token"';
  if (status === 403) headers["WWW-Authenticate"] = 'Bearer realm="sluice", error="insufficient_scope"';
  return c.json(errorBody(c.req.path, detail), status as ContentfulStatusCode, headers);
}

export interface RequireApiKeyOptions {
  /** The cache to use (tests pass one with their own clock); default: this isolate's. */
  cache?: ApiKeyCache;
}

/**
 * Middleware: the request must carry an active API key with `scope` (and, on a route with a `:model` parameter,
 * a key not limited to other models). Sets `c.var.apiKey`.
 */
export function requireApiKey(
  scope: ApiKeyScope,
  options: RequireApiKeyOptions = {},
): MiddlewareHandler<ApiKeyEnv> {
  return async (c, next) => {
    const t0 = performance.now();
    // A bad AUTH (or any other registry var) throws ConfigError: 503 naming the var, never a silent "off".
    if (registryConfig(c.env).auth === "off") {
      c.set("apiKey", null);
      queueHeader(c, "x-sluice-auth", "off");
      return next();
    }

    const credential = requestCredential(c.req.raw.headers);
    if (credential.kind === "missing") {
      return deny(c, 401, {
        code: "unauthorized",
        message:
          "missing API key: send Authorization: Bearer <key> or x-api-key: <key> (POST /v1/keys mints one)",
        field: "Authorization",
      });
    }
    if (credential.kind === "malformed") {
      return deny(c, 401, {
        code: "unauthorized",
        message: `${credential.field}: ${credential.message}`,
        field: credential.field,
      });
    }
    const parsed = ApiKey.safeParse(credential.token);
    if (!parsed.success) {
      return deny(c, 401, {
        code: "unauthorized",
        message: `${credential.field}: ${parsed.error.issues[0].message}`,
        field: credential.field,
      });
    }
    const key = await (options.cache ?? apiKeyCache).lookup(
      c.env.DB,
      await apiKeyHash(parsed.data),
      deferOf(c),
    );
    if (!key) {
      return deny(c, 401, {
        code: "unauthorized",
        message: `${credential.field}: unknown or revoked API key`,
        field: credential.field,
      });
    }
    if (!keyAllows(key, scope)) {
      return deny(c, 403, {
        code: "forbidden",
        message: `this API key lacks the '${scope}' scope (it has: ${key.scopes.join(", ") || "none"})`,
        field: "scope",
      });
    }
    const model = c.req.param("model" as never) as string | undefined;
    if (model !== undefined && !keyAllowsModel(key, model)) {
      return deny(c, 403, {
        code: "forbidden",
        message: `this API key may not use model '${model.slice(0, 80)}'`,
        field: "model",
      });
    }
    const limiter = c.env.KEY_RATE_LIMIT;
    if (limiter && !(await limiter.limit({ key: `api-key:${key.id}` })).success) {
      return deny(c, 429, {
        code: "rate_limited",
        message: "this API key has exceeded its request rate; retry later",
        field: "Authorization",
      });
    }
    c.set("apiKey", key);
    // server-timing `auth`: the check's own time (the route's entries are appended after it)
    queueHeader(c, "server-timing", `auth;dur=${(performance.now() - t0).toFixed(2)}`, true);
    return next();
  };
}
