/**
 * The Worker's OpenAPI 3.1 document, generated from the app itself: hono-openapi lists every route the app has
 * registered (`includeEmptyPaths`: route modules need no per-route annotation, so a new route cannot be
 * forgotten), and request bodies and queries are the JSON Schema of the same zod schemas that validate them
 * (`z.toJSONSchema`). Error responses follow src/http/errors.ts: OIP v2 routes `{ "error": "…" }`, every other
 * route `{ "error": { code, message, field? } }`.
 *
 * Served at /openapi.json, with a self-contained reference page at /reference (no remote script: the Worker
 * and its docs work offline).
 */
import type { Hono } from "hono";
import { html, raw } from "hono/html";
import { generateSpecs } from "hono-openapi";
import { z } from "zod";
import { ClassifyBody } from "../gateway/classify";
import {
  CreateExperimentBody,
  FeedbackBody,
  ListExperimentsQuery,
  PatchExperimentBody,
  PromoteBody,
} from "../gateway/experiments/validation";
import { InferRequest } from "../gateway/oip";
import { isOipPath } from "../http/errors";
import { inputSchemasOf } from "../registry/validation";

/**
 * The zod schema that validates the JSON body of each route that reads its body in the handler (its own
 * `readJsonBody`/`prepareInfer` call). Routes that declare their input with `jsonInput`/`queryInput` (the
 * registry's) are not listed: their schemas are read from the route itself (`routeInputs`).
 */
const BODIES: Record<string, z.ZodType> = {
  "post /v1/experiments": CreateExperimentBody,
  "patch /v1/experiments/{id}": PatchExperimentBody,
  "post /v1/experiments/{id}/promote": PromoteBody,
  "post /v1/feedback": FeedbackBody,
  "post /v2/models/{model}/infer": InferRequest,
  "post /v2/models/{model}/versions/{version}/infer": InferRequest,
  "post /v1/models/{model}/classify": ClassifyBody,
  "post /v1/models/{model}/versions/{version}/classify": ClassifyBody,
};

const QUERIES: Record<string, z.ZodObject> = {
  "get /v1/experiments": ListExperimentsQuery,
};

/** `method /path/{param}`, as the document keys an operation. */
const operationKey = (method: string, path: string) =>
  `${method.toLowerCase()} ${path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`;

/**
 * The input schemas the app's routes declare with `jsonInput`/`queryInput` (src/registry/validation.ts), by
 * operation: each middleware is one of `app.routes` (a mounted module's handler is wrapped, the original kept
 * under Hono's `__COMPOSED_HANDLER`).
 */
export function routeInputs(app: Hono<never>): Map<string, { json?: z.ZodType; query?: z.ZodObject }> {
  const out = new Map<string, { json?: z.ZodType; query?: z.ZodObject }>();
  for (const route of app.routes) {
    const handler = route.handler as { __COMPOSED_HANDLER?: object };
    const schemas = inputSchemasOf(handler.__COMPOSED_HANDLER ?? handler);
    if (!schemas) continue;
    const key = operationKey(route.method, route.path);
    out.set(key, { ...out.get(key), ...schemas });
  }
  return out;
}

const jsonSchema = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { target: "draft-2020-12", io: "input", unrepresentable: "any" });

/** On the gateway's own failures (500, no loadable variant): the x-request-id its log lines carry. */
const REQUEST_ID = { type: "string", description: "the request's x-request-id, as logged with the cause" };
const OIP_ERROR = {
  type: "object",
  required: ["error"],
  properties: {
    error: { type: "string", description: "what is wrong, naming the field" },
    requestId: REQUEST_ID,
  },
};
const SLUICE_ERROR = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: { type: "string" },
        message: { type: "string" },
        field: { type: "string", description: "dotted path or header name to blame" },
      },
    },
    requestId: REQUEST_ID,
  },
};

