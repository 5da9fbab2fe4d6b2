/**
 * A small HTTP client for the real gateway (wrangler dev) used by simulations, benchmarks and browser tests:
 * admin JSON calls, and registering an ONNX graph as a variant with a manifest carrying real sha256s.
 * Runtime-agnostic (Node and workerd).
 */
import { type Graph, ioSignatureOf } from "../../src/core/onnx";
import { type GraphVariant, graphVariantFiles, variantForm } from "./variant-files";

export class GatewayClient {
  constructor(
    readonly url: string,
    readonly adminToken: string,
    /** API key for inference, routing and feedback calls (`admin: false`). */
    readonly apiKey?: string,
  ) {}

  /** `Authorization` with the API key (inference, routing explanations, feedback). */
  keyHeaders(): Record<string, string> {
    return this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
  }

  /**
   * JSON request; throws with the server's error body unless the status is one of `ok`. Sends the admin token,
   * or with `admin: false` the API key.
   */
  async json<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    opts: { admin?: boolean; ok?: number[]; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...(opts.admin !== false ? { authorization: `Bearer ${this.adminToken}` } : this.keyHeaders()),
        ...opts.headers,
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!(opts.ok ?? [200, 201]).includes(res.status)) {
      throw new Error(`${method} ${path}: ${res.status} ${text}`);
    }
    return (text ? JSON.parse(text) : null) as T;
  }

  async createModel(name: string, task: string, labels: string[], graph: Graph): Promise<void> {
    await this.json("POST", "/v1/models", { name, task, labels, io: ioSignatureOf(graph) });
  }

  /** Uploads `graph` (+ tokenizer) as a variant; returns its version. */
  async registerGraph(
    name: string,
    task: string,
    labels: string[],
    graph: Graph,
    v: GraphVariant,
  ): Promise<number> {
    // p95 as declared by the simulation: 1.5 × p50.
    const files = await graphVariantFiles(name, task, labels, graph, { p95Ms: v.p50Ms * 1.5, ...v });
    const res = await fetch(`${this.url}/v1/models/${name}/variants`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.adminToken}` },
      body: variantForm(files),
    });
    const body = (await res.json()) as { variant: { version: number } };
    if (res.status !== 201 && res.status !== 200)
      throw new Error(`upload ${name}: ${res.status} ${JSON.stringify(body)}`);
    const version = body.variant.version;
    if ((v.status ?? "active") === "active") {
      await this.json("PATCH", `/v1/models/${name}/variants/${version}`, { status: "active" });
    }
    return version;
  }
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
