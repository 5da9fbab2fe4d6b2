import { env, SELF } from "cloudflare:test";
import { expect, it } from "vitest";
import { createApp } from "../../src/worker/app";

it("answers liveness inside workerd", async () => {
  const res = await SELF.fetch("http://gateway/v2/health/live");
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ live: true });
});

it("serves its OpenAPI 3.1 document and a self-contained reference page", async () => {
  const res = await SELF.fetch("http://gateway/openapi.json");
  expect(res.status).toBe(200);
  const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
  expect(doc.openapi).toBe("3.1.0");
  expect(Object.keys(doc.paths)).toEqual(
    expect.arrayContaining(["/v2/models/{model}/infer", "/v1/models", "/v1/experiments/{id}/start"]),
  );
  const page = await SELF.fetch("http://gateway/reference");
  expect(page.status).toBe(200);
  const text = await page.text();
  expect(text).toContain("POST /v1/models/{model}/classify");
  expect(text).not.toMatch(/<script\b/i); // nothing remote: the page works offline
});

it("answers a wrong method on a known path with 405, its Allow header and the path's JSON error shape", async () => {
  const oip = await SELF.fetch("http://gateway/v2/health/live", { method: "PUT" });
  expect(oip.status).toBe(405);
  expect(oip.headers.get("Allow")).toBe("GET, HEAD");
  const oipBody = (await oip.json()) as { error: unknown };
  expect(typeof oipBody.error).toBe("string"); // the Open Inference Protocol's own shape

  const registry = await SELF.fetch("http://gateway/v1/models", { method: "DELETE" });
  expect(registry.status).toBe(405);
  expect(registry.headers.get("Allow")?.split(", ")).toEqual(expect.arrayContaining(["GET", "POST"]));
  const body = (await registry.json()) as { error: { code: string; field?: string } };
  expect(body.error).toMatchObject({ code: "method_not_allowed", field: "method" });
});

it("answers an unknown path with a JSON 404, not text/plain", async () => {
  const res = await SELF.fetch("http://gateway/v1/no-such-thing");
  expect(res.status).toBe(404);
  expect(res.headers.get("Content-Type")).toContain("application/json");
  expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
});

it("gives every response of the deployed Worker an x-request-id, keeping a safe incoming one", async () => {
  const fresh = await SELF.fetch("http://gateway/v2/health/live");
  expect(fresh.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  const kept = await SELF.fetch("http://gateway/v1/no-such-thing", { headers: { "x-request-id": "edge-7" } });
  expect(kept.status).toBe(404);
  expect(kept.headers.get("x-request-id")).toBe("edge-7");
  const unsafe = await SELF.fetch("http://gateway/v1/models", { headers: { "x-request-id": "a b<c>" } });
  expect(unsafe.headers.get("x-request-id")).not.toBe("a b<c>");
});

it("answers every route with a 503 naming a var that does not parse, instead of a silent default", async () => {
  for (const [name, value, path] of [
    ["MAX_BATCH", "lots", "/v1/models"],
    ["MAX_UPLOAD_MB", "-1", "/v2/models/x/infer"],
  ]) {
    const res = await createApp().request(`http://gateway${path}`, {}, { ...env, [name]: value });
    expect(res.status, name).toBe(503);
    const body = (await res.json()) as { error: unknown };
    const message = typeof body.error === "string" ? body.error : (body.error as { message: string }).message;
    expect(message).toMatch(new RegExp(`^${name}: must be`));
    expect(res.headers.get("x-request-id")).toBeTruthy();
  }
});
