// The registry's JSON bodies are typed for the CLI's hono/client (src/trainer-node/registry-client.ts) because
// their routes declare them with `jsonInput`: a wrong field is a type error (the `@ts-expect-error` lines fail
// `npm run typecheck` if the bodies stop being typed), and the client sends what it is given.
import { describe, expect, it } from "vitest";
import { registryClient } from "../../src/trainer-node/registry-client";

function recordingClient() {
  const sent: { method: string; url: string; body: unknown }[] = [];
  const client = registryClient("http://registry.test", {
    token: "t",
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const req = new Request(input, init);
      sent.push({ method: req.method, url: req.url, body: JSON.parse(await req.text()) });
      return new Response("{}", { headers: { "content-type": "application/json" } });
    }) as typeof fetch,
  });
  return { client, sent };
}

describe("typed registry bodies in hono/client", () => {
  it("PATCH variant, PUT alias, PUT SLA and POST keys take typed json", async () => {
    const { client, sent } = recordingClient();
    const param = { model: "spam", version: "1" };
    await client.v1.models[":model"].variants[":version"].$patch({ param, json: { status: "active" } });
    await client.v1.models[":model"].aliases[":alias"].$put({
      param: { model: "spam", alias: "prod" },
      json: { version: 1 },
    });
    await client.v1.tasks[":task"].sla.$put({
      param: { task: "spam" },
      json: { metric: "accuracy", margin: 0.02 },
    });
    await client.v1.keys.$post({ json: { scopes: ["infer"], models: ["spam"] } });
    expect(sent).toEqual([
      { method: "PATCH", url: "http://registry.test/v1/models/spam/variants/1", body: { status: "active" } },
      { method: "PUT", url: "http://registry.test/v1/models/spam/aliases/prod", body: { version: 1 } },
      {
        method: "PUT",
        url: "http://registry.test/v1/tasks/spam/sla",
        body: { metric: "accuracy", margin: 0.02 },
      },
      { method: "POST", url: "http://registry.test/v1/keys", body: { scopes: ["infer"], models: ["spam"] } },
    ]);
  });

  it("refuses wrong fields at compile time", () => {
    const { client } = recordingClient();
    const param = { model: "spam", version: "1" };
    // Not called: only the types are under test here.
    const calls = () => [
      // @ts-expect-error: 'deleted' is not a variant status
      client.v1.models[":model"].variants[":version"].$patch({ param, json: { status: "deleted" } }),
      client.v1.models[":model"].aliases[":alias"].$put({
        param: { model: "m", alias: "a" },
        // @ts-expect-error: an alias's version is a number
        json: { version: "1" },
      }),
      // @ts-expect-error: the only SLA metric is accuracy
      client.v1.tasks[":task"].sla.$put({ param: { task: "t" }, json: { metric: "f1", min: 0.9 } }),
      // @ts-expect-error: 'root' is not a key scope
      client.v1.keys.$post({ json: { scopes: ["root"] } }),
    ];
    expect(typeof calls).toBe("function");
  });
});
