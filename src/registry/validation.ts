/**
 * zod schemas for every registry request body, path parameter and query string, and the helpers that turn a
 * failed parse into the right status: syntax (not JSON, not a number) is 400, well-formed but invalid is 422,
 * the wrong media type is 415.
 */
import type { Context, Env } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import { IoSignature, MODEL_NAME_PATTERN, MODEL_NAME_RULE } from "../core/manifest";
import { BODY_LIMITS, readJsonBody as readJson } from "../http/body";
import { ModelNameParam, PositiveIdParam } from "../http/params";
import { fromZodError } from "./errors";
import { API_KEY_SCOPES, VARIANT_STATUSES } from "./schema";

/** The same rule the manifest applies to model names. */
export const ModelName = ModelNameParam;
export const TaskName = z.string().regex(MODEL_NAME_PATTERN, MODEL_NAME_RULE);
export const AliasName = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,63}$/, "a lowercase letter, then letters, digits, '.', '_' or '-'");
/** Path versions and key ids: the one strict parser (src/http/params.ts), never `Number()`. */
export const Version = PositiveIdParam;
export const VariantStatus = z.enum(VARIANT_STATUSES);

export const CreateModelBody = z.object({
  name: ModelName,
  task: TaskName,
  labels: z.array(z.string().min(1)).min(1),
  io: IoSignature,
});
export type CreateModelBody = z.infer<typeof CreateModelBody>;

export const ListVariantsQuery = z.object({
  status: VariantStatus.optional(),
  minAccuracy: z.coerce.number().min(0).max(1).optional(),
  maxSparsity: z.coerce.number().min(0).max(1).optional(),
});

export const PatchVariantBody = z.object({ status: VariantStatus }).strict();

export const PutAliasBody = z.object({ version: z.number().int().positive() }).strict();

export const PutSlaBody = z
  .object({
    metric: z.literal("accuracy"),
    /** Floor on the registered (point) accuracy. */
    min: z.number().min(0).max(1).optional(),
    /** Non-inferiority margin δ: a variant must be proven within δ of the most accurate active variant. */
    margin: z.number().gt(0).max(1).optional(),
    /** Confidence of the margin test (default 0.95). */
    confidence: z.number().gt(0.5).lt(1).optional(),
    maxLatencyMs: z.number().positive().optional(),
    strict: z.boolean().optional(),
  })
  .strict()
  .refine((b) => b.min !== undefined || b.margin !== undefined, {
    message: "give min, margin or both",
    path: ["min"],
  })
  .refine((b) => b.confidence === undefined || b.margin !== undefined, {
    message: "confidence applies to a margin; give margin too",
    path: ["confidence"],
  });

export const CreateKeyBody = z
  .object({
    scopes: z.array(z.enum(API_KEY_SCOPES)).min(1).default(["infer"]),
    /** Limit the key to these models (omitted: every model). */
    models: z.array(ModelName).min(1).max(100).optional(),
  })
  .strict();

export const KeyId = PositiveIdParam;

/** Parses a path parameter or query value; failures are 400 naming the parameter. */
export function parseParam<T extends z.ZodType>(schema: T, value: unknown, field: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw fromZodError(r.error, { status: 400, code: "bad_request", prefix: field });
  return r.data;
}

export function parseQuery<T extends z.ZodType>(schema: T, query: Record<string, string>): z.infer<T> {
  const r = schema.safeParse(query);
  if (!r.success) throw fromZodError(r.error, { status: 400, code: "bad_request" });
  return r.data;
}

/**
 * Reads a JSON body with the one body reader (src/http/body.ts: byte cap, 413, 415, 400 for bad JSON) and
 * validates it: 422 for a body that does not fit the schema. An empty body counts as `{}` so all-optional
 * bodies may be omitted.
 */
export async function readJsonBody<T extends z.ZodType>(
  c: Context,
  schema: T,
  maxBytes: number = BODY_LIMITS.registryJsonBytes,
): Promise<z.infer<T>> {
  const json = await readJson(c, { maxBytes, empty: {} });
  const r = schema.safeParse(json);
  if (!r.success) throw fromZodError(r.error, { status: 422, code: "invalid_body" });
  return r.data;
}

/** The schemas an input middleware validates, so the OpenAPI document describes exactly what is checked. */
export interface InputSchemas {
  json?: z.ZodType;
  query?: z.ZodObject;
}
const inputSchemas = new WeakMap<object, InputSchemas>();

/** The schemas `jsonInput` / `queryInput` attached to this route handler (none for any other handler). */
export function inputSchemasOf(handler: object): InputSchemas | undefined {
  return inputSchemas.get(handler);
}

/**
 * `readJsonBody` as route middleware: the handler takes the body from `c.req.valid("json")`, and the route's type
 * carries the schema's input, so `hono/client` (the CLI's registry client) gets a typed `json` argument, and the
 * OpenAPI document (src/worker/openapi.ts) reads the schema from the route itself (`inputSchemasOf`). Errors are
 * the same 413/415/400/422 as `readJsonBody`'s. It runs before the handler, so a body is refused before the
 * handler's own lookups (a bad body for an unknown model is a 422, not a 404).
 */
export const jsonInput = <T extends z.ZodType>(schema: T, maxBytes?: number) => {
  const middleware = createMiddleware<Env, string, { in: { json: z.input<T> }; out: { json: z.output<T> } }>(
    async (c, next) => {
      // A schema may parse to a non-object (none of the registry's do); Hono's slot is typed `{}`.
      c.req.addValidatedData("json", (await readJsonBody(c, schema, maxBytes)) as object);
      await next();
    },
  );
  inputSchemas.set(middleware, { json: schema });
  return middleware;
};

/**
 * `parseQuery` as route middleware (400 naming the parameter): the handler takes the filters from
 * `c.req.valid("query")`, and the client a typed `query` argument (strings, as they travel in the URL).
 */
export const queryInput = <T extends z.ZodObject>(schema: T) => {
  const middleware = createMiddleware<
    Env,
    string,
    { in: { query: { [K in keyof z.input<T>]?: string } }; out: { query: z.output<T> } }
  >(async (c, next) => {
    c.req.addValidatedData("query", parseQuery(schema, c.req.query()));
    await next();
  });
  inputSchemas.set(middleware, { query: schema });
  return middleware;
};
