// Invalidation across isolates, in workerd against the real local D1: two apps, each with its own signal,
// generation watcher, clock and caches (two isolates), share one D1. A write through one is seen by the other
// once its poll interval has passed, not after the caches' TTLs; a key revoked through one stops working in the
// other within the same bound. The watchers' clocks are fake, so the test does not sleep; the caches' own TTLs
// (catalog 5 s, keys 10 s) run on the real clock and do not expire during the test. Each request gets its own
// ExecutionContext, and the helper waits for its waitUntil work (a background generation read) to land.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { ApiKeyCache } from "../../src/registry/auth";
import { RegistryGeneration } from "../../src/registry/generation";
import { RegistrySignal } from "../../src/registry/invalidation";
import { readGeneration, registryDb } from "../../src/registry/store";
import { createApp } from "../../src/worker/app";
import { admin, api, createModel, jsonInit, mintKey, registerVariant } from "./helpers";

const POLL_MS = 1000;

/** One simulated isolate: an app with its own signal, watcher (fake clock) and key cache. */
function isolate() {
  const clock = { now: 5_000_000 };
  const generation = new RegistryGeneration(new RegistrySignal(), () => clock.now);
  const keys = new ApiKeyCache();
  const app = createApp({ generation, apiKeys: keys });
  const vars = { ...env, REGISTRY_POLL_MS: String(POLL_MS) };
  const fetch = async (request: Request) => {
    const ctx = createExecutionContext();
    const res = await app.fetch(request, vars, ctx);
    await waitOnExecutionContext(ctx);
    return res;
  };
  return { clock, generation, keys, via: { fetch } };
}

type Isolate = ReturnType<typeof isolate>;

let key: string;

async function chosen(at: Isolate, credential = key): Promise<number | null> {
  const res = await api("/v1/models/genm/route", { headers: { "x-api-key": credential } }, at.via);
  expect(res.status).toBe(200);
  return ((await res.json()) as { chosen: number | null }).chosen;
}

function activate(at: Isolate, version: number, status: "active" | "retired" | "staged") {
  return api(`/v1/models/genm/variants/${version}`, jsonInit("PATCH", { status }), at.via);
}

beforeAll(async () => {
  expect((await createModel("genm")).status).toBe(201);
  expect((await registerVariant("genm", { seed: 1 })).res.status).toBe(201);
  expect((await registerVariant("genm", { seed: 2 })).res.status).toBe(201);
  expect((await api("/v1/models/genm/variants/1", jsonInit("PATCH", { status: "active" }))).status).toBe(200);
  key = (await mintKey({ scopes: ["infer"] })).key;
});

