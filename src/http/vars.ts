/**
 * Worker vars and secrets, validated with zod. Each part declares the vars it reads as a zod object (the
 * gateway's in src/gateway/config.ts, the registry's in src/registry/config.ts); src/worker/env.ts composes them
 * into the one schema of the Worker. A default is written once, in that schema; a value that does not parse is
 * never silently replaced by the default: it is a `503 misconfigured` naming the variable, on every request,
 * until the deployment is fixed.
 *
 * Parsing is memoised per env object (an isolate keeps one), so each isolate parses its vars once.
 */
import { z } from "zod";
import { HttpError } from "./errors";

export class ConfigError extends HttpError {
  override name = "ConfigError";
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(503, "misconfigured", `${variable}: ${message}`, variable);
  }
}

/** A var that holds a number: unset or empty means `fallback`; anything else must be a plain decimal >= min. */
export function numberVar(
  fallback: number,
  opts: { integer?: boolean; min?: number; positive?: boolean } = {},
) {
  const min = opts.min ?? 0;
  const what = `${opts.integer ? "an integer" : "a number"} ${opts.positive ? `> ${min}` : `>= ${min}`}`;
  return z
    .union([z.string(), z.number()])
    .optional()
    .transform((raw, ctx) => {
      const text = typeof raw === "number" ? String(raw) : raw?.trim();
      if (text === undefined || text === "") return fallback;
      const n = Number(text);
      const ok =
        /^\d+(\.\d+)?$/.test(text) &&
        (!opts.integer || Number.isInteger(n)) &&
        (opts.positive ? n > min : n >= min);
      if (!ok) {
        ctx.addIssue({ code: "custom", message: `must be ${what}, got '${text.slice(0, 40)}'` });
        return z.NEVER;
      }
      return n;
    });
}

/** An optional string var or secret; empty counts as unset. */
export const optionalStringVar = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === "" ? undefined : v));

const parsed = new WeakMap<z.ZodType, WeakMap<object, unknown>>();

/** `schema` parsed from `env`, once per env object; a bad value throws ConfigError naming its variable. */
export function parseVars<S extends z.ZodType>(schema: S, env: object): z.output<S> {
  let byEnv = parsed.get(schema);
  if (!byEnv) {
    byEnv = new WeakMap();
    parsed.set(schema, byEnv);
  }
  if (byEnv.has(env)) return byEnv.get(env) as z.output<S>;
  const r = schema.safeParse(env);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ConfigError(String(issue.path[0] ?? "env"), issue.message);
  }
  byEnv.set(env, r.data);
  return r.data;
}
