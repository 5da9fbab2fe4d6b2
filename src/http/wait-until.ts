/** The request's `waitUntil`, for work that may finish after the response (background cache reloads). */
import type { Context } from "hono";
import type { Defer } from "../core/isolate-cache";

/** `c.executionCtx.waitUntil` as a Defer; undefined under `app.request()` without an ExecutionContext (tests). */
export function deferOf(c: Context): Defer | undefined {
  let ctx: ExecutionContext;
  try {
    ctx = c.executionCtx;
  } catch {
    return undefined;
  }
  return (work) => ctx.waitUntil(work);
}
