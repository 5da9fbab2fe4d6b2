/**
 * Request ids. Every request gets one, first thing: a client's (or a proxy's) `x-request-id` is kept when it is
 * safe to echo and to log (1 to 128 characters of letters, digits and `-_.:`), so one id follows a request
 * across systems; otherwise (absent, too long, odd characters) a fresh `crypto.randomUUID()`. The id is echoed in
 * the `x-request-id` response header, available to handlers as `c.get("requestId")`, and written into 5xx bodies
 * and the log line of an internal error (src/http/errors.ts), so a user's report can be matched to the log.
 */
import type { Context, MiddlewareHandler } from "hono";

export const REQUEST_ID_HEADER = "x-request-id";
export const MAX_REQUEST_ID_LENGTH = 128;
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export type RequestIdVariables = { requestId: string };

/** The incoming id when it is acceptable, else a fresh UUID. */
export function requestIdFrom(header: string | null | undefined): string {
  return header && SAFE_REQUEST_ID.test(header) ? header : crypto.randomUUID();
}

/** Middleware: sets `c.var.requestId` and the `x-request-id` response header (errors included). */
export const requestId: MiddlewareHandler<{ Variables: RequestIdVariables }> = async (c, next) => {
  const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER));
  c.set("requestId", id);
  await next();
  try {
    c.res.headers.set(REQUEST_ID_HEADER, id);
  } catch {
    // A response with immutable headers (a fetched or redirect Response): copy it to set the header.
    c.res = new Response(c.res.body, c.res);
    c.res.headers.set(REQUEST_ID_HEADER, id);
  }
};

/** The request's id; one is made (and set) when the middleware did not run (a route module mounted alone). */
export function requestIdOf(c: Context): string {
  const ctx = c as Context<{ Variables: RequestIdVariables }>;
  let id = ctx.get("requestId");
  if (!id) {
    id = crypto.randomUUID();
    ctx.set("requestId", id);
    ctx.header(REQUEST_ID_HEADER, id);
  }
  return id;
}
