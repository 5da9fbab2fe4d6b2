import { SELF } from "cloudflare:test";
import { expect, it } from "vitest";

it("answers liveness inside workerd", async () => {
  const res = await SELF.fetch("http://gateway/v2/health/live");
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ live: true });
});
