// The Worker's HTTP plumbing on a real Hono app in Node: the one body reader (src/http/body.ts), request ids
// (src/http/request-id.ts) and the one error handler (src/http/errors.ts).
import { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { readFormBody, readJsonBody } from "../../src/http/body";
import { httpErrorHandler } from "../../src/http/errors";
import { requestId } from "../../src/http/request-id";
import { ConfigError } from "../../src/http/vars";
import { registryConfig } from "../../src/registry/config";
import { WorkerVars, workerConfig } from "../../src/worker/env";

const LIMIT = 32;

function app() {
  const a = new Hono();
  a.onError(httpErrorHandler);
  a.use("*", requestId);
  for (const path of ["/v1/echo", "/v2/echo"]) {
    a.post(path, async (c) => c.json({ got: await readJsonBody(c, { maxBytes: LIMIT }) }));
  }
  a.post("/v1/optional", async (c) => c.json({ got: await readJsonBody(c, { maxBytes: LIMIT, empty: {} }) }));
  a.post("/v1/form", async (c) => c.json({ token: (await readFormBody(c, LIMIT)).get("token") }));
  a.get("/v1/boom", () => {
    throw new Error("secret internal detail: D1 password=hunter2");
  });
  a.get("/v2/boom", () => {
    throw new TypeError("cannot read x of undefined");
  });
  a.get("/v1/ok", (c) => c.json({ id: c.get("requestId" as never) }));
  return a;
}

/** A body stream that sends `chunks` and declares no length (chunked transfer). */
function stream(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(enc.encode(chunks[i++]));
      else controller.close();
    },
  });
}

const post = (path: string, body: BodyInit | null, headers: Record<string, string> = {}) =>
  app().request(
    new Request(`http://w${path}`, { method: "POST", body, headers, duplex: "half" } as RequestInit),
  );

afterEach(() => vi.restoreAllMocks());

