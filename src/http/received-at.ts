/**
 * When the Worker received the request, as the app's first middleware saw it (`performance.now()`), so a
 * handler can report the time spent before it ran (middleware: request id, configuration, generation poll,
 * API-key check, experiment hook) in `server-timing`. Timing only: nothing decides on it.
 */
import type { Context, MiddlewareHandler } from "hono";

export type ReceivedAtVariables = { receivedAt: number };

/** Middleware, first in the app: sets `c.var.receivedAt`. */
export const receivedAt: MiddlewareHandler<{ Variables: ReceivedAtVariables }> = async (c, next) => {
  c.set("receivedAt", performance.now());
  await next();
};

/** The request's arrival time; undefined when the middleware did not run (a route module mounted alone). */
export function receivedAtOf(c: Context): number | undefined {
  return (c as Context<{ Variables: ReceivedAtVariables }>).get("receivedAt");
}
