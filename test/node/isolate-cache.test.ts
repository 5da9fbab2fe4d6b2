// IsolateCache's refresh ahead: a hit past refreshAfterMs is answered from the cache and reloaded in the
// background (through the caller's defer), never served past ttlMs after its load was sent, not stored across an
// invalidation, and a reload whose value may not be kept drops the entry.
import { describe, expect, it } from "vitest";
import { IsolateCache } from "../../src/core/isolate-cache";

/** A controllable clock, a loader whose answers the test settles by hand, and a defer that collects work. */
function setup(options: { keep?: (v: string) => boolean } = {}) {
  let now = 1_000;
  const cache = new IsolateCache<string>({ ttlMs: 1_000, maxEntries: 10, now: () => now, ...options });
  const pending: { resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  const load = () =>
    new Promise<string>((resolve, reject) => {
      pending.push({ resolve, reject });
    });
  const deferred: Promise<unknown>[] = [];
  const defer = (work: Promise<unknown>) => {
    deferred.push(work);
  };
  return {
    cache,
    load,
    defer,
    pending,
    deferred,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

/** Fills `key` with `value` through a foreground load. */
async function fill(t: ReturnType<typeof setup>, key: string, value: string) {
  const got = t.cache.get(key, t.load, t.defer);
  t.pending.at(-1)?.resolve(value);
  expect(await got).toBe(value);
}

describe("IsolateCache refresh ahead", () => {
  it("answers from the cache and reloads in the background once a value is refreshAfterMs (0.8 x TTL) old", async () => {
    const t = setup();
    await fill(t, "k", "v1");
    t.advance(799);
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v1");
    expect(t.cache.refreshes).toBe(0);
    t.advance(1);
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v1"); // not waiting for the reload
    expect(t.cache.refreshes).toBe(1);
    expect(t.deferred).toHaveLength(1);
    // one background reload at a time per key
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v1");
    expect(t.cache.refreshes).toBe(1);
    t.pending.at(-1)?.resolve("v2");
    await Promise.all(t.deferred);
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v2");
    expect(t.cache.loads).toBe(2);
    // the reloaded value's TTL counts from its own load: valid until 1800 + 1000
    t.advance(999);
    expect(await t.cache.get("k", t.load)).toBe("v2");
    expect(t.cache.loads).toBe(2);
  });

  it("never reloads in the background without a defer", async () => {
    const t = setup();
    await fill(t, "k", "v1");
    t.advance(900);
    expect(await t.cache.get("k", t.load)).toBe("v1");
    expect(t.cache.refreshes).toBe(0);
    expect(t.cache.loads).toBe(1);
  });

  it("never serves a value past the TTL, even while its background reload has not landed", async () => {
    const t = setup();
    await fill(t, "k", "v1");
    t.advance(800);
    await t.cache.get("k", t.load, t.defer); // starts the reload, which never lands
    t.advance(200); // TTL reached
    const got = t.cache.get("k", t.load, t.defer);
    expect(t.pending).toHaveLength(3); // a foreground load, not the cached value
    t.pending[2].resolve("v3");
    expect(await got).toBe("v3");
  });

  it("does not store a background reload that was in flight across an invalidation", async () => {
    const t = setup();
    await fill(t, "k", "v1");
    t.advance(800);
    await t.cache.get("k", t.load, t.defer);
    t.cache.invalidate();
    t.pending.at(-1)?.resolve("stale");
    await Promise.all(t.deferred);
    expect(t.cache.size).toBe(0);
    const got = t.cache.get("k", t.load, t.defer);
    t.pending.at(-1)?.resolve("fresh");
    expect(await got).toBe("fresh");
  });

  it("drops the entry at once when the background reload's value may not be kept (a revoked key)", async () => {
    const t = setup({ keep: (v) => v !== "revoked" });
    await fill(t, "k", "v1");
    t.advance(800);
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v1");
    t.pending.at(-1)?.resolve("revoked");
    await Promise.all(t.deferred);
    expect(t.cache.size).toBe(0);
    const got = t.cache.get("k", t.load, t.defer); // before the TTL: asked again, not the old value
    t.pending.at(-1)?.resolve("revoked");
    expect(await got).toBe("revoked");
    expect(t.cache.loads).toBe(3);
  });

  it("keeps the entry after a failed background reload, without a retry on every request", async () => {
    const t = setup();
    await fill(t, "k", "v1");
    t.advance(800);
    await t.cache.get("k", t.load, t.defer);
    t.pending.at(-1)?.reject(new Error("D1 unavailable"));
    await Promise.all(t.deferred); // the failure is logged, not thrown at anyone
    t.advance(100);
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v1");
    expect(t.cache.refreshes).toBe(1);
    t.advance(99); // TTL is 1000 from the first load: 999 now
    expect(await t.cache.get("k", t.load, t.defer)).toBe("v1");
    expect(t.cache.refreshes).toBe(1);
  });

  it("does not let an older load that lands late replace a newer value", async () => {
    const t = setup();
    await fill(t, "k", "v1");
    t.advance(800);
    await t.cache.get("k", t.load, t.defer); // background reload A, sent at 1800
    const slow = t.pending.at(-1);
    t.advance(200); // TTL passed: foreground load B, sent at 2000
    const got = t.cache.get("k", t.load, t.defer);
    t.pending.at(-1)?.resolve("newer");
    expect(await got).toBe("newer");
    slow?.resolve("older");
    await Promise.all(t.deferred);
    expect(await t.cache.get("k", t.load, t.defer)).toBe("newer");
  });
});
