import { env } from "cloudflare:test";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { Env } from "../../src/gateway/env";
import { ApiKeyCache, apiKeyHash } from "../../src/registry/auth";
import { createRegistryRoutes } from "../../src/registry/routes";
import {
  admin,
  api,
  createModel,
  expectError,
  jsonInit,
  makeVariantFiles,
  rawInit,
  registerVariant,
  seedModel,
  withKey,
} from "./helpers";

describe("models", () => {
  it("creates, lists and gets a model; an identical create is 200, a different one 409", async () => {
    const { manifest } = await makeVariantFiles("sentiment", { labelNames: ["negative", "positive"] });
    const def = { name: "sentiment", task: "sentiment", labels: manifest.labels, io: manifest.io };
    const created = await api("/v1/models", jsonInit("POST", def));
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ model: { ...def, latestVersion: 0 } });

    expect((await api("/v1/models", jsonInit("POST", def))).status).toBe(200);
    await expectError(
      await api("/v1/models", jsonInit("POST", { ...def, labels: ["a", "b"] })),
      409,
      "model_exists",
      "name",
    );

    const list = (await (await api("/v1/models")).json()) as { models: { name: string }[] };
    expect(list.models.map((m) => m.name)).toContain("sentiment");
    const one = await api("/v1/models/sentiment");
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ model: def, aliases: [] });
    await expectError(await api("/v1/models/unknown"), 404, "not_found", "model");
    await expectError(await api("/v1/models/Not_Valid!"), 400, "bad_request", "model");
  });

  it("validates the body: 422 naming the field, 400 for bad JSON, 415 for another media type, 413 over 1 MB", async () => {
    const { manifest } = await makeVariantFiles("m");
    const def = { name: "valid-name", task: "t", labels: ["a"], io: manifest.io };
    await expectError(
      await api("/v1/models", jsonInit("POST", { ...def, name: "Upper Case" })),
      422,
      "invalid_body",
      "name",
    );
    await expectError(
      await api("/v1/models", jsonInit("POST", { ...def, labels: [] })),
      422,
      "invalid_body",
      "labels",
    );
    await expectError(
      await api("/v1/models", jsonInit("POST", { ...def, io: { inputs: [], outputs: manifest.io.outputs } })),
      422,
      "invalid_body",
      "io.inputs",
    );
    await expectError(
      await api("/v1/models", rawInit("POST", "{", "application/json")),
      400,
      "bad_request",
      "body",
    );
    await expectError(
      await api("/v1/models", rawInit("POST", "a,b", "text/csv")),
      415,
      "unsupported_media_type",
      "Content-Type",
    );
    const huge = JSON.stringify({ ...def, labels: Array.from({ length: 200_000 }, (_, i) => `label-${i}`) });
    await expectError(
      await api("/v1/models", rawInit("POST", huge, "application/json")),
      413,
      "payload_too_large",
      "body",
    );
    await expectError(
      await api("/v1/models", jsonInit("POST", def, {})),
      401,
      "unauthorized",
      "Authorization",
    );
    await expectError(
      await api("/v1/models", jsonInit("POST", def, { Authorization: "Basic abc" })),
      401,
      "unauthorized",
      "Authorization",
    );
    await expectError(
      await api("/v1/models", jsonInit("POST", def, { Authorization: "Bearer test-admin-token-but-longer" })),
      401,
      "unauthorized",
      "Authorization",
    );
    expect((await api("/v1/models/valid-name")).status).toBe(404);
  });
});

