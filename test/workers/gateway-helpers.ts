/**
 * Gateway test helpers: register any ONNX graph as a variant through the registry API (the Worker's own
 * routes, real D1 and R2), activate it, set SLAs, and call a gateway built with test configuration.
 */
import { env } from "cloudflare:test";
import { Hono } from "hono";
import type { Manifest } from "../../src/core/manifest";
import { encodeModel, type Graph, ioSignatureOf } from "../../src/core/onnx";
import { createInferenceRoutes, type GatewayState } from "../../src/gateway/inference-routes";
import { api, jsonInit, sha256Hex, uploadVariant } from "./helpers";

export interface GraphVariant {
  accuracy: number;
  p50Ms: number;
  params?: number;
  sparsity?: number;
  /** tokenizer.json text, uploaded with the variant. */
  tokenizer?: string;
  status?: "staged" | "active";
}

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
  const model = encodeModel(graph);
  const tokenizer = v.tokenizer !== undefined ? new TextEncoder().encode(v.tokenizer) : undefined;
  const zeros = "0".repeat(64);
  const sha256 = await sha256Hex(model);
  const manifest: Manifest = {
    schemaVersion: 1,
    model: { name, task },
    base: { name: "test-base", sha256: zeros },
    artifact: { file: "model.onnx", sha256, bytes: model.byteLength },
    ...(tokenizer ? { tokenizer: { file: "tokenizer.json", sha256: await sha256Hex(tokenizer) } } : {}),
    io: ioSignatureOf(graph),
    labels,
    sparsity: {
      target: v.sparsity ?? 0,
      removed: v.sparsity ?? 0,
      params: v.params ?? graph.parameterCount(),
      baseParams: graph.parameterCount(),
      flopsPerToken: 1,
      baseFlopsPerToken: 1,
    },
    metrics: { accuracy: v.accuracy, others: {}, evalSet: { name: "test", sha256: zeros, size: 100 } },
    latency: { p50Ms: v.p50Ms, p95Ms: v.p50Ms * 2, batch: 1, seqLen: 8, runtime: "test" },
    training: {
      method: "finegates",
      hyperparameters: {},
      seed: 1,
      steps: 1,
      trainableParams: 1,
      createdAt: "2026-11-29T00:00:00.000Z",
    },
  };
  const res = await uploadVariant(name, { manifest, model, tokenizer });
  const body = (await res.json()) as { variant: { version: number; artifactKey: string } };
  if (res.status !== 201 && res.status !== 200)
    throw new Error(`upload ${name}: ${res.status} ${JSON.stringify(body)}`);
  const version = body.variant.version;
  if ((v.status ?? "active") === "active") await setStatus(name, version, "active");
  return { version, sha256, artifactKey: body.variant.artifactKey, bytes: model };
}

export async function setStatus(name: string, version: number, status: "staged" | "active" | "retired") {
  const res = await api(`/v1/models/${name}/variants/${version}`, jsonInit("PATCH", { status }));
  if (res.status !== 200) throw new Error(`patch ${name}@${version}: ${res.status} ${await res.text()}`);
}

export async function setSla(task: string, sla: { min: number; maxLatencyMs?: number; strict?: boolean }) {
  const res = await api(`/v1/tasks/${task}/sla`, jsonInit("PUT", { metric: "accuracy", ...sla }));
  if (res.status !== 200) throw new Error(`sla ${task}: ${res.status} ${await res.text()}`);
}

/** A gateway with its own state (so a test controls TTLs and budgets and can look inside the caches). */
export function testGateway(state: GatewayState) {
  const app = new Hono().route("/", createInferenceRoutes({ state }));
  return {
    fetch: (path: string, init: RequestInit = {}) => app.request(`http://gateway${path}`, init, env),
    infer: (path: string, body: unknown, headers: Record<string, string> = {}) =>
      app.request(
        `http://gateway${path}`,
        {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify(body),
        },
        env,
      ),
  };
}

/** `server-timing` as { name: ms }. */
export function serverTiming(res: Response): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of (res.headers.get("server-timing") ?? "").split(",")) {
    const m = /^\s*([a-z0-9]+);dur=([0-9.]+)/.exec(part);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}
