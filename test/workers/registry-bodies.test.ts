// The registry's JSON bodies beyond model creation (PATCH variant, PUT alias, PUT SLA, POST keys): each is read
// by the one body reader through its route's `jsonInput` schema, so each answers like POST /v1/models does:
// 422 naming the bad field (an unknown key included), 400 naming `body` for bad JSON, 415 naming Content-Type
// for another media type, 413 over the registry's 1 MiB; and the body is checked before the route's lookups.
import { beforeAll, describe, expect, it } from "vitest";
import { api, expectError, jsonInit, rawInit, seedModel } from "./helpers";

interface Route {
  method: string;
  path: string;
  /** A body the route accepts. */
  good: Record<string, unknown>;
  /** Bodies it refuses with 422, and the field each must name. */
  bad: [Record<string, unknown>, string][];
}

const ROUTES: Route[] = [
  {
    method: "PATCH",
    path: "/v1/models/bodies/variants/1",
    good: { status: "active" },
    bad: [
      [{ status: "deleted" }, "status"],
      [{}, "status"],
      [{ status: "active", colour: "red" }, "colour"],
    ],
  },
  {
    method: "PUT",
    path: "/v1/models/bodies/aliases/prod",
    good: { version: 1 },
    bad: [
      [{ version: "1" }, "version"],
      [{ version: 0 }, "version"],
      [{ version: 1, variant: 2 }, "variant"],
    ],
  },
  {
    method: "PUT",
    path: "/v1/tasks/bodies/sla",
    good: { metric: "accuracy", min: 0.5 },
    bad: [
      [{ metric: "f1", min: 0.9 }, "metric"],
      [{ metric: "accuracy", min: 1.2 }, "min"],
      [{ metric: "accuracy" }, "min"],
      [{ metric: "accuracy", min: 0.9, confidence: 0.9 }, "confidence"],
      [{ metric: "accuracy", min: 0.9, latency: 3 }, "latency"],
    ],
  },
  {
    method: "POST",
    path: "/v1/keys",
    good: { scopes: ["infer"] },
    bad: [
      [{ scopes: ["root"] }, "scopes.0"],
      [{ scopes: [] }, "scopes"],
      [{ scopes: ["infer"], models: ["Not A Name"] }, "models.0"],
      [{ scopes: ["infer"], expires: 1 }, "expires"],
    ],
  },
];

beforeAll(async () => {
  await seedModel("bodies", [{}]);
});

describe.each(ROUTES)("$method $path", (route) => {
  it("accepts its body", async () => {
    const res = await api(route.path, jsonInit(route.method, route.good));
    expect(res.status, await res.clone().text()).toBeLessThan(300);
  });

  it("answers 422 naming the field for each bad body", async () => {
    for (const [body, field] of route.bad) {
      const err = await expectError(
        await api(route.path, jsonInit(route.method, body)),
        422,
        "invalid_body",
        field,
      );
      expect(err.error.message.startsWith(`${field}: `)).toBe(true);
    }
  });

  it("answers 400 for bad JSON, 415 for another media type, 413 over 1 MiB, 401 without the token", async () => {
    await expectError(
      await api(route.path, rawInit(route.method, "{", "application/json")),
      400,
      "bad_request",
      "body",
    );
    await expectError(
      await api(route.path, rawInit(route.method, "status=active", "text/plain")),
      415,
      "unsupported_media_type",
      "Content-Type",
    );
    const huge = JSON.stringify({ ...route.good, pad: "x".repeat(1024 * 1024) });
    await expectError(
      await api(route.path, rawInit(route.method, huge, "application/json")),
      413,
      "payload_too_large",
      "body",
    );
    await expectError(
      await api(route.path, jsonInit(route.method, route.good, {})),
      401,
      "unauthorized",
      "Authorization",
    );
  });
});

it("checks the body before the route's lookups: a bad body for an unknown model is a 422, a good one a 404", async () => {
  const path = "/v1/models/no-such-model/variants/1";
  await expectError(await api(path, jsonInit("PATCH", { status: "deleted" })), 422, "invalid_body", "status");
  await expectError(await api(path, jsonInit("PATCH", { status: "active" })), 404, "not_found", "model");
  const alias = "/v1/models/no-such-model/aliases/prod";
  await expectError(await api(alias, jsonInit("PUT", { version: "x" })), 422, "invalid_body", "version");
  await expectError(await api(alias, jsonInit("PUT", { version: 1 })), 404, "not_found", "model");
});
