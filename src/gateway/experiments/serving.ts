/**
 * Experiments on the serving path. While a model has a running experiment, its routed requests
 * (`POST /v2/models/:model/infer`, `POST /v1/models/:model/classify`) bypass SLA routing: each request is
 * assigned an arm from its unit (sticky) and served by that arm's variant: the hook pins the arm's version on the
 * request (src/gateway/serving-variables.ts) and the same inference handler serves it, so serving, validation
 * and errors are exactly the gateway's. The
 * response gains `x-sluice-experiment`, `x-sluice-arm` and `x-sluice-request-id`, and an exposure event goes
 * to the EVENTS queue after the response (`waitUntil`), off the hot path.
 *
 * An arm's variant that fails (5xx) is not replaced by another variant: the failure is the arm's, recorded as
 * an error exposure so the error-rate guardrail sees it. Requests rejected as bad input (4xx) are not exposures.
 */
import { and, eq } from "drizzle-orm";
import type { Context } from "hono";
import { type Defer, IsolateCache } from "../../core/isolate-cache";
import { requestCredential } from "../../http/credentials";
import { isModelName } from "../../http/params";
import { deferOf } from "../../http/wait-until";
import { experimentArms, experiments } from "../../registry/experiments-schema";
import { onRegistryChange } from "../../registry/invalidation";
import { models, variants } from "../../registry/schema";
import type { Env } from "../env";
import { type ArmAssignment, assignRequest } from "./assign";
import type { ExposureEvent } from "./events";
import { experimentDb } from "./store";

/** How long an isolate reuses its view of a model's running experiment (a start/stop elsewhere shows up within it). */
export const RUNNING_EXPERIMENT_TTL_MS = 5_000;

export interface RunningExperiment {
  id: number;
  seed: string;
  unit: string;
  labels: string[];
  arms: { arm: number; version: number; weight: number }[];
}

/** Arm names as the API, headers and recommendations show them: A, B, C, ... */
export function armName(arm: number): string {
  return arm < 26 ? String.fromCharCode(65 + arm) : `arm${arm}`;
}

// --- request ids ------------------------------------------------------------------------------------------

/** `e<experiment id>-<32 hex>`: the experiment is readable from the id, so feedback can be checked before its exposure lands. */
export const REQUEST_ID = /^e([1-9][0-9]{0,9})-[0-9a-f]{32}$/;

export function mintRequestId(experimentId: number): string {
  return `e${experimentId}-${crypto.randomUUID().replaceAll("-", "")}`;
}

export function experimentIdOfRequest(requestId: string): number | null {
  const m = REQUEST_ID.exec(requestId);
  return m ? Number(m[1]) : null;
}

// --- per-isolate cache of running experiments -------------------------------------------------------------

/** Most model names one isolate keeps an answer for (least recently used go first). */
export const RUNNING_EXPERIMENT_CACHE_MAX = 1_000;

/**
 * Per-isolate cache: the hot path must not query D1 on every request. Misses (no experiment) are cached too,
 * but only for names that pass ModelName, and never more than `maxEntries` of them: a client sending endless
 * made-up names cannot grow the isolate's memory. Registry writes invalidate it (src/registry/invalidation.ts).
 */
export class RunningExperiments {
  private readonly cache: IsolateCache<RunningExperiment | null>;

  constructor(
    ttlMs = RUNNING_EXPERIMENT_TTL_MS,
    now: () => number = Date.now,
    maxEntries = RUNNING_EXPERIMENT_CACHE_MAX,
  ) {
    this.cache = new IsolateCache({ ttlMs, maxEntries, now });
  }

  /** D1 queries made (observable so a test can prove the cache works). */
  get queries(): number {
    return this.cache.loads;
  }

  get size(): number {
    return this.cache.size;
  }

  /**
   * The model's running experiment; null for none, and for a name no model can have (without a query). With
   * `defer` (the request's waitUntil), an answer near the end of its TTL is reloaded in the background.
   */
  async lookup(d1: D1Database, modelName: string, defer?: Defer): Promise<RunningExperiment | null> {
    if (!isModelName(modelName)) return null; // ModelName's rule, without building a zod result per request
    return this.cache.get(modelName, () => this.query(d1, modelName), defer);
  }

  invalidate(modelName?: string): void {
    this.cache.invalidate(modelName);
  }

  private async query(d1: D1Database, modelName: string): Promise<RunningExperiment | null> {
    const rows = await experimentDb(d1)
      .select({
        id: experiments.id,
        seed: experiments.seed,
        unit: experiments.unit,
        labels: models.labels,
        arm: experimentArms.arm,
        version: variants.version,
        weight: experimentArms.weight,
      })
      .from(experiments)
      .innerJoin(models, eq(models.id, experiments.modelId))
      .innerJoin(experimentArms, eq(experimentArms.experimentId, experiments.id))
      .innerJoin(variants, eq(variants.id, experimentArms.variantId))
      .where(and(eq(models.name, modelName), eq(experiments.status, "running")))
      .orderBy(experimentArms.arm)
      .all();
    if (rows.length === 0) return null;
    const { id, seed, unit, labels } = rows[0];
    return {
      id,
      seed,
      unit,
      labels,
      arms: rows.map(({ arm, version, weight }) => ({ arm, version, weight })),
    };
  }
}

/** The isolate's cache, shared by the serving hook and the experiment routes (which invalidate it on writes). */
export const runningExperiments = new RunningExperiments();
onRegistryChange(({ model }) => runningExperiments.invalidate(model));

