// Access control against the real Worker (SELF, real D1): every route that needs an API key, with no key, a
// malformed, oversized, unknown or revoked key, a key without the scope or the model, and the right key.
// Nothing here reaches onnxruntime (a right key on infer/classify is answered by validation after auth passes;
// 200s from a real session are in gateway-inference.test.ts), so this file never loads ORT's wasm.
import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { mintRequestId } from "../../src/gateway/experiments/serving";
import { MAX_CREDENTIAL_CHARS } from "../../src/http/credentials";
import { API_KEY_CACHE_TTL_MS, ApiKeyCache } from "../../src/registry/auth";
import { RegistryGeneration } from "../../src/registry/generation";
import { RegistrySignal } from "../../src/registry/invalidation";
import { registryDb, revokeApiKey } from "../../src/registry/store";
import { API_KEY_ROUTES, createApp } from "../../src/worker/app";
import { admin, api, createModel, jsonInit, mintKey, registerVariant } from "./helpers";

type Json = { error: string | { code: string; message: string; field?: string } };

/** One request per protected route; `ok` is what a right key gets (auth passed; no session loaded). */
const routes = [
  { path: "/v2/models/authm/infer", body: { inputs: [] }, ok: 400 },
  { path: "/v2/models/authm/versions/1/infer", body: { inputs: [] }, ok: 400 },
  { path: "/v1/models/authm/classify", body: { txt: "typo" }, ok: 400 },
  { path: "/v1/models/authm/versions/1/classify", body: { txt: "typo" }, ok: 400 },
  { path: "/v1/models/authm/route", ok: 200 },
  { path: "/v1/feedback", body: { requestId: mintRequestId(999_999), label: "a" }, ok: 404 },
];

function call(path: string, headers: Record<string, string>, body?: unknown, via = SELF) {
  return via.fetch(
    new Request(`http://gateway${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
}

/** Asserts status and the error shape: OIP `{ error: string }` on /v2, `{ error: { code, field } }` elsewhere. */
async function expectDenied(res: Response, path: string, status: number, field: string) {
  const json = (await res.json()) as Json;
  expect(res.status, JSON.stringify(json)).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  if (path.startsWith("/v2/")) {
    expect(typeof json.error).toBe("string");
    expect(json.error).toContain(field);
  } else {
    expect(json.error).toMatchObject({ field });
  }
  if (status === 401) expect(res.headers.get("WWW-Authenticate")).toMatch(/^Bearer realm="sluice"/);
}

let infer: string;
let feedbackOnly: string;
let otherModel: string;
let revoked: string;

beforeAll(async () => {
  expect((await createModel("authm")).status).toBe(201);
  expect((await registerVariant("authm", { seed: 1 })).res.status).toBe(201);
  expect((await registerVariant("authm", { seed: 2 })).res.status).toBe(201);
  expect((await api("/v1/models/authm/variants/1", jsonInit("PATCH", { status: "active" }))).status).toBe(
    200,
  );
  infer = (await mintKey({ scopes: ["infer", "feedback"] })).key;
  feedbackOnly = (await mintKey({ scopes: ["feedback"] })).key;
  otherModel = (await mintKey({ scopes: ["admin"], models: ["elsewhere"] })).key;
  const r = await mintKey({ scopes: ["admin"] });
  revoked = r.key;
  expect((await api(`/v1/keys/${r.id}`, { method: "DELETE", headers: admin })).status).toBe(200);
});

describe("the auth matrix: every protected route x credential", () => {
  it("covers every route the app protects", () => {
    expect(routes.length).toBe(API_KEY_ROUTES.length);
  });

  for (const r of routes) {
    const scope = r.path === "/v1/feedback" ? "feedback" : "infer";
    it(`${r.path}: 401 / 403 / ${r.ok}`, async () => {
      await expectDenied(await call(r.path, {}, r.body), r.path, 401, "Authorization");
      for (const bad of ["Basic abc", "Bearer", "Bearer a b", `Bearer ${"k".repeat(MAX_CREDENTIAL_CHARS)}`]) {
        await expectDenied(await call(r.path, { Authorization: bad }, r.body), r.path, 401, "Authorization");
      }
      await expectDenied(
        await call(r.path, { "x-api-key": "x".repeat(MAX_CREDENTIAL_CHARS + 1) }, r.body),
        r.path,
        401,
        "x-api-key",
      );
      // the admin token is not an API key; a well-formed but unknown key is refused like a revoked one
      await expectDenied(await call(r.path, admin, r.body), r.path, 401, "Authorization");
      const unknown = `sk_sluice_${"A".repeat(43)}`;
      await expectDenied(await call(r.path, { "x-api-key": unknown }, r.body), r.path, 401, "x-api-key");
      await expectDenied(
        await call(r.path, { Authorization: `Bearer ${revoked}` }, r.body),
        r.path,
        401,
        "Authorization",
      );
      await expectDenied(
        await call(r.path, { Authorization: `Bearer ${infer}`, "x-api-key": feedbackOnly }, r.body),
        r.path,
        401,
        "x-api-key",
      );
      // valid keys without the scope, or limited to another model
      const noScope = scope === "infer" ? feedbackOnly : (await mintKey({ scopes: ["infer"] })).key;
      await expectDenied(await call(r.path, { "x-api-key": noScope }, r.body), r.path, 403, "scope");
      if (r.path !== "/v1/feedback") {
        await expectDenied(await call(r.path, { "x-api-key": otherModel }, r.body), r.path, 403, "model");
      }
      // the right key, either header: past access control (the route's own answer)
      const both: Record<string, string>[] = [{ Authorization: `Bearer ${infer}` }, { "x-api-key": infer }];
      for (const headers of both) {
        const ok = await call(r.path, headers, r.body);
        expect(ok.status, await ok.clone().text()).toBe(r.ok);
        await ok.arrayBuffer();
      }
    });
  }

  it("limits feedback to the key's models too (the model is the experiment's)", async () => {
    const exp = await api(
      "/v1/experiments",
      jsonInit("POST", {
        model: "authm",
        name: "auth",
        unit: "x-sluice-user",
        primaryMetric: "accuracy",
        guardrails: { maxErrorRate: 0.05 },
        alpha: 0.05,
        design: { kind: "fixed", plannedUnits: 200 },
        arms: [
          { version: 1, weight: 1 },
          { version: 2, weight: 1 },
        ],
      }),
    );
    expect(exp.status, await exp.clone().text()).toBe(201);
    const { experiment } = (await exp.json()) as { experiment: { id: number } };
    const body = { requestId: mintRequestId(experiment.id), label: "nope-label" };
    await expectDenied(await call("/v1/feedback", { "x-api-key": otherModel }, body), "/v1", 403, "model");
    const allowed = await call("/v1/feedback", { "x-api-key": infer }, body);
    expect(allowed.status).toBe(422); // past auth: the label is checked against the model's
    await allowed.arrayBuffer();
  });

  it("leaves registry reads, metadata and health open, and registry writes on the admin token", async () => {
    for (const path of ["/v2/health/live", "/v2/health/ready", "/v2/models/authm", "/v1/models/authm"]) {
      const res = await SELF.fetch(`http://gateway${path}`);
      expect(res.status, path).toBe(200);
      await res.arrayBuffer();
    }
    const write = await api("/v1/keys", jsonInit("POST", {}, { Authorization: `Bearer ${infer}` }));
    expect(write.status).toBe(401);
    await write.arrayBuffer();
  });
});

