/**
 * Request ids. Every request gets one, first thing: a client's (or a proxy's) `x-request-id` is kept when it is
 * safe to echo and to log (1 to 128 characters of letters, digits and `-_.:`), so one id follows a request
 * across systems; otherwise (absent, too long, odd characters) a fresh `crypto.randomUUID()`. The id is echoed in
 * the `x-request-id` response header, available to handlers as `c.get("requestId")`, and written into 5xx bodies
 * and the log line of an internal error (src/http/errors.ts), so a user's report can be matched to the log.
 */
import type { Context, MiddlewareHandler } from "hono";
import { flushHeaders, queueHeader } from "./response-headers";

export const REQUEST_ID_HEADER = "x-request-id";
export const MAX_REQUEST_ID_LENGTH = 128;
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export type RequestIdVariables = { requestId: string };

/** The incoming id when it is acceptable, else a fresh UUID. */
export function requestIdFrom(header: string | null | undefined): string {
  return header && SAFE_REQUEST_ID.test(header) ? header : crypto.randomUUID();
}

/**
 * Middleware, outermost but for the clock: sets `c.var.requestId` and queues the `x-request-id` response header
 * (src/http/response-headers.ts); after the route it puts every queued header on the response (errors included)
 * unless the route built its response with them.
 */
export const requestId: MiddlewareHandler<{ Variables: RequestIdVariables }> = async (c, next) => {
  const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER));
  c.set("requestId", id);
  queueHeader(c, REQUEST_ID_HEADER, id);
  await next();
  flushHeaders(c);
};

/** The request's id; one is made (and set) when the middleware did not run (a route module mounted alone). */
export function requestIdOf(c: Context): string {
  const ctx = c as Context<{ Variables: RequestIdVariables }>;
  let id = ctx.get("requestId");
  if (!id) {
    id = crypto.randomUUID();
    ctx.set("requestId", id);
    queueHeader(c, REQUEST_ID_HEADER, id);
  }
  return id;
}