describe("task SLAs", () => {
  it("PUT then GET an SLA; PUT again replaces it", async () => {
    const put = await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy", min: 0.95 }));
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({
      sla: { task: "spam", metric: "accuracy", min: 0.95, strict: false },
    });
    await api(
      "/v1/tasks/spam/sla",
      jsonInit("PUT", { metric: "accuracy", min: 0.9, maxLatencyMs: 20, strict: true }),
    );
    const got = (await (await api("/v1/tasks/spam/sla")).json()) as { sla: Record<string, unknown> };
    expect(got.sla).toMatchObject({ task: "spam", min: 0.9, maxLatencyMs: 20, strict: true });
  });

  it("a margin SLA: defaults its confidence, needs min or margin, and confidence only with a margin", async () => {
    const put = await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy", margin: 0.02 }));
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({
      sla: { min: 0, margin: 0.02, confidence: 0.95, strict: false },
    });
    await expectError(
      await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy" })),
      422,
      "invalid_body",
      "min",
    );
    await expectError(
      await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy", min: 0.9, confidence: 0.9 })),
      422,
      "invalid_body",
      "confidence",
    );
    await expectError(
      await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy", margin: 0.02, confidence: 1 })),
      422,
      "invalid_body",
      "confidence",
    );
  });

  it("routing under a margin SLA reads each variant's per-example evidence and explains the paired test", async () => {
    const n = 400;
    const dense = Array.from({ length: n }, (_, i) => i % 10 !== 0);
    const close = dense.map((c, i) => c && i !== 1 && i !== 2); // 2 more mistakes than dense, no other change
    const unrelated = dense.map((_, i) => i % 10 !== 5 && i !== 7 && i !== 8); // same accuracy as `close`
    await seedModel("margin-m", [
      { task: "margin-t", correct: dense, p50Ms: 10 },
      { task: "margin-t", correct: close, p50Ms: 6 },
      { task: "margin-t", correct: unrelated, p50Ms: 5 },
    ]);
    for (const v of [1, 2, 3])
      await api(`/v1/models/margin-m/variants/${v}`, jsonInit("PATCH", { status: "active" }));
    await api("/v1/tasks/margin-t/sla", jsonInit("PUT", { metric: "accuracy", margin: 0.02 }));
    const route = (await (await api("/v1/models/margin-m/route", { headers: await withKey() })).json()) as {
      chosen: number;
      sla: { margin: number; confidence: number };
      candidates: {
        version: number;
        verdict: string;
        margin?: {
          paired: boolean;
          interval: [number, number];
          discordant: { variantOnly: number; bestOnly: number };
        };
      }[];
    };
    const by = Object.fromEntries(route.candidates.map((c) => [c.version, c]));
    expect(route.sla).toMatchObject({ margin: 0.02, confidence: 0.95 });
    expect(route.chosen).toBe(2);
    expect(by[2].margin).toMatchObject({ paired: true, discordant: { variantOnly: 0, bestOnly: 2 } });
    expect(by[3].verdict).toBe("below_margin");
    expect(by[3].margin!.discordant).toEqual({ variantOnly: 40, bestOnly: 42 });
  });

  it("two variants one example apart are statistically equal: the cheaper one serves under a margin, not by the point estimate", async () => {
    // The demo's case: 595 e-mails, the pruned variant gets exactly one more wrong than the dense one.
    const n = 595;
    const dense = Array.from({ length: n }, (_, i) => i % 25 !== 0);
    const pruned = dense.map((c, i) => c && i !== 1);
    await seedModel("one-apart-m", [
      { task: "one-apart-t", correct: dense, p50Ms: 10 },
      { task: "one-apart-t", correct: pruned, p50Ms: 6 },
    ]);
    for (const v of [1, 2])
      await api(`/v1/models/one-apart-m/variants/${v}`, jsonInit("PATCH", { status: "active" }));
    const route = async () =>
      (await (await api("/v1/models/one-apart-m/route", { headers: await withKey() })).json()) as {
        chosen: number;
        candidates: {
          version: number;
          accuracy: number;
          margin?: { interval: [number, number]; discordant: { variantOnly: number; bestOnly: number } };
        }[];
      };
    // A point-estimate floor of "best − 0": one example decides, and the dense variant serves.
    await api(
      "/v1/tasks/one-apart-t/sla",
      jsonInit("PUT", { metric: "accuracy", min: dense.filter(Boolean).length / n }),
    );
    expect((await route()).chosen).toBe(1);
    // A 1-point non-inferiority margin: the paired interval on (pruned − dense) holds 0, so they are equal and the
    // cheaper one serves.
    await api("/v1/tasks/one-apart-t/sla", jsonInit("PUT", { metric: "accuracy", margin: 0.01 }));
    const r = await route();
    const pruned2 = r.candidates.find((c) => c.version === 2)!;
    expect(r.candidates.find((c) => c.version === 1)!.accuracy - pruned2.accuracy).toBeCloseTo(1 / n, 10);
    expect(pruned2.margin!.discordant).toEqual({ variantOnly: 0, bestOnly: 1 });
    const [lo, hi] = pruned2.margin!.interval;
    expect(lo).toBeLessThan(0);
    expect(hi).toBeGreaterThan(0);
    expect(lo).toBeGreaterThan(-0.01);
    expect(r.chosen).toBe(2);
  });

  it("a registered variant's edge latency is stored, shown and reaches the route explanation", async () => {
    // onnxruntime-node ranks v2 (the int8 twin's shape) slowest; the edge runtime ranks it fastest.
    const seeded = await seedModel("edge-m", [
      { task: "edge-t", accuracy: 0.95, p50Ms: 20, edgeP50Ms: 24 },
      { task: "edge-t", accuracy: 0.95, p50Ms: 48.5, edgeP50Ms: 15, precision: "int8" },
    ]);
    expect(seeded.map((v) => [v.latencyP50Ms, v.edgeLatencyP50Ms])).toEqual([
      [20, 24],
      [48.5, 15],
    ]);
    for (const v of [1, 2])
      await api(`/v1/models/edge-m/variants/${v}`, jsonInit("PATCH", { status: "active" }));
    type Route = {
      chosen: number;
      reason: string;
      latency: { runtime: string; field: string; why: string; lacking?: number[] };
      candidates: { version: number; latencyP50Ms: number; edgeLatencyP50Ms: number | null }[];
    };
    const route = async () =>
      (await (await api("/v1/models/edge-m/route", { headers: await withKey() })).json()) as Route;
    const r = await route();
    expect(r.chosen).toBe(2);
    expect(r.latency).toMatchObject({ runtime: "edge", field: "edgeLatencyP50Ms" });
    expect(r.reason).toMatch(/lowest onnxruntime-web wasm p50 latency/);
    expect(r.candidates.map((c) => [c.version, c.edgeLatencyP50Ms])).toEqual([
      [1, 24],
      [2, 15],
    ]);
    const listed = (await (await api("/v1/models/edge-m/variants", { headers: admin })).json()) as {
      variants: { version: number; edgeLatencyP50Ms: number | null }[];
    };
    expect(listed.variants.map((v) => v.edgeLatencyP50Ms)).toEqual([24, 15]);

    // A third active variant without an edge figure: onnxruntime-node's figures decide, and the route says so.
    const legacy = await registerVariant("edge-m", { task: "edge-t", accuracy: 0.95, p50Ms: 30, seed: 3 });
    expect(legacy.body.variant.edgeLatencyP50Ms).toBeNull();
    await api("/v1/models/edge-m/variants/3", jsonInit("PATCH", { status: "active" }));
    const mixed = await route();
    expect(mixed.chosen).toBe(1);
    expect(mixed.latency).toMatchObject({ runtime: "node", lacking: [3] });
    expect(mixed.reason).toMatch(/v3 has no onnxruntime-web wasm figure/);
  });

  it("rejects bad SLAs and unknown tasks", async () => {
    await expectError(await api("/v1/tasks/none/sla"), 404, "not_found", "task");
    await expectError(
      await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy", min: 1.2 })),
      422,
      "invalid_body",
      "min",
    );
    await expectError(
      await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "f1", min: 0.9 })),
      422,
      "invalid_body",
      "metric",
    );
    await expectError(
      await api("/v1/tasks/spam/sla", jsonInit("PUT", { metric: "accuracy", min: 0.9 }, {})),
      401,
      "unauthorized",
      "Authorization",
    );
  });
});

