/**
 * Registry errors: every failure is `{ "error": { "code", "message", "field"? } }` with a status that says
 * whose fault it is. Handlers throw `ApiError`; `registryErrorHandler` renders it (and anything else).
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";

export type ApiErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 500 | 503;

export interface ApiErrorBody {
  error: { code: string; message: string; field?: string };
}

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: ApiErrorStatus,
    readonly code: string,
    message: string,
    /** Dotted path of the offending field (`artifact.sha256`, `status`, `model`), when one is to blame. */
    readonly field?: string,
  ) {
    super(message);
  }

  toBody(): ApiErrorBody {
    return {
      error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) },
    };
  }
}

export const badRequest = (message: string, field?: string) =>
  new ApiError(400, "bad_request", message, field);
export const unprocessable = (code: string, message: string, field?: string) =>
  new ApiError(422, code, message, field);
export const notFound = (what: string, field?: string) =>
  new ApiError(404, "not_found", `${what} not found`, field);
export const conflict = (code: string, message: string, field?: string) =>
  new ApiError(409, code, message, field);

/** The first zod issue as an ApiError naming its field (prefixed, e.g. `query.minAccuracy`). */
export function fromZodError(
  error: z.ZodError,
  opts: { status: 400 | 422; code: string; prefix?: string },
): ApiError {
  const issue = error.issues[0];
  const path = issue.path.map(String).join(".");
  const field = [opts.prefix, path].filter(Boolean).join(".") || undefined;
  return new ApiError(opts.status, opts.code, field ? `${field}: ${issue.message}` : issue.message, field);
}

/** Hono onError handler for the registry routes. Unknown errors are 500 without internals in the body. */
export function registryErrorHandler(err: Error, c: Context): Response {
  if (err instanceof ApiError) {
    const headers: Record<string, string> =
      err.status === 401 ? { "WWW-Authenticate": 'Bearer realm="sluice-registry"' } : {};
    return c.json(err.toBody(), err.status as ContentfulStatusCode, headers);
  }
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    return c.json({ error: { code: `http_${status}`, message: err.message || "request failed" } }, status);
  }
  console.error("registry: unexpected error", err);
  return c.json({ error: { code: "internal", message: "internal error" } }, 500);
}