type Operation = {
  operationId?: string;
  parameters?: { in: string; name: string; required?: boolean; schema?: unknown }[];
  requestBody?: unknown;
  responses?: Record<string, unknown>;
  tags?: string[];
};
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

function tagOf(path: string): string {
  if (isOipPath(path)) return "Open Inference Protocol v2";
  if (path.startsWith("/v1/experiments") || path === "/v1/feedback") return "experiments";
  if (/\/(classify|route)$/.test(path)) return "inference";
  if (path.startsWith("/v1/")) return "registry";
  return "worker";
}

/** Builds the document (once per isolate; see `useOpenApi`). */
export async function buildOpenApiDocument(app: Hono<never>): Promise<Document> {
  const doc = (await generateSpecs(app as never, {
    includeEmptyPaths: true,
    excludeStaticFile: false, // /openapi.json itself
    documentation: {
      openapi: "3.1.0",
      info: {
        title: "Sluice",
        version: "0.1.0",
        description:
          'Registry, experiments and inference of structurally pruned transformer variants. OIP v2 routes answer errors as {"error": "…"}; every other route as {"error": {code, message, field}}.',
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      },
    },
  })) as unknown as Document;
  const declared = routeInputs(app);
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const key = `${method} ${path}`;
      op.tags = [tagOf(path)];
      const body = declared.get(key)?.json ?? BODIES[key];
      if (body) {
        op.requestBody = { required: true, content: { "application/json": { schema: jsonSchema(body) } } };
      }
      const query = declared.get(key)?.query ?? QUERIES[key];
      if (query) {
        const shape = jsonSchema(query) as { properties?: Record<string, unknown>; required?: string[] };
        for (const [name, schema] of Object.entries(shape.properties ?? {})) {
          op.parameters = [
            ...(op.parameters ?? []),
            { in: "query", name, required: shape.required?.includes(name) ?? false, schema },
          ];
        }
      }
      const error = { "application/json": { schema: isOipPath(path) ? OIP_ERROR : SLUICE_ERROR } };
      op.responses = {
        "200": { description: "OK" },
        default: { description: "error", content: error },
      };
    }
  }
  return doc;
}

/** A reference page generated from the document: every operation, its parameters and body schema; no scripts. */
export function referencePage(doc: Document) {
  const rows = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(
      ([method, op]) => html`<section>
  <h2><code>${method.toUpperCase()} ${path}</code> <small>${(op.tags ?? []).join(", ")}</small></h2>
  ${(op.parameters ?? []).length ? html`<p>parameters: ${(op.parameters ?? []).map((p) => `${p.name} (${p.in})`).join(", ")}</p>` : ""}
  ${op.requestBody ? html`<details><summary>request body (JSON Schema)</summary><pre>${JSON.stringify((op.requestBody as { content: Record<string, { schema: unknown }> }).content["application/json"].schema, null, 2)}</pre></details>` : ""}
</section>`,
    ),
  );
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sluice API reference</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}h2{font-size:1rem;margin:1.2rem 0 .2rem}small{color:#666;font-weight:normal}pre{background:#f6f6f6;padding:.6rem;overflow:auto}</style>
</head><body>
<h1>Sluice API reference</h1>
<p>Generated from <a href="/openapi.json">/openapi.json</a> (OpenAPI ${doc.openapi}). ${raw("&middot;")} Errors: OIP v2 routes <code>{"error": "…"}</code>; all others <code>{"error": {"code", "message", "field"}}</code>.</p>
${rows}
</body></html>`;
}

/** Mounts /openapi.json and /reference on the app; the document is built on first request, from the app itself. */
export function useOpenApi(app: Hono<never>): void {
  // Only a settled document is shared (workerd cancels a request that waits on another request's promise).
  let document: Document | undefined;
  const documentOf = async () => {
    document ??= await buildOpenApiDocument(app);
    return document;
  };
  app.get("/openapi.json", async (c) => c.json(await documentOf()));
  app.get("/reference", async (c) => c.html(referencePage(await documentOf())));
}