describe("revocation", () => {
  it("takes effect at once in the isolate that revoked the key", async () => {
    const { key, id } = await mintKey();
    const path = "/v1/models/authm/route";
    expect((await call(path, { "x-api-key": key })).status).toBe(200);
    expect((await api(`/v1/keys/${id}`, { method: "DELETE", headers: admin })).status).toBe(200);
    await expectDenied(await call(path, { "x-api-key": key }), path, 401, "x-api-key");
  });

  it(`takes effect within API_KEY_CACHE_TTL_MS (${API_KEY_CACHE_TTL_MS} ms) even if the generation poll missed it`, async () => {
    // The generation counter makes the bound REGISTRY_POLL_MS (registry-generation.test.ts); the TTL is the
    // backstop. Here the poll never reads again (a one-hour interval) and the revocation goes straight to D1.
    let now = 1_000_000;
    const cache = new ApiKeyCache(API_KEY_CACHE_TTL_MS, 10, () => now);
    const generation = new RegistryGeneration(new RegistrySignal(), () => now);
    const app = createApp({ apiKeys: cache, generation });
    const vars = { ...env, REGISTRY_POLL_MS: "3600000" };
    const { key, id } = await mintKey();
    const route = () =>
      app.request("http://gateway/v1/models/authm/route", { headers: { "x-api-key": key } }, vars);
    expect((await route()).status).toBe(200);
    // another isolate revokes it: straight in D1, this isolate's cache is not told
    await revokeApiKey(registryDb(env.DB), id);
    now += API_KEY_CACHE_TTL_MS - 1;
    expect((await route()).status).toBe(200); // still within the bound
    now += 1;
    expect((await route()).status).toBe(401); // the bound has passed: asked D1 again
    expect(cache.queries).toBe(2);
    expect(generation.reads).toBe(1);
  });

  it("is seen before the TTL by the background re-check a busy isolate makes at 0.8 x TTL", async () => {
    // No poll reads again (a one-hour interval) and the revocation goes straight to D1, as from another isolate.
    let now = 1_000_000;
    const cache = new ApiKeyCache(API_KEY_CACHE_TTL_MS, 10, () => now);
    const generation = new RegistryGeneration(new RegistrySignal(), () => now);
    const app = createApp({ apiKeys: cache, generation });
    const vars = { ...env, REGISTRY_POLL_MS: "3600000" };
    const { key, id } = await mintKey();
    const route = async () => {
      const ctx = createExecutionContext(); // a waitUntil, as in the deployed Worker
      const res = await app.request(
        "http://gateway/v1/models/authm/route",
        { headers: { "x-api-key": key } },
        vars,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    expect((await route()).status).toBe(200);
    await revokeApiKey(registryDb(env.DB), id);
    now += API_KEY_CACHE_TTL_MS * 0.8 - 1;
    expect((await route()).status).toBe(200);
    expect(cache.refreshes).toBe(0);
    now += 1;
    // answered from the cache (no wait for D1); the re-check in its waitUntil sees the revocation
    expect((await route()).status).toBe(200);
    expect(cache.refreshes).toBe(1);
    expect((await route()).status).toBe(401); // still before the TTL
    expect(cache.queries).toBe(3);
  });

  it("keeps at most maxEntries keys, and caches no unknown key", async () => {
    const cache = new ApiKeyCache(API_KEY_CACHE_TTL_MS, 2);
    const app = createApp({ apiKeys: cache });
    const keys = await Promise.all([mintKey(), mintKey(), mintKey()]);
    for (const { key } of keys) {
      const res = await app.request(
        "http://gateway/v1/models/authm/route",
        { headers: { "x-api-key": key } },
        env,
      );
      expect(res.status).toBe(200);
    }
    expect(cache.size).toBe(2);
    for (let i = 0; i < 20; i++) {
      const made = `sk_sluice_${String(i).padStart(43, "B")}`;
      const res = await app.request(
        "http://gateway/v1/models/authm/route",
        { headers: { "x-api-key": made } },
        env,
      );
      expect(res.status).toBe(401);
    }
    expect(cache.size).toBe(2);
  });
});

describe("AUTH and the rate limit", () => {
  const route = (vars: Record<string, unknown>, headers: Record<string, string> = {}) =>
    createApp().request("http://gateway/v1/models/authm/route", { headers }, { ...env, ...vars });

  it("AUTH=off lets keyless requests through only when set explicitly; other values are refused", async () => {
    const off = await route({ AUTH: "off" });
    expect(off.status).toBe(200);
    expect(off.headers.get("x-sluice-auth")).toBe("off");
    expect((await route({ AUTH: "on" })).status).toBe(401);
    expect((await route({})).status).toBe(401); // the default
    expect((await route({ AUTH: "" })).status).toBe(401);
    for (const value of ["false", "OFF", "0", "no"]) {
      const res = await route({ AUTH: value });
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: { code: "misconfigured", field: "AUTH" } });
    }
    // the Worker as configured in wrangler.toml enforces
    expect((await SELF.fetch("http://gateway/v1/models/authm/route")).status).toBe(401);
  });

  it("answers 429 once a key exceeds the rate-limiting binding's limit, per key", async () => {
    expect(env.KEY_RATE_LIMIT).toBeDefined(); // the wrangler.toml binding exists under miniflare
    const tight = { KEY_RATE_LIMIT: env.TEST_TIGHT_RATE_LIMIT }; // 2 per 60 s
    const [a, b] = await Promise.all([mintKey(), mintKey()]);
    expect((await route(tight, { "x-api-key": a.key })).status).toBe(200);
    expect((await route(tight, { "x-api-key": a.key })).status).toBe(200);
    const limited = await route(tight, { "x-api-key": a.key });
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ error: { code: "rate_limited" } });
    expect((await route(tight, { "x-api-key": b.key })).status).toBe(200); // another key, its own budget
  });
});

