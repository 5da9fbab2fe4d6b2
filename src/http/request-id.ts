/**
 * A request id for every request: the client's `x-request-id` when it is a plausible id (visible ASCII token
 * characters, at most 128), otherwise a fresh UUID. It is echoed in the response's `x-request-id`, available
 * to handlers as `c.get("requestId")`, and put in every log line and 5xx body that concerns the request, so a
 * generic error answer can be matched to the internal message logged with it.
 */
import type { Context, MiddlewareHandler } from "hono";

export const REQUEST_ID_HEADER = "x-request-id";

export type RequestIdVariables = { requestId: string };

/** What a client may choose as its id: nothing that could forge a log line or a header. */
const ACCEPTABLE = /^[A-Za-z0-9._:/+=-]{1,128}$/;

export function requestId(): MiddlewareHandler<{ Variables: RequestIdVariables }> {
  return async (c, next) => {
    const sent = c.req.header(REQUEST_ID_HEADER);
    const id = sent !== undefined && ACCEPTABLE.test(sent) ? sent : crypto.randomUUID();
    c.set("requestId", id);
    c.header(REQUEST_ID_HEADER, id);
    await next();
  };
}

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
