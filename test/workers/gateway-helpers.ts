/**
 * Gateway test helpers: register any ONNX graph as a variant through the registry API (the Worker's own
 * routes, real D1 and R2), activate it, set SLAs, and call a gateway built with test configuration.
 */
import { env } from "cloudflare:test";
import { Hono } from "hono";
import { type Graph, ioSignatureOf } from "../../src/core/onnx";
import type { Env } from "../../src/gateway/env";
import { createInferenceRoutes, type GatewayState } from "../../src/gateway/inference-routes";
import { receivedAt } from "../../src/http/received-at";
import { requestId } from "../../src/http/request-id";
import { useApiKeys } from "../../src/worker/app";
import { type GraphVariant, graphVariantFiles } from "../shared/variant-files";
import { api, jsonInit, uploadVariant, withKey } from "./helpers";

export { serverTiming } from "../shared/gateway-client";
export type { GraphVariant } from "../shared/variant-files";

export interface RegisteredVariant {
  version: number;
  sha256: string;
  artifactKey: string;
  bytes: Uint8Array;
}

/** Creates the model (idempotent) from the graph's io signature. */
export async function ensureModel(name: string, task: string, labels: string[], graph: Graph): Promise<void> {
  const res = await api("/v1/models", jsonInit("POST", { name, task, labels, io: ioSignatureOf(graph) }));
  if (res.status !== 201 && res.status !== 200)
    throw new Error(`create ${name}: ${res.status} ${await res.text()}`);
}

/** Uploads `graph` as a variant of `name` (which must exist), then activates it unless told otherwise. */
export async function registerGraph(
  name: string,
  task: string,
  labels: string[],
  graph: Graph,
  v: GraphVariant,
): Promise<RegisteredVariant> {
  const files = await graphVariantFiles(name, task, labels, graph, v);
  const res = await uploadVariant(name, files);
  const body = (await res.json()) as { variant: { version: number; artifactKey: string } };
  if (res.status !== 201 && res.status !== 200)
    throw new Error(`upload ${name}: ${res.status} ${JSON.stringify(body)}`);
  const version = body.variant.version;
  if ((v.status ?? "active") === "active") await setStatus(name, version, "active");
  return {
    version,
    sha256: files.manifest.artifact.sha256,
    artifactKey: body.variant.artifactKey,
    bytes: files.model,
  };
}

export async function setStatus(name: string, version: number, status: "staged" | "active" | "retired") {
  const res = await api(`/v1/models/${name}/variants/${version}`, jsonInit("PATCH", { status }));
  if (res.status !== 200) throw new Error(`patch ${name}@${version}: ${res.status} ${await res.text()}`);
}

export async function setSla(task: string, sla: { min: number; maxLatencyMs?: number; strict?: boolean }) {
  const res = await api(`/v1/tasks/${task}/sla`, jsonInit("PUT", { metric: "accuracy", ...sla }));
  if (res.status !== 200) throw new Error(`sla ${task}: ${res.status} ${await res.text()}`);
}

/**
 * A gateway with its own state (so a test controls TTLs and budgets and can look inside the caches), behind the
 * Worker's own API-key check; requests carry the tests' shared key unless `headers` set another.
 */
export function testGateway(state: GatewayState) {
  const app = new Hono<{ Bindings: Env }>();
  // as the Worker's app does (src/worker/app.ts)
  app.use("*", receivedAt as never);
  app.use("*", requestId as never);
  useApiKeys(app);
  app.route("/", createInferenceRoutes({ state }));
  return {
    fetch: async (path: string, init: RequestInit = {}) =>
      app.request(
        `http://gateway${path}`,
        { ...init, headers: await withKey(init.headers as Record<string, string>) },
        env,
      ),
    infer: async (path: string, body: unknown, headers: Record<string, string> = {}) =>
      app.request(
        `http://gateway${path}`,
        {
          method: "POST",
          headers: await withKey({ "content-type": "application/json", ...headers }),
          body: JSON.stringify(body),
        },
        env,
      ),
  };
}
