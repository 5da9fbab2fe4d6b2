// Malformed and impossible requests against the real Worker (SELF: registry + gateway mounted as deployed):
// each gets the right 4xx (or 503) naming the field, none a 500. None of these reaches onnxruntime, so this
// file never loads ORT's wasm. Also: the catalog cache.
import { env, SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { Catalog } from "../../src/gateway/catalog";
import { DEFAULT_CONFIG } from "../../src/gateway/config";
import { api, createModel, jsonInit, registerVariant, withKey } from "./helpers";

const ids = (batch: number, seq: number, value = 1) => ({
  name: "input_ids",
  datatype: "INT64",
  shape: [batch, seq],
  data: Array(batch * seq).fill(value),
});
const mask = (batch: number, seq: number) => ({ ...ids(batch, seq), name: "attention_mask" });
const good = { inputs: [ids(1, 3), mask(1, 3)] };

interface Case {
  name: string;
  path?: string;
  method?: string;
  body?: unknown;
  raw?: string;
  contentType?: string | null;
  headers?: Record<string, string>;
  status: number;
  /** The field the error must name. */
  field: string;
}

const cases: Case[] = [
  { name: "unknown model", path: "/v2/models/nope/infer", body: good, status: 404, field: "nope" },
  { name: "impossible model name", path: "/v2/models/NOPE!/infer", body: good, status: 404, field: "NOPE!" },
  {
    name: "unknown pinned version",
    path: "/v2/models/bad/versions/99/infer",
    body: good,
    status: 404,
    field: "version",
  },
  {
    name: "non-numeric version",
    path: "/v2/models/bad/versions/x1/infer",
    body: good,
    status: 404,
    field: "version",
  },
  {
    name: "retired version",
    path: "/v2/models/bad/versions/2/infer",
    body: good,
    status: 404,
    field: "version",
  },
  { name: "text/plain body", raw: "hello", contentType: "text/plain", status: 415, field: "Content-Type" },
  {
    name: "no content-type",
    raw: JSON.stringify(good),
    contentType: null,
    status: 415,
    field: "Content-Type",
  },
  { name: "not JSON", raw: "{inputs: nope", status: 400, field: "body" },
  { name: "JSON null", raw: "null", status: 400, field: "body" },
  { name: "JSON array", body: [], status: 400, field: "body" },
  { name: "no inputs", body: {}, status: 400, field: "inputs" },
  { name: "empty inputs", body: { inputs: [] }, status: 400, field: "inputs" },
  {
    name: "input without name",
    body: { inputs: [{ ...ids(1, 3), name: undefined }] },
    status: 400,
    field: "inputs[0].name",
  },
  {
    name: "shape of strings",
    body: { inputs: [{ ...ids(1, 3), shape: ["1", "3"] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].shape[0]",
  },
  {
    name: "negative dimension",
    body: { inputs: [{ ...ids(1, 3), shape: [-1, 3] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].shape[0]",
  },
  {
    name: "zero dimension",
    body: { inputs: [{ ...ids(1, 3), shape: [0, 3], data: [] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].shape[0]",
  },
  {
    name: "wrong rank",
    body: { inputs: [{ ...ids(1, 3), shape: [3] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].shape",
  },
  {
    name: "FP16 unsupported",
    body: { inputs: [{ ...ids(1, 3), datatype: "FP16" }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].datatype",
  },
  {
    name: "BYTES unsupported",
    body: { inputs: [{ ...ids(1, 3), datatype: "BYTES" }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].datatype",
  },
  {
    name: "unknown datatype",
    body: { inputs: [{ ...ids(1, 3), datatype: "FLOAT" }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].datatype",
  },
  {
    name: "datatype the model does not take",
    body: { inputs: [{ ...ids(1, 3), datatype: "FP32" }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].datatype",
  },
  {
    name: "too little data",
    body: { inputs: [{ ...ids(1, 3), data: [1, 2] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "too much data",
    body: { inputs: [{ ...ids(1, 3), data: [1, 2, 3, 4] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "data not an array",
    body: { inputs: [{ ...ids(1, 3), data: "1,2,3" }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "string elements",
    body: { inputs: [{ ...ids(1, 3), data: [1, "2", 3] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "fractional INT64",
    body: { inputs: [{ ...ids(1, 3), data: [1, 2.5, 3] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "unsafe INT64",
    body: { inputs: [{ ...ids(1, 3), data: [1, 2 ** 60, 3] }, mask(1, 3)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "absurd nesting",
    body: { inputs: [{ ...ids(1, 1), data: [[[[[[[[[[1]]]]]]]]]] }, mask(1, 1)] },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "ragged nested rows (as many leaves as the shape needs)",
    body: {
      inputs: [
        {
          ...ids(2, 3),
          data: [
            [1, 1, 1, 1],
            [1, 1],
          ],
        },
        mask(2, 3),
      ],
    },
    status: 400,
    field: "inputs[0].data[0]",
  },
  {
    name: "a short nested row",
    body: {
      inputs: [
        {
          ...ids(2, 3),
          data: [
            [1, 1, 1],
            [1, 1],
          ],
        },
        mask(2, 3),
      ],
    },
    status: 400,
    field: "inputs[0].data[1]",
  },
  {
    name: "nested and flat mixed",
    body: { inputs: [{ ...ids(2, 3), data: [[1, 1, 1], 1] }, mask(2, 3)] },
    status: 400,
    field: "inputs[0].data[1]",
  },
  {
    name: "nesting that contradicts the shape",
    body: {
      inputs: [
        {
          ...ids(2, 3),
          data: [
            [1, 1],
            [1, 1],
            [1, 1],
          ],
        },
        mask(2, 3),
      ],
    },
    status: 400,
    field: "inputs[0].data",
  },
  {
    name: "batch over the limit",
    body: { inputs: [ids(65, 1), mask(65, 1)] },
    status: 400,
    field: "inputs[0].shape[0]",
  },
  {
    name: "sequence over the limit",
    body: { inputs: [ids(1, 513), mask(1, 513)] },
    status: 400,
    field: "inputs[0].shape[1]",
  },
  { name: "missing input", body: { inputs: [ids(1, 3)] }, status: 400, field: "attention_mask" },
  {
    name: "extra input",
    body: { inputs: [ids(1, 3), mask(1, 3), { ...ids(1, 3), name: "token_type_ids" }] },
    status: 400,
    field: "inputs[2].name",
  },
  { name: "duplicate input", body: { inputs: [ids(1, 3), ids(1, 3)] }, status: 400, field: "inputs[1].name" },
  {
    name: "batch disagreement",
    body: { inputs: [ids(1, 3), mask(2, 3)] },
    status: 400,
    field: "inputs[1].shape[0]",
  },
  {
    name: "unknown output",
    body: { ...good, outputs: [{ name: "probs" }] },
    status: 400,
    field: "outputs[0].name",
  },
  {
    name: "min accuracy not a number",
    body: good,
    headers: { "x-sluice-min-accuracy": "high" },
    status: 400,
    field: "x-sluice-min-accuracy",
  },
  {
    name: "min accuracy above 1",
    body: good,
    headers: { "x-sluice-min-accuracy": "1.5" },
    status: 400,
    field: "x-sluice-min-accuracy",
  },
  {
    name: "oversized body",
    raw: JSON.stringify({ inputs: [ids(1, 1)], pad: "x".repeat(DEFAULT_CONFIG.maxBodyBytes) }),
    status: 413,
    field: "body",
  },
  {
    name: "model with no active variant",
    path: "/v2/models/idle/infer",
    body: good,
    status: 503,
    field: "no active variant",
  },
  // classify
  {
    name: "classify: neither text nor texts",
    path: "/v1/models/bad/classify",
    body: {},
    status: 400,
    field: "body",
  },
  {
    name: "classify: both",
    path: "/v1/models/bad/classify",
    body: { text: "a", texts: ["b"] },
    status: 400,
    field: "body",
  },
  {
    name: "classify: empty text",
    path: "/v1/models/bad/classify",
    body: { text: "" },
    status: 400,
    field: "text",
  },
  {
    name: "classify: text not a string",
    path: "/v1/models/bad/classify",
    body: { text: 5 },
    status: 400,
    field: "text",
  },
  {
    name: "classify: empty texts",
    path: "/v1/models/bad/classify",
    body: { texts: [] },
    status: 400,
    field: "texts",
  },
  {
    name: "classify: texts of numbers",
    path: "/v1/models/bad/classify",
    body: { texts: ["a", 2] },
    status: 400,
    field: "texts[1]",
  },
  {
    name: "classify: too many texts",
    path: "/v1/models/bad/classify",
    body: { texts: Array(65).fill("a") },
    status: 400,
    field: "texts",
  },
  {
    name: "classify: text too long",
    path: "/v1/models/bad/classify",
    body: { text: "a".repeat(100_001) },
    status: 400,
    field: "text",
  },
  {
    name: "classify: unknown key",
    path: "/v1/models/bad/classify",
    body: { text: "a", lang: "en" },
    status: 400,
    field: "body",
  },
  {
    name: "classify: unknown model",
    path: "/v1/models/nope/classify",
    body: { text: "a" },
    status: 404,
    field: "model",
  },
  {
    name: "classify: variant without tokenizer",
    path: "/v1/models/bad/classify",
    body: { text: "a" },
    status: 422,
    field: "model",
  },
  { name: "classify: not JSON", path: "/v1/models/bad/classify", raw: "text=a", status: 400, field: "body" },
  {
    name: "route: accuracy out of range",
    path: "/v1/models/bad/route?minAccuracy=2",
    method: "GET",
    status: 400,
    field: "minAccuracy",
  },
  { name: "route: unknown model", path: "/v1/models/nope/route", method: "GET", status: 404, field: "model" },
  { name: "metadata: unknown model", path: "/v2/models/nope", method: "GET", status: 404, field: "nope" },
  {
    name: "ready: no active variant",
    path: "/v2/models/idle/ready",
    method: "GET",
    status: 503,
    field: "no active variant",
  },
];

beforeAll(async () => {
  const created = await createModel("bad");
  expect(created.status).toBe(201);
  const v1 = await registerVariant("bad", { seed: 1 });
  const v2 = await registerVariant("bad", { seed: 2 });
  expect([v1.res.status, v2.res.status]).toEqual([201, 201]);
  expect((await api("/v1/models/bad/variants/1", jsonInit("PATCH", { status: "active" }))).status).toBe(200);
  expect((await api("/v1/models/bad/variants/2", jsonInit("PATCH", { status: "retired" }))).status).toBe(200);
  expect((await createModel("idle")).status).toBe(201);
  expect((await registerVariant("idle", { seed: 3 })).res.status).toBe(201); // staged only
});

describe("malformed requests never produce a 500", () => {
  for (const c of cases) {
    it(`${c.name} -> ${c.status}`, async () => {
      const method = c.method ?? "POST";
      const headers: Record<string, string> = await withKey(c.headers);
      if (method === "POST" && c.contentType !== null)
        headers["content-type"] = c.contentType ?? "application/json";
      const body = method === "GET" ? undefined : (c.raw ?? JSON.stringify(c.body));
      const res = await api(c.path ?? "/v2/models/bad/infer", { method, headers, body });
      const json = (await res.json()) as {
        error: string | { code: string; message: string; field?: string };
      };
      expect(res.status, JSON.stringify(json)).toBe(c.status);
      const message =
        typeof json.error === "string" ? json.error : `${json.error.field} ${json.error.message}`;
      expect(message).toContain(c.field);
      // OIP routes answer { error: string }; Sluice's /v1 routes the registry's { error: { code, message } }.
      expect(typeof json.error).toBe((c.path ?? "/v2/").startsWith("/v2/") ? "string" : "object");
    });
  }
});

describe("request ids", () => {
  it("echoes a client's x-request-id, and makes one when it is absent or implausible", async () => {
    const echoed = await api("/v2/models/nope/ready", { headers: { "x-request-id": "client-42" } });
    expect(echoed.headers.get("x-request-id")).toBe("client-42");
    await echoed.arrayBuffer();
    for (const sent of [undefined, "has spaces", "x".repeat(129), "line\u0001break"]) {
      const res = await api(
        "/v2/health/live",
        sent === undefined ? {} : { headers: { "x-request-id": sent } },
      );
      expect(res.headers.get("x-request-id")).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
      );
      await res.arrayBuffer();
    }
  });
});

describe("catalog cache", () => {
  it("reuses a lookup within its TTL, caches unknown models, and asks D1 again after it", async () => {
    let now = 1_000;
    const catalog = new Catalog(5_000, () => now);
    const first = await catalog.lookup(env.DB, "bad");
    expect(first?.model.name).toBe("bad");
    expect(first?.variants.map((v) => [v.version, v.status])).toEqual([
      [1, "active"],
      [2, "retired"],
    ]);
    await catalog.lookup(env.DB, "bad");
    expect(await catalog.lookup(env.DB, "nope")).toBeNull();
    await catalog.lookup(env.DB, "nope");
    expect(catalog.queries).toBe(2);
    now += 5_001;
    await catalog.lookup(env.DB, "bad");
    expect(catalog.queries).toBe(3);
    catalog.invalidate("bad");
    await catalog.lookup(env.DB, "bad");
    expect(catalog.queries).toBe(4);
  });

  it("keeps at most maxEntries names", async () => {
    const catalog = new Catalog(60_000, Date.now, 3);
    for (const name of ["a1", "a2", "a3", "a4", "bad"]) await catalog.lookup(env.DB, name);
    await catalog.lookup(env.DB, "a1"); // dropped as the oldest: asked again
    expect(catalog.queries).toBe(6);
    await catalog.lookup(env.DB, "bad");
    expect(catalog.queries).toBe(6);
  });

  it("never hands a query in flight to another lookup, only its settled result", async () => {
    // Concurrent lookups may come from different requests, and workerd cancels a request that awaits another
    // request's I/O as hung: so concurrent misses each query, and the first result to land is reused.
    const catalog = new Catalog(5_000);
    const entries = await Promise.all(Array.from({ length: 4 }, () => catalog.lookup(env.DB, "bad")));
    expect(catalog.queries).toBe(4);
    expect(entries.every((e) => e?.model.name === "bad")).toBe(true);
    await catalog.lookup(env.DB, "bad");
    expect(catalog.queries).toBe(4);
  });

  it("does not cache a result whose query overlapped an invalidation", async () => {
    const catalog = new Catalog(60_000);
    const inFlight = catalog.lookup(env.DB, "bad");
    catalog.invalidate(); // a registry write landed while the query was out
    expect((await inFlight)?.model.name).toBe("bad");
    await catalog.lookup(env.DB, "bad");
    expect(catalog.queries).toBe(2);
  });

  it("keeps its lookups across classify requests (they read the registry, never write it)", async () => {
    const route = async () =>
      (
        (await (
          await SELF.fetch("http://gateway/v1/models/keep/route", { headers: await withKey() })
        ).json()) as { chosen: number | null }
      ).chosen;
    expect((await createModel("keep")).status).toBe(201);
    expect((await registerVariant("keep", { seed: 1, p50Ms: 5 })).res.status).toBe(201);
    expect((await registerVariant("keep", { seed: 2, p50Ms: 1 })).res.status).toBe(201);
    expect((await api("/v1/models/keep/variants/1", jsonInit("PATCH", { status: "active" }))).status).toBe(
      200,
    );
    expect(await route()).toBe(1); // cached now
    // Activate v2 behind the gateway's back (straight in D1): only a cache drop would reveal it before the TTL.
    await env.DB.prepare(
      "update variants set status = 'active' where version = 2 and model_id = (select id from models where name = 'keep')",
    ).run();
    const classify = await SELF.fetch("http://gateway/v1/models/keep/classify", {
      method: "POST",
      headers: await withKey({ "content-type": "application/json" }),
      body: JSON.stringify({ text: "hello" }),
    });
    expect(classify.status).toBe(422); // no tokenizer: answered before anything loads
    await classify.arrayBuffer();
    expect(await route()).toBe(1); // still the cached lookup: the classify POST dropped nothing
    expect((await api("/v1/models/keep/variants/2", jsonInit("PATCH", { status: "active" }))).status).toBe(
      200,
    );
    expect(await route()).toBe(2); // a registry write does drop it
  });

  it("sees registry writes made in the same isolate at once, despite the TTL", async () => {
    const route = async () =>
      (
        (await (
          await SELF.fetch("http://gateway/v1/models/cache/route", { headers: await withKey() })
        ).json()) as { chosen: number | null }
      ).chosen;
    expect((await createModel("cache")).status).toBe(201);
    expect((await registerVariant("cache", { seed: 1, p50Ms: 5 })).res.status).toBe(201);
    expect((await registerVariant("cache", { seed: 2, p50Ms: 1 })).res.status).toBe(201);
    expect((await api("/v1/models/cache/variants/1", jsonInit("PATCH", { status: "active" }))).status).toBe(
      200,
    );
    expect(await route()).toBe(1); // now cached for 5 s
    expect((await api("/v1/models/cache/variants/2", jsonInit("PATCH", { status: "active" }))).status).toBe(
      200,
    );
    expect(await route()).toBe(2); // faster, and seen without waiting for the TTL
  });

  it("serves liveness, readiness and server metadata", async () => {
    expect((await SELF.fetch("http://gateway/v2/health/ready")).status).toBe(200);
    expect(await (await SELF.fetch("http://gateway/v2")).json()).toMatchObject({ name: "sluice" });
  });
});
