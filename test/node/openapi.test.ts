// The OpenAPI document the Worker serves at /openapi.json: built from the app itself, so every route the app
// registers appears, request bodies are the zod schemas' JSON Schema, and the whole validates against the
// OpenAPI 3.1 schema (@seriousme/openapi-schema-validator, ajv: it cannot run in workerd, which forbids eval, so
// this is a node test; test/workers/health.test.ts checks the Worker serves the document).
import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import {
  CreateKeyBody,
  CreateModelBody,
  ListVariantsQuery,
  PatchVariantBody,
  PutAliasBody,
  PutSlaBody,
} from "../../src/registry/validation";
import { createApp } from "../../src/worker/app";
import { buildOpenApiDocument, routeInputs } from "../../src/worker/openapi";

describe("the OpenAPI document", async () => {
  const app = createApp();
  const doc = await buildOpenApiDocument(app as never);

  it("validates against the OpenAPI 3.1 schema", async () => {
    expect(doc.openapi).toBe("3.1.0");
    const result = await new Validator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it("lists every route the app registers (method and path)", () => {
    const routes = new Set(
      app.routes
        .filter((r) => r.method !== "ALL") // `use()` middleware, not operations
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`),
    );
    expect(routes.size).toBeGreaterThan(40);
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m} ${path}`)),
    );
    expect([...routes].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !routes.has(r))).toEqual([]);
  });

  it("describes request bodies with the validating zod schemas and errors in each protocol's shape", () => {
    const createModel = doc.paths["/v1/models"].post as {
      requestBody: { content: { "application/json": { schema: { properties: Record<string, unknown> } } } };
    };
    expect(Object.keys(createModel.requestBody.content["application/json"].schema.properties)).toEqual(
      expect.arrayContaining(["name", "task", "labels"]),
    );
    const errorOf = (path: string, method: string) =>
      (
        doc.paths[path][method] as {
          responses: {
            default: {
              content: { "application/json": { schema: { properties: { error: { type: string } } } } };
            };
          };
        }
      ).responses.default.content["application/json"].schema.properties.error.type;
    expect(errorOf("/v2/models/{model}/infer", "post")).toBe("string");
    expect(errorOf("/v1/models/{model}/classify", "post")).toBe("object");
    expect(doc.paths["/v1/models/{model}/classify"].post.requestBody).toBeDefined();
  });

  it("takes the registry's body and query schemas from the routes' own input middleware", () => {
    const inputs = routeInputs(app as never);
    const bodies = {
      "post /v1/models": CreateModelBody,
      "patch /v1/models/{model}/variants/{version}": PatchVariantBody,
      "put /v1/models/{model}/aliases/{alias}": PutAliasBody,
      "put /v1/tasks/{task}/sla": PutSlaBody,
      "post /v1/keys": CreateKeyBody,
    };
    type Body = { requestBody?: { content: { "application/json": { schema: Record<string, unknown> } } } };
    const schemaOf = (key: string) => {
      const [method, path] = key.split(" ");
      return (doc.paths[path][method] as Body).requestBody?.content["application/json"].schema;
    };
    for (const [key, schema] of Object.entries(bodies)) {
      expect(inputs.get(key)?.json, key).toBe(schema);
      expect(schemaOf(key), key).toBeDefined();
    }
    expect(inputs.get("get /v1/models/{model}/variants")?.query).toBe(ListVariantsQuery);
    // What each body accepts, written out here rather than derived from the schemas under test.
    const props = (key: string) => schemaOf(key)?.properties as Record<string, Record<string, unknown>>;
    expect(props("patch /v1/models/{model}/variants/{version}").status.enum).toEqual([
      "staged",
      "active",
      "retired",
    ]);
    expect(props("put /v1/models/{model}/aliases/{alias}").version.type).toBe("integer");
    expect(Object.keys(props("put /v1/tasks/{task}/sla")).sort()).toEqual(
      ["confidence", "margin", "maxLatencyMs", "metric", "min", "strict"].sort(),
    );
    expect((props("post /v1/keys").scopes as { items: { enum: string[] } }).items.enum).toEqual([
      "infer",
      "feedback",
      "admin",
    ]);
    const listing = doc.paths["/v1/models/{model}/variants"].get as {
      parameters: { in: string; name: string }[];
    };
    const query = listing.parameters.filter((p) => p.in === "query").map((p) => p.name);
    expect(query.sort()).toEqual(["maxSparsity", "minAccuracy", "status"]);
  });
});