describe("the one JSON body reader", () => {
  it("parses a JSON body within the limit", async () => {
    const res = await post("/v1/echo", '{"a":1}', { "content-type": "application/json; charset=utf-8" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ got: { a: 1 } });
  });

  it("answers 413 for a declared Content-Length over the limit, before reading", async () => {
    const res = await post("/v1/echo", "x".repeat(LIMIT + 1), { "content-type": "application/json" });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({
      error: { code: "payload_too_large", message: `body: exceeds ${LIMIT} bytes`, field: "body" },
    });
  });

  it("answers 413 for a chunked body with no Content-Length once the bytes sent pass the limit", async () => {
    const chunks = Array.from({ length: 10 }, () => '{"pad":"xxxxxxxx"}');
    const res = await post("/v1/echo", stream(chunks), { "content-type": "application/json" });
    expect(res.status).toBe(413);
  });

  it("does not trust a Content-Length smaller than the bytes sent", async () => {
    const res = await post("/v1/echo", stream([`{"pad":"${"x".repeat(100)}"}`]), {
      "content-type": "application/json",
      "content-length": "10",
    });
    expect(res.status).toBe(413);
  });

  it("answers 415 naming Content-Type for another media type, and 400 naming body for bad JSON", async () => {
    const wrong = await post("/v1/echo", "a,b", { "content-type": "text/csv" });
    expect(wrong.status).toBe(415);
    expect(await wrong.json()).toMatchObject({
      error: { code: "unsupported_media_type", field: "Content-Type" },
    });
    const none = await post("/v1/echo", '{"a":1}');
    expect(none.status).toBe(415);
    const bad = await post("/v1/echo", "{a:", { "content-type": "application/json" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({
      error: { code: "bad_request", message: "body: is not valid JSON", field: "body" },
    });
  });

  it("answers OIP routes in their own shape", async () => {
    const bad = await post("/v2/echo", "{a:", { "content-type": "application/json" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "body: is not valid JSON" });
    const big = await post("/v2/echo", stream(["x".repeat(LIMIT), "y"]), {
      "content-type": "application/json",
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toEqual({ error: `body: exceeds ${LIMIT} bytes` });
  });

  it("reads an empty body as the route's empty value, or refuses it", async () => {
    expect(await (await post("/v1/optional", null)).json()).toEqual({ got: {} });
    expect(await (await post("/v1/optional", "", { "content-type": "text/plain" })).json()).toEqual({
      got: {},
    });
    const res = await post("/v1/echo", "", { "content-type": "application/json" });
    expect(res.status).toBe(400);
  });

  it("reads forms under the same byte cap", async () => {
    const type = { "content-type": "application/x-www-form-urlencoded" };
    expect(await (await post("/v1/form", "token=abc", type)).json()).toEqual({ token: "abc" });
    expect((await post("/v1/form", stream(["token=", "x".repeat(LIMIT)]), type)).status).toBe(413);
  });
});

describe("request ids and the one error handler", () => {
  it("keeps a safe incoming x-request-id and echoes it, on success and on errors", async () => {
    const id = "client-req_42.a:b";
    const ok = await app().request("/v1/ok", { headers: { "x-request-id": id } });
    expect(ok.headers.get("x-request-id")).toBe(id);
    expect(await ok.json()).toEqual({ id });
    const bad = await post("/v1/echo", "{a:", { "content-type": "application/json", "x-request-id": id });
    expect(bad.headers.get("x-request-id")).toBe(id);
  });

  it("replaces a missing, oversized or unsafe id with a fresh UUID", async () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    const seen = new Set<string>();
    for (const header of [undefined, "x".repeat(129), "has space", "a\u00e9", "<script>", "a/b", ""]) {
      const res = await app().request("/v1/ok", {
        headers: header === undefined ? {} : { "x-request-id": header },
      });
      const id = res.headers.get("x-request-id")!;
      expect(id, String(header)).toMatch(uuid);
      seen.add(id);
    }
    expect(seen.size).toBe(7);
    expect(
      (await app().request("/v1/ok", { headers: { "x-request-id": "x".repeat(128) } })).headers.get(
        "x-request-id",
      ),
    ).toBe("x".repeat(128));
  });

  it("answers an internal error with the request id and no internal message, and logs both", async () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await app().request("/v1/boom", { headers: { "x-request-id": "trace-1" } });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({
      error: { code: "internal", message: "internal error" },
      requestId: "trace-1",
    });
    expect(text).not.toMatch(/hunter2|secret/);
    expect(log).toHaveBeenCalledTimes(1);
    expect(String(log.mock.calls[0][0])).toContain("trace-1");
    expect(String(log.mock.calls[0][1])).toContain("hunter2");

    const oip = await app().request("/v2/boom");
    const body = (await oip.json()) as { error: string; requestId: string };
    expect(body.error).toBe("internal error");
    expect(body.requestId).toBe(oip.headers.get("x-request-id"));
  });
});

describe("the Worker's vars: one zod schema", () => {
  it("covers every var the parts read, with defaults for an empty environment", () => {
    expect(Object.keys(WorkerVars.shape).sort()).toEqual(
      [
        "ADMIN_TOKEN",
        "AUTH",
        "CATALOG_TTL_MS",
        "CLASSIFY_MAX_TOKENS",
        "MAX_BATCH",
        "LIVE_FEEDBACK_TTL_S",
        "LIVE_FEEDBACK_WINDOW_DAYS",
        "MAX_INFER_BODY_MB",
        "MAX_SEQUENCE",
        "MAX_UPLOAD_MB",
        "REGISTRY_POLL_MS",
        "SESSION_BUDGET_MB",
        "VARIANT_COOLDOWN_S",
      ].sort(),
    );
    const c = workerConfig({});
    expect(c.registry).toEqual({
      adminToken: undefined,
      auth: "on",
      maxUploadBytes: 100 * 1024 * 1024,
      registryPollMs: 1000,
    });
    expect(c.gateway.maxBatch).toBe(64);
    expect(
      registryConfig({ AUTH: "off", ADMIN_TOKEN: "t", MAX_UPLOAD_MB: "0.5", REGISTRY_POLL_MS: "0" }),
    ).toEqual({ adminToken: "t", auth: "off", maxUploadBytes: 512 * 1024, registryPollMs: 0 });
  });

  it("parses once per env object", () => {
    const env = { MAX_BATCH: "8" };
    expect(workerConfig(env).gateway).toBe(workerConfig(env).gateway);
  });

  it("names the bad variable", () => {
    for (const [name, value] of [
      ["AUTH", "yes"],
      ["MAX_UPLOAD_MB", "0"],
      ["MAX_UPLOAD_MB", "lots"],
      ["REGISTRY_POLL_MS", "0.5"],
      ["VARIANT_COOLDOWN_S", "-1"],
    ]) {
      expect(() => workerConfig({ [name]: value }), `${name}=${value}`).toThrow(ConfigError);
      try {
        workerConfig({ [name]: value });
      } catch (err) {
        expect((err as ConfigError).variable).toBe(name);
        expect((err as ConfigError).message).toMatch(new RegExp(`^${name}: must be`));
      }
    }
  });
});
