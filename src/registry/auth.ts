/**
 * Who may write: registry writes need `Authorization: Bearer <ADMIN_TOKEN>`; inference clients use API keys
 * minted by `POST /v1/keys`, stored only as sha256 hashes.
 */
import type { MiddlewareHandler } from "hono";
import type { Env } from "../gateway/env";
import { sha256Hex } from "./artifacts";
import { ApiError } from "./errors";
import { findActiveApiKeyByHash, type RegistryDb, registryDb } from "./store";

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

export function bearerToken(header: string | undefined): string | undefined {
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return match?.[1];
}

/** Rejects the request with 401 unless it carries the admin bearer token. */
export const requireAdmin: MiddlewareHandler<{ Bindings: Env }> = async (c, next) => {
  const expected = c.env.ADMIN_TOKEN;
  if (!expected) {
    throw new ApiError(503, "admin_disabled", "registry writes are disabled: ADMIN_TOKEN is not configured");
  }
  const header = c.req.header("Authorization");
  const token = bearerToken(header);
  if (!token) {
    throw new ApiError(
      401,
      "unauthorized",
      header ? "Authorization must be 'Bearer <token>'" : "missing Authorization: Bearer <admin token>",
      "Authorization",
    );
  }
  if (!(await timingSafeStringEqual(token, expected))) {
    throw new ApiError(401, "unauthorized", "invalid admin token", "Authorization");
  }
  await next();
};

export const API_KEY_PREFIX = "sk_sluice_";

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
  scopes: string[];
}

/**
 * Checks an inference API key: valid when its sha256 matches a key that has not been revoked. The lookup is by
 * hash (an indexed equality on a digest of a high-entropy secret), so no secret is compared byte by byte.
 */
export async function verifyApiKey(
  db: D1Database | RegistryDb,
  key: string | undefined,
): Promise<VerifiedApiKey | null> {
  if (!key?.startsWith(API_KEY_PREFIX)) return null;
  const rdb = "select" in db ? db : registryDb(db);
  const row = await findActiveApiKeyByHash(rdb, await sha256Hex(encoder.encode(key)));
  return row ? { id: row.id, scopes: row.scopes } : null;
}
