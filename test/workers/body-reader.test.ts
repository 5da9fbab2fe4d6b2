// The one body reader (src/http/body.ts) inside workerd, where a body that declares its length is read in one
// native call and one without is read chunk by chunk: both keep the byte cap and its 413.
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { readJsonBody } from "../../src/http/body";
import { httpErrorHandler } from "../../src/http/errors";

const LIMIT = 64;

function app() {
  const a = new Hono();
  a.onError(httpErrorHandler);
  a.post("/v1/echo", async (c) => {
    let receivedMs = -1;
    const got = await readJsonBody(c, { maxBytes: LIMIT, received: (ms) => (receivedMs = ms) });
    return c.json({ got, timed: receivedMs >= 0 });
  });
  return a;
}

const enc = new TextEncoder();
function stream(chunks: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(enc.encode(chunks[i++]));
      else controller.close();
    },
  });
}

const post = (body: BodyInit, headers: Record<string, string>) =>
  app().request(new Request("http://w/v1/echo", { method: "POST", body, headers }));

describe("the body reader in workerd", () => {
  it("reads a body that declares its length, and says how long reading took", async () => {
    const text = '{"a":[1,2,3]}';
    const res = await post(text, {
      "content-type": "application/json",
      "content-length": String(text.length),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ got: { a: [1, 2, 3] }, timed: true });
  });

  it("refuses a declared length over the limit, and a body longer than the limit that declared less", async () => {
    const big = `{"pad":"${"x".repeat(LIMIT)}"}`;
    const declared = await post(big, {
      "content-type": "application/json",
      "content-length": String(big.length),
    });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toEqual({
      error: { code: "payload_too_large", message: `body: exceeds ${LIMIT} bytes`, field: "body" },
    });
    const lying = await post(stream([big]), { "content-type": "application/json", "content-length": "10" });
    expect(lying.status).toBe(413);
  });

  it("counts a chunked body (no declared length) as it arrives", async () => {
    const ok = await post(stream(['{"a":', "1}"]), { "content-type": "application/json" });
    expect(await ok.json()).toEqual({ got: { a: 1 }, timed: true });
    const over = await post(stream(Array.from({ length: 8 }, () => '{"pad":"xxxxxx"}')), {
      "content-type": "application/json",
    });
    expect(over.status).toBe(413);
  });
});