describe("keys", () => {
  it("mints keys with scopes and models, and names a bad field", async () => {
    const res = await api("/v1/keys", jsonInit("POST", { scopes: ["feedback"], models: ["authm"] }));
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ scopes: ["feedback"], models: ["authm"] });
    const bad = await api("/v1/keys", jsonInit("POST", { models: ["NOT OK"] }));
    expect(bad.status).toBe(422);
    expect(await bad.json()).toMatchObject({ error: { field: "models.0" } });
  });
});

describe("dashboard sign-in", () => {
  const signIn = (headers: Record<string, string>, token = "test-admin-token") =>
    SELF.fetch("http://gateway/dashboard", {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams({ token }).toString(),
    });

  it("sets the HttpOnly SameSite=Strict cookie from a same-origin form POST", async () => {
    const res = await signIn({ origin: "http://gateway" });
    expect(res.status).toBe(303);
    expect(res.headers.get("set-cookie")).toMatch(/HttpOnly/);
    expect(res.headers.get("set-cookie")).toMatch(/SameSite=Strict/);
    expect(res.headers.get("set-cookie")).not.toContain("test-admin-token");
    expect((await signIn({ "sec-fetch-site": "same-origin" })).status).toBe(303);
    expect((await signIn({ origin: "http://gateway" }, "wrong")).status).toBe(401);
  });

  it("refuses cross-site and origin-less form POSTs (CSRF)", async () => {
    const attempts: Record<string, string>[] = [
      { origin: "https://evil.example" },
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site", origin: "http://other.gateway" },
      {},
    ];
    for (const headers of attempts) {
      const res = await signIn(headers);
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers.get("set-cookie")).toBeNull();
      await res.arrayBuffer();
    }
  });
});
