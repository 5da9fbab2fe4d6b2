/**
 * A small HTTP client for the real gateway (wrangler dev) used by simulations and browser tests: admin JSON
 * calls, and registering an ONNX graph as a variant with a manifest carrying real sha256s.
 */
import { createHash } from "node:crypto";
import type { Manifest } from "../../src/core/manifest";
import { encodeModel, type Graph, ioSignatureOf } from "../../src/core/onnx";

export class GatewayClient {
  constructor(
    readonly url: string,
    readonly adminToken: string,
  ) {}

  /** JSON request; throws with the server's error body unless the status is one of `ok`. */
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
        ...(opts.admin !== false ? { authorization: `Bearer ${this.adminToken}` } : {}),
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
    v: {
      accuracy: number;
      p50Ms: number;
      sparsity: number;
      tokenizer?: string;
      status?: "active" | "staged";
    },
  ): Promise<number> {
    const model = encodeModel(graph);
    const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
    const zeros = "0".repeat(64);
    const manifest: Manifest = {
      schemaVersion: 1,
      model: { name, task },
      base: { name: "sim-base", sha256: zeros },
      artifact: { file: "model.onnx", sha256: sha(model), bytes: model.byteLength },
      ...(v.tokenizer ? { tokenizer: { file: "tokenizer.json", sha256: sha(v.tokenizer) } } : {}),
      io: ioSignatureOf(graph),
      labels,
      sparsity: {
        target: v.sparsity,
        removed: v.sparsity,
        params: graph.parameterCount(),
        baseParams: graph.parameterCount(),
        flopsPerToken: 1,
        baseFlopsPerToken: 1,
      },
      metrics: { accuracy: v.accuracy, others: {}, evalSet: { name: "sim", sha256: zeros, size: 1000 } },
      latency: {
        p50Ms: v.p50Ms,
        p95Ms: v.p50Ms * 1.5,
        batch: 1,
        seqLen: 32,
        runtime: "declared by the simulation",
      },
      training: {
        method: "finegates",
        hyperparameters: {},
        seed: 1,
        steps: 1,
        trainableParams: 1,
        createdAt: new Date().toISOString(),
      },
    };
    const form = new FormData();
    form.append(
      "manifest",
      new Blob([JSON.stringify(manifest)], { type: "application/json" }),
      "manifest.json",
    );
    form.append("model", new Blob([model], { type: "application/octet-stream" }), "model.onnx");
    if (v.tokenizer) {
      form.append("tokenizer", new Blob([v.tokenizer], { type: "application/json" }), "tokenizer.json");
    }
    const res = await fetch(`${this.url}/v1/models/${name}/variants`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.adminToken}` },
      body: form,
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
