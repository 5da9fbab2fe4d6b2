/**
 * The two error shapes the Worker answers with, chosen by path: Open Inference Protocol routes (`/v2/...`)
 * answer `{ "error": "<message>" }` as that protocol specifies; every other route answers
 * `{ "error": { "code", "message", "field"? } }`. Either way the message names the offending field.
 *
 * `HttpError` is what every part throws (the registry's ApiError and the gateway's GatewayError extend it), and
 * `httpErrorHandler` is the one `onError` that renders it: the app's own and each route module's (so a module
 * mounted alone in a test answers the same). An error that is not an HttpError is a 500 whose body says only
 * "internal error" and the request id; the internal message goes to the log with that id, never to the client.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export interface ErrorDetail {
  code: string;
  message: string;
  /** Dotted path or header name to blame (`inputs[0].shape`, `Authorization`). */
  field?: string;
}

export const isOipPath = (path: string) => path === "/v2" || path.startsWith("/v2/");

export function errorBody(path: string, e: ErrorDetail): { error: string } | { error: ErrorDetail } {
  return isOipPath(path)
    ? { error: e.message }
    : { error: { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) } };
}

/** An error whose status, code, message and field are meant for the client. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    /** Dotted path or header name of the offending field, when one is to blame. */
    readonly field?: string,
    /** Extra response headers (`WWW-Authenticate`, `x-sluice-sla`). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The request id set by the request-id middleware (src/http/request-id.ts), if it ran. */
function requestIdOf(c: Context): string | undefined {
  try {
    return c.get("requestId" as never) as string | undefined;
  } catch {
    return undefined;
  }
}

/** The one Hono `onError` of the Worker. */
export function httpErrorHandler(err: Error, c: Context): Response {
  const path = c.req.path;
  if (err instanceof HttpError) {
    const body = errorBody(path, { code: err.code, message: err.message, field: err.field });
    const id = err.status >= 500 ? requestIdOf(c) : undefined;
    return c.json(id ? { ...body, requestId: id } : body, err.status, err.headers);
  }
  if (err instanceof HTTPException && err.status < 500) {
    const status = err.status as ContentfulStatusCode;
    return c.json(
      errorBody(path, { code: `http_${status}`, message: err.message || "request failed" }),
      status,
    );
  }
  const requestId = requestIdOf(c);
  console.error(`unexpected error (request ${requestId ?? "without id"}) on ${c.req.method} ${path}`, err);
  const body = errorBody(path, { code: "internal", message: "internal error" });
  return c.json(requestId ? { ...body, requestId } : body, 500);
}