// --- assignment -------------------------------------------------------------------------------------------

const encoder = new TextEncoder();

/**
 * The request's unit id: the named header's value, or for `api-key` a digest of the caller's bearer key (the
 * key itself is never stored). Absent means the request is assigned at random and counted apart.
 */
export async function unitIdOf(c: Context, unit: string): Promise<string | null> {
  if (unit === "api-key") {
    const credential = requestCredential(c.req.raw.headers);
    if (credential.kind !== "token") return null;
    const key = credential.token;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(key)));
    return `key:${[...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  }
  const value = c.req.header(unit)?.trim();
  return value ? value.slice(0, 256) : null;
}

export interface ExperimentOverride {
  experiment: RunningExperiment;
  assignment: ArmAssignment;
  version: number;
  unitId: string | null;
  requestId: string;
}

/**
 * Whether the model's running experiment covers this request, and which arm serves it. Null when the model
 * has no running experiment.
 */
export async function experimentOverride<E extends { Bindings: Env }>(
  c: Context<E>,
  modelName: string,
  cache: RunningExperiments = runningExperiments,
): Promise<ExperimentOverride | null> {
  const experiment = await cache.lookup(c.env.DB, modelName, deferOf(c));
  if (!experiment) return null;
  const unitId = await unitIdOf(c, experiment.unit);
  const assignment = assignRequest(experiment, unitId);
  return {
    experiment,
    assignment,
    version: experiment.arms[assignment.arm].version,
    unitId: assignment.sticky ? unitId : null,
    requestId: mintRequestId(experiment.id),
  };
}

// --- exposure events --------------------------------------------------------------------------------------

/** The single predicted label of a classify or OIP infer response body, when it has exactly one. */
export function predictedLabel(body: unknown, labels: readonly string[]): string | null {
  if (typeof body !== "object" || body === null) return null;
  const b = body as {
    results?: { label?: unknown }[];
    outputs?: { name?: unknown; data?: unknown }[];
  };
  if (Array.isArray(b.results)) {
    return b.results.length === 1 && typeof b.results[0]?.label === "string" ? b.results[0].label : null;
  }
  if (Array.isArray(b.outputs) && b.outputs.length > 0) {
    const out = b.outputs.find((o) => o.name === "logits") ?? b.outputs[0];
    const data = out.data;
    if (!Array.isArray(data) || data.length !== labels.length || labels.length === 0) return null;
    let best = 0;
    for (let i = 1; i < data.length; i++) if (Number(data[i]) > Number(data[best])) best = i;
    return labels[best];
  }
  return null;
}

function executionContextOf(c: Context): ExecutionContext | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined; // app.request() in tests has none
  }
}

/** What the exposure needs from the served response. */
export interface ServedResponse {
  status: number;
  /** `x-sluice-variant` (model@version) */
  variant: string | null;
  /** the JSON body, as text (parsed for the predicted label after the response has gone) */
  body: string;
}

/**
 * Sends the exposure event for a served request after the response is returned (`waitUntil`): the body is
 * parsed for the predicted label there, so the client never waits for it. Client errors (4xx) are not exposures.
 */
export function recordExposure<E extends { Bindings: Env }>(
  c: Context<E>,
  override: ExperimentOverride,
  served: ServedResponse,
  latencyMs: number,
): void {
  if (served.status >= 400 && served.status < 500) return;
  if (!c.env.EVENTS) {
    console.warn("experiments: no EVENTS queue binding; exposure not recorded");
    return;
  }
  const error = served.status >= 500;
  const servedVersion = served.variant
    ? Number(served.variant.slice(served.variant.lastIndexOf("@") + 1))
    : null;
  const send = async () => {
    let predicted: string | null = null;
    if (!error) {
      try {
        predicted = predictedLabel(JSON.parse(served.body), override.experiment.labels);
      } catch {}
    }
    const event: ExposureEvent = {
      type: "exposure",
      requestId: override.requestId,
      experimentId: override.experiment.id,
      arm: override.assignment.arm,
      unitId: override.unitId,
      sticky: override.assignment.sticky,
      servedVersion: Number.isInteger(servedVersion) ? servedVersion : null,
      latencyMs,
      error,
      predicted,
      servedAt: new Date().toISOString(),
    };
    await c.env.EVENTS.send(event);
  };
  const pending = send().catch((err) => console.error("experiments: exposure not sent", err));
  const ctx = executionContextOf(c);
  if (ctx) ctx.waitUntil(pending);
}

/**
 * Finishes an experiment request: buffers the arm's (small, JSON) response, records the exposure and returns
 * the response with the experiment headers. Buffering rather than teeing the body stream, because a tee'd
 * branch only flows while the client reads the other one, and a client that never reads its body must not be
 * able to lose the exposure.
 */
export async function finishExperimentResponse<E extends { Bindings: Env }>(
  c: Context<E>,
  override: ExperimentOverride,
  response: Response,
  latencyMs: number,
): Promise<Response> {
  const body = await response.text();
  recordExposure(
    c,
    override,
    { status: response.status, variant: response.headers.get("x-sluice-variant"), body },
    latencyMs,
  );
  const out = new Response(body, response);
  out.headers.set("x-sluice-experiment", String(override.experiment.id));
  out.headers.set("x-sluice-arm", armName(override.assignment.arm));
  out.headers.set("x-sluice-request-id", override.requestId);
  return out;
}