describe("the registry generation across isolates", () => {
  it("a write through one isolate drops the other's cached variants once its poll interval passed (at most 2x)", async () => {
    const a = isolate();
    const b = isolate();
    expect(await chosen(a)).toBe(1);
    expect(await chosen(b)).toBe(1); // b's catalog now holds genm's variants
    const readsBefore = b.generation.reads;

    // Through a: v2 active, v1 retired. a sees it at once (its own signal).
    expect((await activate(a, 2, "active")).status).toBe(200);
    expect((await activate(a, 1, "retired")).status).toBe(200);
    expect(await chosen(a)).toBe(2);

    // b within the poll interval: still the cached list, and no generation read.
    expect(await chosen(b)).toBe(1);
    b.clock.now += POLL_MS - 1;
    expect(await chosen(b)).toBe(1);
    expect(b.generation.reads).toBe(readsBefore);

    // The latest read is POLL_MS old: this request starts a read in the background and is not held up by it;
    // once it landed, b has dropped its caches and serves the new list.
    b.clock.now += 1;
    expect(await chosen(b)).not.toBeNull();
    expect(b.generation.reads).toBe(readsBefore + 1);
    expect(await chosen(b)).toBe(2);
    expect(b.generation.reads).toBe(readsBefore + 1);

    // An idle isolate: the latest read is 2 * POLL_MS old, so the request waits for its own read and is
    // answered from the new state at once (server-timing shows the read).
    expect((await activate(a, 1, "active")).status).toBe(200);
    expect((await activate(a, 2, "staged")).status).toBe(200);
    b.clock.now += 2 * POLL_MS;
    const res = await api("/v1/models/genm/route", { headers: { "x-api-key": key } }, b.via);
    expect(((await res.json()) as { chosen: number }).chosen).toBe(1);
    expect(res.headers.get("server-timing")).toMatch(/generation;dur=/);
    expect(b.generation.reads).toBe(readsBefore + 2);
  });

  it("a key revoked through one isolate stops working in the other once its poll interval passed", async () => {
    const a = isolate();
    const b = isolate();
    const minted = await mintKey({ scopes: ["infer"] }, a.via);
    expect(await chosen(b, minted.key)).toBe(1); // b has verified (and cached) the key
    expect((await api(`/v1/keys/${minted.id}`, { method: "DELETE", headers: admin }, a.via)).status).toBe(
      200,
    );
    const denied = () =>
      api("/v1/models/genm/route", { headers: { "x-api-key": minted.key } }, b.via).then((r) => r.status);
    // a: at once
    expect((await api("/v1/models/genm/route", { headers: { "x-api-key": minted.key } }, a.via)).status).toBe(
      401,
    );
    b.clock.now += POLL_MS - 1;
    expect(await denied()).toBe(200); // within the interval, b still trusts its cached verification
    b.clock.now += 1;
    await denied(); // starts the background read
    expect(await denied()).toBe(401);
  });

  it("every registry write bumps the generation in its own transaction; a refused write does not", async () => {
    const db = registryDb(env.DB);
    const a = isolate();
    const writes: [string, () => Promise<Response>, number][] = [
      ["create model", () => createModel("genw", {}, a.via), 201],
      ["upload variant", async () => (await registerVariant("genw", { seed: 1 }, a.via)).res, 201],
      [
        "patch variant",
        () => api("/v1/models/genw/variants/1", jsonInit("PATCH", { status: "active" }), a.via),
        200,
      ],
      ["put alias", () => api("/v1/models/genw/aliases/prod", jsonInit("PUT", { version: 1 }), a.via), 200],
      [
        "delete alias",
        () => api("/v1/models/genw/aliases/prod", { method: "DELETE", headers: admin }, a.via),
        200,
      ],
      [
        "put SLA",
        () => api("/v1/tasks/genw/sla", jsonInit("PUT", { metric: "accuracy", min: 0.5 }), a.via),
        200,
      ],
      [
        "retire variant",
        () => api("/v1/models/genw/variants/1", jsonInit("PATCH", { status: "retired" }), a.via),
        200,
      ],
      [
        "delete variant",
        () => api("/v1/models/genw/variants/1", { method: "DELETE", headers: admin }, a.via),
        200,
      ],
    ];
    for (const [what, write, status] of writes) {
      const before = await readGeneration(db);
      const res = await write();
      expect(res.status, `${what}: ${res.bodyUsed ? "" : await res.text()}`).toBe(status);
      expect(await readGeneration(db), what).toBe(before + 1);
    }
    // Refused writes: a conflicting model definition (409), a patch of a missing variant (404).
    const before = await readGeneration(db);
    const conflict = await api(
      "/v1/models",
      jsonInit("POST", { name: "genw", task: "other", labels: ["x"], io: { inputs: [], outputs: [] } }),
      a.via,
    );
    expect(conflict.status).toBeGreaterThanOrEqual(400);
    expect((await activate(a, 99, "active")).status).toBe(404);
    expect(await readGeneration(db)).toBe(before);
  });

  it("a failed generation read drops every cache and is retried by the next request", async () => {
    const b = isolate();
    expect(await chosen(b)).toBe(1);
    const reads = b.generation.reads;
    let dropped = 0;
    b.generation.signal.on(() => dropped++);
    const broken = {
      prepare: () => {
        throw new Error("D1 unavailable");
      },
    } as unknown as D1Database;
    b.clock.now += 2 * POLL_MS;
    const errors: unknown[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => errors.push(args);
    try {
      expect(await b.generation.check(broken, POLL_MS)).toBe("read");
    } finally {
      console.error = original;
    }
    expect(dropped).toBe(1);
    expect(errors.length).toBe(1);
    // the age is unchanged: the next request reads (and waits) again
    expect(await b.generation.check(env.DB, POLL_MS)).toBe("read");
    expect(await b.generation.check(env.DB, POLL_MS)).toBe("none");
    expect(b.generation.reads).toBe(reads + 2);
  });
});
