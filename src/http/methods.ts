/**
 * The Worker's answer when no handler matched: `405 Method Not Allowed` with an `Allow` header when the path
 * exists under other methods (RFC 9110 §15.5.6), a JSON 404 otherwise; both in the path's error shape
 * (src/http/errors.ts). Hono answers both with a bare `404 text/plain`, and has no 405 of its own.
 *
 * The path → methods table is read from the assembled app's own route list (`app.routes`), so it can never
 * drift from what is registered; middleware (`use`, method ALL) does not count as a route.
 */
import type { Context, Hono, NotFoundHandler } from "hono";
import { errorBody } from "./errors";

interface RoutePattern {
  match: RegExp;
  methods: Set<string>;
}

/** Hono's path syntax as a regular expression: `:name` one segment, `:name{re}` one matching `re`, `*` the rest. */
function compile(path: string): RegExp {
  let out = "";
  for (const part of path.split(/(:[A-Za-z0-9_]+(?:\{[^}]*\})?|\*)/)) {
    if (part === "*") out += ".*";
    else if (part.startsWith(":")) {
      const re = /\{([^}]*)\}$/.exec(part)?.[1];
      out += re ? `(?:${re})` : "[^/]+";
    } else out += part.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

function patternsOf(app: Hono<never>): RoutePattern[] {
  const byPath = new Map<string, Set<string>>();
  for (const r of app.routes) {
    if (r.method === "ALL") continue;
    const methods = byPath.get(r.path) ?? new Set<string>();
    methods.add(r.method.toUpperCase());
    byPath.set(r.path, methods);
  }
  return [...byPath].map(([path, methods]) => ({ match: compile(path), methods }));
}

/** The methods `path` answers to in `app` (GET implies HEAD, which Hono serves with the GET handler). */
export function allowedMethods(patterns: RoutePattern[], path: string): string[] {
  const allowed = new Set<string>();
  for (const p of patterns) if (p.match.test(path)) for (const m of p.methods) allowed.add(m);
  if (allowed.has("GET")) allowed.add("HEAD");
  return [...allowed].sort();
}

/** `app.notFound(...)` for the assembled Worker: 405 + Allow for a known path, a JSON 404 for an unknown one. */
export function notFoundOrMethodNotAllowed(app: Hono<never>): NotFoundHandler {
  let patterns: RoutePattern[] | undefined; // routes are all registered before the first request
  return (c: Context) => {
    patterns ??= patternsOf(app);
    const path = c.req.path;
    const shown = path.length > 200 ? `${path.slice(0, 200)}…` : path;
    const allow = allowedMethods(patterns, path);
    if (allow.length > 0) {
      return c.json(
        errorBody(path, {
          code: "method_not_allowed",
          message: `method ${c.req.method} is not allowed on ${shown}; allowed: ${allow.join(", ")}`,
          field: "method",
        }),
        405,
        { Allow: allow.join(", ") },
      );
    }
    return c.json(
      errorBody(path, { code: "not_found", message: `no route for ${c.req.method} ${shown}`, field: "path" }),
      404,
    );
  };
}
