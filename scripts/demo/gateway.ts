/**
 * The serving half of the demo, over HTTP against the real gateway: register and activate the variants (the
 * `sluice push` code path), set the task's accuracy SLA, classify the test texts through each pinned variant,
 * and ask the router which variant it serves for the SLA.
 */
import { push } from "../../src/trainer-node/commands/push";
import { describeApiError, requestJson } from "../../src/trainer-node/registry-client";
import { DEMO_MODEL, DEMO_TASK, REQUEST_BATCH } from "./config";
import type { DemoVariant } from "./variants";

/** Pushes each variant directory (as `sluice push` does) and activates it; returns label -> version. */
export async function registerVariants(
  url: string,
  token: string,
  variants: DemoVariant[],
  log: (line: string) => void,
): Promise<Map<string, number>> {
  const versions = new Map<string, number>();
  for (const v of variants) {
    const pushed = await push({ dir: v.dir, url, token, json: false }, (s) => log(`  ${s.trimEnd()}`));
    const version = pushed.variant.version;
    await requestJson(url, `/v1/models/${DEMO_MODEL}/variants/${version}`, {
      method: "PATCH",
      token,
      body: { status: "active" },
    });
    log(`  registered and activated ${DEMO_MODEL}@${version} (${v.label})`);
    versions.set(v.label, version);
  }
  return versions;
}

export async function putAccuracySla(
  url: string,
  token: string,
  sla: { min?: number; margin?: number },
): Promise<void> {
  await requestJson(url, `/v1/tasks/${DEMO_TASK}/sla`, {
    method: "PUT",
    token,
    body: { metric: "accuracy", ...sla },
  });
}

interface ClassifyResponse {
  version: number;
  results: { label: string; score: number; scores: Record<string, number> }[];
}

export interface GatewayMeasurement {
  version: number;
  /** Predicted label per test text, in order. */
  predictions: string[];
  correct: number;
  total: number;
  accuracy: number;
  /** End-to-end time of each timed request (REQUEST_BATCH texts), client side. */
  requestMs: number[];
  /** server-timing `infer` of each timed request (onnxruntime-web inside workerd). */
  inferMs: number[];
  /** The first request of the variant (loads its session), not in the timed ones. */
  coldMs: number;
}

function serverTiming(res: Response, name: string): number {
  const m = new RegExp(`(?:^|,)\\s*${name};dur=([0-9.]+)`).exec(res.headers.get("server-timing") ?? "");
  return m ? Number(m[1]) : Number.NaN;
}

async function classify(url: string, key: string, version: number, texts: string[]) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/models/${DEMO_MODEL}/versions/${version}/classify`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ texts }),
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (!res.ok) throw describeApiError(res.status, text);
  const body = JSON.parse(text) as ClassifyResponse;
  if (body.version !== version || body.results.length !== texts.length)
    throw new Error(
      `classify on ${DEMO_MODEL}@${version} answered for @${body.version} with ${body.results.length} results`,
    );
  return { ms, inferMs: serverTiming(res, "infer"), labels: body.results.map((r) => r.label) };
}

/**
 * Sends every test text through each pinned variant, REQUEST_BATCH texts per request. After one cold request
 * per variant, the variants take turns batch by batch (order alternating each round), so a change in machine
 * load during the run hits them all alike.
 */
export async function measureThroughGateway(
  url: string,
  key: string,
  versions: number[],
  texts: string[],
  labels: string[],
): Promise<GatewayMeasurement[]> {
  const m = new Map<number, GatewayMeasurement>();
  for (const version of versions) {
    const cold = await classify(url, key, version, texts.slice(0, 1));
    m.set(version, {
      version,
      predictions: [],
      correct: 0,
      total: 0,
      accuracy: 0,
      requestMs: [],
      inferMs: [],
      coldMs: cold.ms,
    });
  }
  for (let i = 0, round = 0; i < texts.length; i += REQUEST_BATCH, round++) {
    const batch = texts.slice(i, i + REQUEST_BATCH);
    const order = round % 2 === 0 ? versions : [...versions].reverse();
    for (const version of order) {
      const r = await classify(url, key, version, batch);
      const g = m.get(version)!;
      g.predictions.push(...r.labels);
      g.requestMs.push(r.ms);
      g.inferMs.push(r.inferMs);
    }
  }
  for (const g of m.values()) {
    g.total = g.predictions.length;
    g.correct = g.predictions.filter((p, i) => p === labels[i]).length;
    g.accuracy = g.correct / g.total;
  }
  return versions.map((v) => m.get(v)!);
}

/** What `GET /v1/models/:model/route` explains (the fields the demo prints). */
export interface RouteExplanation {
  policy: string;
  sla: {
    minAccuracy: number;
    taskMin: number | null;
    margin: number | null;
    confidence: number;
    maxLatencyMs: number | null;
    strict: boolean;
  };
  candidates: {
    version: number;
    accuracy: number;
    latencyP50Ms: number;
    params: number;
    sparsity: number;
    verdict: string;
    why: string;
    margin?: {
      interval: [number, number];
      paired: boolean;
      discordant?: { variantOnly: number; bestOnly: number };
    };
  }[];
  chosen: number | null;
  outcome: string;
  reason: string;
}

export async function explainRoute(url: string, key: string): Promise<RouteExplanation> {
  return (await requestJson<RouteExplanation>(url, `/v1/models/${DEMO_MODEL}/route`, { token: key })).body;
}

/** One routed (unpinned) classify request: which variant actually served it, and whether the SLA was met. */
export async function routedRequest(
  url: string,
  key: string,
  text: string,
): Promise<{ variant: string; sla: string }> {
  const res = await fetch(`${url}/v1/models/${DEMO_MODEL}/classify`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ text }),
  });
  const body = await res.text();
  if (!res.ok) throw describeApiError(res.status, body);
  return { variant: res.headers.get("x-sluice-variant") ?? "?", sla: res.headers.get("x-sluice-sla") ?? "?" };
}
