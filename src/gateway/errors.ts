/**
 * Gateway errors, rendered in the shape the path's protocol uses (src/http/errors.ts): OIP v2 `{ "error": "…" }`,
 * Sluice's own routes `{ "error": { code, message, field } }`. The message names the offending field, and bad
 * input is never a 500. A failure that is the gateway's own (a 500, a variant that cannot be loaded) answers
 * with a generic message and the request id (src/http/request-id.ts); the internal message is logged with it.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { errorBody } from "../http/errors";
import { requestIdOf } from "../http/request-id";

export type GatewayErrorStatus = 400 | 404 | 413 | 415 | 422 | 500 | 503;

export class GatewayError extends Error {
  override name = "GatewayError";
  constructor(
    readonly status: GatewayErrorStatus,
    readonly code: string,
    message: string,
    /** Dotted path of the offending field (`inputs[0].shape`, `texts`, `x-sluice-min-accuracy`). */
    readonly field?: string,
    /** Extra headers (e.g. x-sluice-sla on a refused request). */
    readonly headers: Record<string, string> = {},
    /** Set on the gateway's own failures: the body carries it, so a report can be matched to the log. */
    readonly requestId?: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string, field: string) =>
  new GatewayError(400, "bad_request", field ? `${field}: ${message}` : message, field);

/** The first zod issue, as a 400 naming its field in `inputs[0].shape` form. */
export function fromZod(error: z.ZodError, prefix?: string): GatewayError {
  const issue = error.issues[0];
  const field = fieldPath([...(prefix ? [prefix] : []), ...issue.path]);
  return invalid(issue.message, field || "body");
}

export function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
}

/** Hono onError for the inference routes. Unknown errors are a 500 without internals. */
export function gatewayErrorHandler(err: Error, c: Context): Response {
  let status: ContentfulStatusCode = 500;
  let code = "internal";
  let message = "internal error";
  let field: string | undefined;
  let headers: Record<string, string> = {};
  let requestId: string | undefined;
  if (err instanceof GatewayError) {
    ({ status, code, message, field, headers, requestId } = err);
  } else if (err instanceof HTTPException) {
    status = err.status as ContentfulStatusCode;
    code = `http_${status}`;
    message = err.message || "request failed";
  } else {
    requestId = requestIdOf(c);
    console.error(`gateway: unexpected error (request ${requestId})`, err);
  }
  const body = errorBody(c.req.path, { code, message, field });
  return c.json(requestId ? { ...body, requestId } : body, status, headers);
}