describe("API keys", () => {
  it("mints a key shown once, stores only its hash, verifies it, and revokes it", async () => {
    const res = await api("/v1/keys", jsonInit("POST", { scopes: ["infer"] }));
    expect(res.status).toBe(201);
    const minted = (await res.json()) as { id: number; key: string; prefix: string; scopes: string[] };
    expect(minted.key).toMatch(/^sk_sluice_[A-Za-z0-9_-]{43}$/);
    expect(minted.key.startsWith(minted.prefix)).toBe(true);

    const rows = await env.DB.prepare("SELECT key_hash, prefix FROM api_keys WHERE id = ?")
      .bind(minted.id)
      .all();
    const stored = JSON.stringify(rows.results);
    expect(stored).not.toContain(minted.key);
    expect((rows.results[0] as { key_hash: string }).key_hash).toMatch(/^[0-9a-f]{64}$/);

    const verify = async (key: string) => new ApiKeyCache().lookup(env.DB, await apiKeyHash(key));
    expect(await verify(minted.key)).toEqual({ id: minted.id, scopes: ["infer"], models: null });
    expect(await verify(`${minted.key}x`)).toBeNull();

    const listed = (await (await api("/v1/keys", { headers: admin })).json()) as { keys: unknown[] };
    expect(JSON.stringify(listed)).not.toContain(minted.key);
    await expectError(await api("/v1/keys"), 401, "unauthorized", "Authorization");

    const revoked = await api(`/v1/keys/${minted.id}`, { method: "DELETE", headers: admin });
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { key: { revokedAt: string | null } }).key.revokedAt).toBeTruthy();
    expect(await verify(minted.key)).toBeNull();

    await expectError(
      await api("/v1/keys/99999", { method: "DELETE", headers: admin }),
      404,
      "not_found",
      "id",
    );
    await expectError(
      await api("/v1/keys/abc", { method: "DELETE", headers: admin }),
      400,
      "bad_request",
      "id",
    );
    await expectError(
      await api("/v1/keys", jsonInit("POST", { scopes: ["root"] })),
      422,
      "invalid_body",
      "scopes.0",
    );
    const defaults = await api("/v1/keys", { method: "POST", headers: admin });
    expect(((await defaults.json()) as { scopes: string[] }).scopes).toEqual(["infer"]);
  });
});

it("model creation through the helper matches what makeVariantFiles uploads", async () => {
  expect((await createModel("helper-check", { labelNames: ["x", "y", "z"] })).status).toBe(201);
  const got = (await (await api("/v1/models/helper-check")).json()) as { model: { labels: string[] } };
  expect(got.model.labels).toEqual(["x", "y", "z"]);
});

it("mounting the registry leaves other /v1 routes and their error handling alone", async () => {
  const app = new Hono<{ Bindings: Env }>();
  app.onError((err, c) => c.json({ error: `gateway: ${err.message}` }, 500));
  app.route("/", createRegistryRoutes());
  app.get("/v1/models/:model/classify", () => {
    throw new Error("boom");
  });
  const res = await app.fetch(new Request("http://gateway/v1/models/x/classify"), env);
  expect(await res.json()).toEqual({ error: "gateway: boom" });
});
