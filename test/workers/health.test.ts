import { SELF } from "cloudflare:test";
import { expect, it } from "vitest";

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
