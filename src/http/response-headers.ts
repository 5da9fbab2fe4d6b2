/**
 * Response headers that middleware decides before the response exists (the request id, `server-timing`
 * entries of the API-key check and the generation poll, `x-sluice-auth`), held on the context as a plain record
 * instead of Hono's `c.header()`. The inference routes build their response in one `new Response(body, { headers:
 * record })` with these merged in (`takeHeaders`): in workerd each `Headers.set` is a call into the runtime, and
 * Hono's `c.header()` + `c.json()` made one per header plus a copy of the whole set (bench:gateway's CPU profile).
 * Any other response gets them from `flushHeaders`, called by the outermost middleware after the route ran.
 */
import type { Context } from "hono";

export type ResponseHeadersVariables = { responseHeaders: ResponseHeaders };

interface ResponseHeaders {
  values: Record<string, string>;
  /** Whether a route has put them on its response itself (then flushHeaders leaves the response alone). */
  taken: boolean;
}

function headersOf(c: Context): ResponseHeaders {
  const ctx = c as Context<{ Variables: ResponseHeadersVariables }>;
  let h = ctx.get("responseHeaders");
  if (!h) {
    h = { values: {}, taken: false };
    ctx.set("responseHeaders", h);
  }
  return h;
}

/** Sets (or with `append`, adds a comma-separated entry to) a header of the coming response. */
export function queueHeader(c: Context, name: string, value: string, append = false): void {
  const values = headersOf(c).values;
  const key = name.toLowerCase();
  values[key] = append && values[key] ? `${values[key]}, ${value}` : value;
}

/** The queued headers, for a route that builds its own Response; flushHeaders then adds nothing. */
export function takeHeaders(c: Context): Record<string, string> {
  const h = headersOf(c);
  h.taken = true;
  return h.values;
}

/** Puts the queued headers on `c.res` unless the route took them (after `await next()`). */
export function flushHeaders(c: Context): void {
  const h = (c as Context<{ Variables: ResponseHeadersVariables }>).get("responseHeaders");
  if (!h || h.taken) return;
  const entries = Object.entries(h.values);
  if (entries.length === 0) return;
  const set = (headers: Headers) => {
    for (const [name, value] of entries) {
      // server-timing entries add to the route's own
      if (name === "server-timing") headers.append(name, value);
      else headers.set(name, value);
    }
  };
  try {
    set(c.res.headers);
  } catch {
    // A response with immutable headers (a fetched or redirect Response): copy it to set them.
    c.res = new Response(c.res.body, c.res);
    set(c.res.headers);
  }
}
