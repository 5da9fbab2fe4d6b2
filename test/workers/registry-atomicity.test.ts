/**
 * A registration is all or nothing: when any step after the R2 puts fails, neither a D1 row nor an R2 object is
 * left behind; concurrent registrations get distinct versions. Failures are forced through the registry's
 * test hook on an app that uses the same real local D1 and R2 bindings as the Worker.
 */
import { env, SELF } from "cloudflare:test";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { Env } from "../../src/gateway/env";
import { createRegistryRoutes, type RegistryOptions } from "../../src/registry/routes";
import { createModel, type Fetcher, makeVariantFiles, sha256Hex, uploadVariant } from "./helpers";

function registryWith(options: RegistryOptions): Fetcher {
  const app = new Hono<{ Bindings: Env }>().route("/", createRegistryRoutes(options));
  return { fetch: async (req) => app.fetch(req, env) };
}

async function variantRows(model: string): Promise<number> {
  const row = await env.DB.prepare(
    "SELECT count(*) AS n FROM variants v JOIN models m ON m.id = v.model_id WHERE m.name = ?",
  )
    .bind(model)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

describe("atomic registration", () => {
  it("a failure between the R2 puts and the D1 insert leaves no object and no row", async () => {
    await createModel("atomic-throw");
    const seen: string[] = [];
    const failing = registryWith({
      hooks: {
        afterArtifactsStored: async (keys) => {
          for (const key of keys) if (await env.ARTIFACTS.head(key)) seen.push(key);
          throw new Error("injected failure after upload");
        },
      },
    });
    const files = await makeVariantFiles("atomic-throw", { seed: 301, vocab: 20, withTokenizer: true });
    const res = await uploadVariant("atomic-throw", files, failing);
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: { code: "registration_failed" } });

    expect(seen).toHaveLength(2); // both objects really were in R2 when the failure hit...
    for (const key of seen) expect(await env.ARTIFACTS.head(key)).toBeNull(); // ...and are gone now
    expect(await variantRows("atomic-throw")).toBe(0);

    // Nothing half-done blocks the next attempt, and no version number was consumed.
    const ok = await uploadVariant("atomic-throw", files);
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as { variant: { version: number } }).variant.version).toBe(1);
    for (const key of seen) expect(await env.ARTIFACTS.head(key)).not.toBeNull();
  });

  it("a D1 insert that really fails (its model vanished mid-upload) leaves no object behind", async () => {
    await createModel("atomic-d1");
    const files = await makeVariantFiles("atomic-d1", { seed: 302 });
    const key = `artifacts/sha256/${files.manifest.artifact.sha256}`;
    const failing = registryWith({
      hooks: {
        // Deleting the model makes the variant INSERT violate NOT NULL (no version) inside D1 itself.
        afterArtifactsStored: async () => {
          await env.DB.prepare("DELETE FROM models WHERE name = ?").bind("atomic-d1").run();
        },
      },
    });
    expect((await uploadVariant("atomic-d1", files, failing)).status).toBe(500);
    expect(await env.ARTIFACTS.head(key)).toBeNull();
    const orphans = await env.DB.prepare(
      "SELECT count(*) AS n FROM variants WHERE model_id NOT IN (SELECT id FROM models)",
    ).first<{ n: number }>();
    expect(orphans?.n).toBe(0);
  });

  it("a failed registration keeps an object that another variant still references", async () => {
    await createModel("keep-a");
    await createModel("keep-b");
    const files = await makeVariantFiles("keep-a", { seed: 303 });
    expect((await uploadVariant("keep-a", files)).status).toBe(201);
    const failing = registryWith({
      hooks: {
        afterArtifactsStored: () => {
          throw new Error("injected");
        },
      },
    });
    const manifest = { ...files.manifest, model: { name: "keep-b", task: "keep-b" } };
    expect((await uploadVariant("keep-b", { ...files, manifest }, failing)).status).toBe(500);
    const obj = await env.ARTIFACTS.get(`artifacts/sha256/${files.manifest.artifact.sha256}`);
    expect(await sha256Hex(new Uint8Array(await obj!.arrayBuffer()))).toBe(files.manifest.artifact.sha256);
    expect(await variantRows("keep-b")).toBe(0);
  });

  it("uploads over the size limit are refused with 413 before anything is stored", async () => {
    await createModel("too-big");
    const files = await makeVariantFiles("too-big", { seed: 304 });
    const small = registryWith({ maxUploadBytes: 512 });
    const res = await uploadVariant("too-big", files, small);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { code: "payload_too_large", field: "body" } });
    expect(await env.ARTIFACTS.head(`artifacts/sha256/${files.manifest.artifact.sha256}`)).toBeNull();
    expect((await uploadVariant("too-big", files, registryWith({ maxUploadBytes: 1 << 20 }))).status).toBe(
      201,
    );
  });

  it("a streamed upload without Content-Length is cut off at the limit too", async () => {
    const chunk = new Uint8Array(256).fill(45);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 8) return controller.close();
        sent++;
        controller.enqueue(chunk);
      },
    });
    const res = await registryWith({ maxUploadBytes: 512 }).fetch(
      new Request("http://gateway/v1/models/too-big/variants", {
        method: "POST",
        headers: {
          Authorization: "Bearer test-admin-token",
          "Content-Type": "multipart/form-data; boundary=x",
        },
        body,
      }),
    );
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(8); // stopped reading once over the limit
  });

  it("refuses writes with 503 when the Worker has no ADMIN_TOKEN configured", async () => {
    const app = new Hono<{ Bindings: Env }>().route("/", createRegistryRoutes());
    const res = await app.fetch(
      new Request("http://gateway/v1/tasks/x/sla", {
        method: "PUT",
        headers: { Authorization: "Bearer x", "Content-Type": "application/json" },
        body: JSON.stringify({ metric: "accuracy", min: 0.5 }),
      }),
      { ...env, ADMIN_TOKEN: "" },
    );
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: "admin_disabled" } });
  });
});

describe("concurrent registration", () => {
  it("parallel registrations of different artifacts get distinct consecutive versions", async () => {
    await createModel("parallel");
    const all = await Promise.all(
      Array.from({ length: 8 }, async (_, i) =>
        uploadVariant("parallel", await makeVariantFiles("parallel", { seed: 400 + i })),
      ),
    );
    expect(all.map((r) => r.status)).toEqual(Array(8).fill(201));
    const versions = await Promise.all(
      all.map(async (r) => ((await r.json()) as { variant: { version: number } }).variant.version),
    );
    expect([...versions].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await variantRows("parallel")).toBe(8);
  });

  it("parallel uploads of the same artifact create one variant; the rest get it back", async () => {
    await createModel("parallel-same");
    const files = await makeVariantFiles("parallel-same", { seed: 450 });
    const all = await Promise.all(
      Array.from({ length: 5 }, () => uploadVariant("parallel-same", files, SELF)),
    );
    const bodies = await Promise.all(
      all.map(async (r) => (await r.json()) as { variant: { version: number } }),
    );
    expect(all.filter((r) => r.status === 201)).toHaveLength(1);
    expect(all.filter((r) => r.status === 200)).toHaveLength(4);
    expect(new Set(bodies.map((b) => b.variant.version))).toEqual(new Set([1]));
    expect(await variantRows("parallel-same")).toBe(1);
    expect(await env.ARTIFACTS.head(`artifacts/sha256/${files.manifest.artifact.sha256}`)).not.toBeNull();
  });
});
