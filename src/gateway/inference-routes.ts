/**
 * Inference HTTP API (Hono): Open Inference Protocol v2 under /v2, and Sluice's text classification and routing
 * explanation under /v1. Every inference response carries x-sluice-variant (model@version), x-sluice-sparsity
 * and server-timing (route, load, tokenize, infer, total); routed ones also x-sluice-sla (met | unmet).
 *
 * Per-isolate state (catalog cache, session cache, cool-downs) is created on the first request, when the
 * Worker's vars are known, and lives as long as the isolate.
 */
import { type Context, Hono } from "hono";
import type { InferenceSession } from "onnxruntime-web/wasm";
import { manifestTakesPairs } from "../core/manifest";
import { readJsonBody } from "../http/body";
import { httpErrorHandler } from "../http/errors";
import { isModelName } from "../http/params";
import { receivedAtOf } from "../http/received-at";
import { REQUEST_ID_HEADER, requestIdOf } from "../http/request-id";
import { takeHeaders } from "../http/response-headers";
import { deferOf } from "../http/wait-until";
import { type RegistrySignal, registrySignal } from "../registry/invalidation";
import type { VariantRow } from "../registry/schema";
import { Catalog, type CatalogEntry, findPinned, routable, slaOf } from "./catalog";
import {
  checkPairsFit,
  classifyFeeds,
  classifyLogits,
  fixedBatchOf,
  fixedBatchRuns,
  parseClassifyBody,
} from "./classify";
import { configFromEnv, type GatewayConfig, type GatewayVars } from "./config";
import type { Env } from "./env";
import { GatewayError, invalid } from "./errors";
import { predictedLabel } from "./experiments/serving";
import { FEEDBACK_TOKEN_HEADER, mintFeedbackToken, ROUTED_UNIT_HEADER, unitDigest } from "./feedback-token";
import { LIVE_MIN_LABELLED, LIVE_MIN_UNITS } from "./live-evidence";
import { LiveFeedbackCache } from "./live-feedback";
import { checkModelLimits, type Feed, prepareInfer, toOipTensor } from "./oip";
import { ArtifactChecks } from "./readiness";
import { type RouteDecision, type RouteRequest, selectVariant } from "./routing";
import {
  Cooldowns,
  messageOf,
  RunError,
  type ServeContext,
  type Served,
  serveWithFallback,
  Timings,
} from "./serve";
import { PINNED_VERSION, type ServingVariables } from "./serving-variables";
import { ortLock, SessionCache } from "./sessions";
import { TokenizerCache } from "./tokenizers";

export interface GatewayState {
  config: GatewayConfig;
  catalog: Catalog;
  liveFeedback: LiveFeedbackCache;
  sessions: SessionCache;
  cooldowns: Cooldowns;
  /** Tokenizers, loaded only by classify (a broken tokenizer.json never stops /v2 infer). */
  tokenizers: TokenizerCache;
  /** Whether artifacts would load, for readiness (cached for the catalog's TTL). */
  artifactChecks: ArtifactChecks;
}

export function createGatewayState(
  config: GatewayConfig,
  signal: RegistrySignal = registrySignal,
): GatewayState {
  const catalog = new Catalog(config.catalogTtlMs);
  // Registry writes made in this isolate are seen here at once, those of other isolates at the next generation
  // poll (src/registry/invalidation.ts, generation.ts), not after the TTL.
  signal.on(({ model }) => catalog.invalidate(model));
  const liveFeedback = new LiveFeedbackCache(
    config.liveFeedbackTtlMs,
    Date.now,
    undefined,
    config.liveFeedbackWindowMs,
  );
  liveFeedback.subscribe(signal);
  return {
    config,
    catalog,
    liveFeedback,
    sessions: new SessionCache(config.sessionBudgetBytes),
    cooldowns: new Cooldowns(config.cooldownMs),
    tokenizers: new TokenizerCache(),
    artifactChecks: new ArtifactChecks(config.catalogTtlMs),
  };
}

export interface InferenceRoutesOptions {
  /** Overrides of the vars-derived configuration (tests, benchmarks). */
  config?: Partial<GatewayConfig>;
  /** Use this state instead of creating one (lets a test look inside the caches). */
  state?: GatewayState;
  /** The signal the created state's caches subscribe to (a test simulating two isolates); default: the isolate's. */
  signal?: RegistrySignal;
}

/**
 * Routing decisions per catalog entry. A decision is a pure function of the entry (variants, SLA), its live
 * feedback aggregate, the request's minimum accuracy and the versions cooling down, which change rarely, while
 * the policy (paired comparisons, bounds, Bonferroni) runs on every routed request. So each combination is
 * decided once and reused while the entry object and its feedback aggregate are the ones cached: a reload or an
 * invalidation makes new objects, and the old entry's decisions go with it (WeakMap). The request's minimum
 * accuracy is the client's choice, so at most DECISION_MEMO_MAX combinations are kept per entry.
 */
const decisionMemo = new WeakMap<CatalogEntry, Map<string, { live: unknown; decision: RouteDecision }>>();
const DECISION_MEMO_MAX = 32;
function decisionsOf(entry: CatalogEntry) {
  let memo = decisionMemo.get(entry);
  if (!memo) {
    memo = new Map();
    decisionMemo.set(entry, memo);
  }
  return memo;
}

type GatewayEnv = { Bindings: Env & GatewayVars; Variables: ServingVariables };
type Ctx = Context<GatewayEnv>;

export function createInferenceRoutes(options: InferenceRoutesOptions = {}) {
  const r = new Hono<GatewayEnv>();
  let state = options.state;
  const stateOf = (c: Ctx) => {
    state ??= createGatewayState({ ...configFromEnv(c.env), ...options.config }, options.signal);
    return state;
  };
  r.onError(httpErrorHandler);

  /** The model's catalog entry, or a 404 naming it. */
  async function modelOr404(c: Ctx): Promise<CatalogEntry> {
    const name = c.req.param("model") ?? "";
    const entry = isModelName(name) ? await stateOf(c).catalog.lookup(c.env.DB, name, deferOf(c)) : null;
    if (!entry) throw new GatewayError(404, "not_found", `model '${name.slice(0, 80)}' not found`, "model");
    return entry;
  }

  function pinnedOr404(entry: CatalogEntry, version: string): VariantRow {
    const variant = findPinned(entry, version);
    if (!variant) {
      throw new GatewayError(
        404,
        "not_found",
        `version '${version}' of model '${entry.model.name}' not found (or retired)`,
        "version",
      );
    }
    return variant;
  }

  /**
   * The policy's decision on the model's variants with their live feedback. A failed feedback query must not
   * take routing down: the decision is then made on the eval evidence, and says so.
   */
  async function decide(
    c: Ctx,
    entry: CatalogEntry,
    request: Omit<RouteRequest, "liveUnavailable">,
  ): Promise<RouteDecision> {
    let live: Awaited<ReturnType<LiveFeedbackCache["lookup"]>> | undefined;
    let liveUnavailable: string | undefined;
    try {
      live = await stateOf(c).liveFeedback.lookup(c.env.DB, entry.model.id, deferOf(c));
    } catch (err) {
      console.error(`routing: live feedback of '${entry.model.name}' unavailable`, err);
      liveUnavailable = "the feedback query failed";
    }
    const memo = decisionsOf(entry);
    const key = `${request.requestedMinAccuracy ?? ""}|${[...(request.coolingDown ?? [])].sort((x, y) => x - y).join(",")}|${liveUnavailable ?? ""}`;
    const hit = memo.get(key);
    if (hit && hit.live === live) return hit.decision;
    const variants = entry.variants.map((v) => {
      const r = routable(v);
      const f = live?.get(v.version);
      return f ? { ...r, live: f } : r;
    });
    const decision = selectVariant(variants, {
      ...request,
      liveWindowDays: stateOf(c).config.liveFeedbackWindowMs / 86_400_000,
      ...(liveUnavailable ? { liveUnavailable } : {}),
    });
    if (memo.size >= DECISION_MEMO_MAX) memo.clear();
    memo.set(key, { live, decision });
    return decision;
  }

  /** Routes a request: the policy's decision, or a 503 when the SLA is strict and unmet or nothing is active. */
  async function route(c: Ctx, entry: CatalogEntry): Promise<RouteDecision> {
    const decision = await decide(c, entry, {
      sla: slaOf(entry.sla),
      requestedMinAccuracy: requestedMinAccuracy(c),
      coolingDown: stateOf(c).cooldowns.active(entry.model.id),
    });
    if (decision.outcome === "refused" || decision.outcome === "unavailable") {
      const headers: Record<string, string> =
        decision.outcome === "refused" ? { "x-sluice-sla": "unmet" } : {};
      throw new GatewayError(
        503,
        decision.outcome === "refused" ? "sla_unmet" : "no_active_variant",
        decision.reason,
        undefined,
        headers,
      );
    }
    return decision;
  }

  /** The model, the versions to try in order, and the routing decision (null for a pinned version). */
  async function resolve(c: Ctx, pinned: string | null) {
    const entry = await modelOr404(c);
    if (pinned !== null) return { entry, order: [pinnedOr404(entry, pinned).version], decision: null };
    const decision = await route(c, entry);
    return { entry, order: decision.order, decision };
  }

  /**
   * The request's JSON body, read by the one body reader under the inference limit (src/http/body.ts); the time
   * its bytes took to arrive and be read is `server-timing` `body`.
   */
  const readJson = (c: Ctx, timings: Timings) =>
    readJsonBody(c, {
      maxBytes: stateOf(c).config.maxBodyBytes,
      received: (ms) => timings.add("body", ms),
    });

  // --- health and metadata ------------------------------------------------------------------------------
  r.get("/v2", (c) => c.json({ name: "sluice", version: "0.1.0", extensions: [] }));

  r.get("/v2/health/ready", async (c) => {
    try {
      await c.env.DB.prepare("select 1").first();
      return c.json({ ready: true });
    } catch (err) {
      return c.json({ ready: false, error: `registry database unavailable: ${messageOf(err)}` }, 503);
    }
  });

  const metadata = (entry: CatalogEntry, versions: VariantRow[]) => ({
    name: entry.model.name,
    versions: versions.map((v) => String(v.version)),
    platform: "onnx",
    inputs: entry.model.io.inputs,
    outputs: entry.model.io.outputs,
  });
  /**
   * The versions a client may pin: not retired, and ready (their model.onnx would load: readiness.ts, the same
   * per-isolate check as the ready routes, so listing costs at most one R2 head per variant per TTL).
   */
  const servable = async (c: Ctx, entry: CatalogEntry) => {
    const s = stateOf(c);
    const candidates = entry.variants.filter((v) => v.status !== "retired");
    const verdicts = await Promise.all(
      candidates.map((v) => s.artifactChecks.check(c.env.ARTIFACTS, v, s.sessions)),
    );
    return candidates.filter((_, i) => verdicts[i].ok);
  };

  r.get("/v2/models/:model", async (c) => {
    const entry = await modelOr404(c);
    return c.json(metadata(entry, await servable(c, entry)));
  });

  r.get("/v2/models/:model/versions/:version", async (c) => {
    const entry = await modelOr404(c);
    return c.json(metadata(entry, [pinnedOr404(entry, c.req.param("version"))]));
  });

  /**
   * Ready = servable now: some variant of `candidates` has a model.onnx that would load (in R2, matching the
   * registry's sha256; readiness.ts). Routed requests need an active one; a pinned version needs its own.
   */
  async function readiness(c: Ctx, entry: CatalogEntry, candidates: VariantRow[], none: string) {
    const name = entry.model.name;
    if (candidates.length === 0) return c.json({ name, ready: false, error: none }, 503);
    const s = stateOf(c);
    const problems: string[] = [];
    for (const v of candidates) {
      const verdict = await s.artifactChecks.check(c.env.ARTIFACTS, v, s.sessions);
      if (verdict.ok) return c.json({ name, ready: true });
      problems.push(`v${v.version}: ${verdict.message}`);
    }
    return c.json({ name, ready: false, error: `no variant can be loaded (${problems.join("; ")})` }, 503);
  }

  r.get("/v2/models/:model/ready", async (c) => {
    const entry = await modelOr404(c);
    const active = entry.variants.filter((v) => v.status === "active");
    return readiness(c, entry, active, "the model has no active variant");
  });

  r.get("/v2/models/:model/versions/:version/ready", async (c) => {
    const entry = await modelOr404(c);
    return readiness(c, entry, [pinnedOr404(entry, c.req.param("version"))], "");
  });

  // --- Open Inference Protocol infer ----------------------------------------------------------------------
  async function infer(c: Ctx, pinned: string | null): Promise<Response> {
    const s = stateOf(c);
    const timings = Timings.since(receivedAtOf(c));
    const { entry, order, decision } = await timings.time("route", () => resolve(c, pinned));
    // No longer than the model's position table (the variants of a model share its base, so its limit).
    const positions = Math.min(
      ...entry.variants.map((v) => v.manifest.maxSequenceLength ?? Number.POSITIVE_INFINITY),
    );
    const prepared = prepareInfer(await readJson(c, timings), entry.model.io, {
      ...s.config,
      maxSequence: Math.min(s.config.maxSequence, positions),
    });
    const served = await serveWithFallback(
      serveContext(c, s, timings),
      entry,
      order,
      async (_variant, loaded) => {
        // What only the loaded graph knows (token-id ranges, position table): a 400, before the runtime.
        checkModelLimits(prepared.feeds, loaded.limits);
        const results = await timings.time("infer", () =>
          runSession(loaded.session, prepared.feeds, prepared.outputs),
        );
        return prepared.outputs.map((name) => toOipTensor(name, results[name]));
      },
    );
    const body = {
      model_name: entry.model.name,
      model_version: String(served.variant.version),
      ...(prepared.id !== undefined ? { id: prepared.id } : {}),
      outputs: served.result,
    };
    return respond(c, body, entry, served, decision, timings);
  }

  // Routed; a running experiment's middleware may have pinned the arm's version (serving-variables.ts).
  r.post("/v2/models/:model/infer", (c) => infer(c, c.get(PINNED_VERSION) ?? null));
  r.post("/v2/models/:model/versions/:version/infer", (c) => infer(c, c.req.param("version") ?? ""));

  // --- classify -------------------------------------------------------------------------------------------
  async function classify(c: Ctx, pinned: string | null): Promise<Response> {
    const s = stateOf(c);
    const timings = Timings.since(receivedAtOf(c));
    const { entry, order, decision } = await timings.time("route", () => resolve(c, pinned));
    const request = parseClassifyBody(await readJson(c, timings), s.config.maxBatch);
    const texts = request.texts;
    // Only variants registered with a tokenizer.json can classify text; checked before anything is loaded.
    const withTokenizer = order.filter((v) => entry.variants.find((x) => x.version === v)?.tokenizerKey);
    if (withTokenizer.length === 0) {
      throw new GatewayError(
        422,
        "no_tokenizer",
        `no servable variant of '${entry.model.name}' has a tokenizer.json; use /v2/models/${entry.model.name}/infer`,
        "model",
      );
    }
    // Single text or sentence pair is the routed variant's (its manifest's `input`); a 400 before any load when
    // the body does not fit it, and fallbacks only to variants that read the same input.
    const takesPairs = (version: number) =>
      manifestTakesPairs(entry.variants.find((x) => x.version === version)!.manifest);
    const pairs = takesPairs(withTokenizer[0]);
    checkPairsFit(request, pairs, `${entry.model.name}@${withTokenizer[0]}`);
    const candidates = withTokenizer.filter((v) => takesPairs(v) === pairs);
    const logitsName =
      entry.model.io.outputs.find((o) => o.name === "logits")?.name ?? entry.model.io.outputs[0].name;
    const served = await serveWithFallback(
      serveContext(c, s, timings),
      entry,
      candidates,
      async (variant, loaded) => {
        // Loaded here, only for routes that tokenize: a broken one is a 503 naming the tokenizer.
        const tokenizer = await s.tokenizers.get(
          c.env.ARTIFACTS,
          variant,
          `${entry.model.name}@${variant.version}`,
        );
        // Never more tokens than the variant's position table holds (RoBERTa's 514 rows take 512): the
        // manifest's limit, else the one read from the graph.
        const maxTokens = Math.min(
          s.config.classifyMaxTokens,
          variant.manifest.maxSequenceLength ?? loaded.limits.maxPositions ?? s.config.classifyMaxTokens,
        );
        const feeds = await timings.time("tokenize", () =>
          classifyFeeds(tokenizer, texts, entry.model.io, maxTokens, request.pairs),
        );
        try {
          checkModelLimits(feeds, loaded.limits);
        } catch (err) {
          // The texts are not at fault when the variant's own tokenizer makes ids its table lacks.
          throw new RunError(`the tokenizer's output does not fit the model: ${messageOf(err)}`);
        }
        // A fixed batch axis is never fed more (or fewer) rows than it declares: one run per `fixed` texts.
        const fixed = fixedBatchOf(entry.model.io);
        const runs = fixed ? fixedBatchRuns(feeds, fixed) : [{ feeds, rows: texts.length }];
        const k = entry.model.labels.length;
        const all = new Float32Array(texts.length * k);
        let at = 0;
        await timings.time("infer", async () => {
          for (const run of runs) {
            const logits = (await runSession(loaded.session, run.feeds, [logitsName]))[logitsName];
            if (logits.dims.length !== 2 || logits.dims[1] !== k) {
              throw new RunError(
                `output '${logitsName}' has shape [${logits.dims.join(", ")}]; classify needs [batch, ${k}]`,
              );
            }
            all.set((logits.data as Float32Array).subarray(0, run.rows * k), at);
            at += run.rows * k;
          }
        });
        return classifyLogits(all, texts.length, entry.model.labels);
      },
    );
    const body = { model: entry.model.name, version: served.variant.version, results: served.result };
    return respond(c, body, entry, served, decision, timings);
  }

  r.post("/v1/models/:model/classify", (c) => classify(c, c.get(PINNED_VERSION) ?? null));
  r.post("/v1/models/:model/versions/:version/classify", (c) => classify(c, c.req.param("version") ?? ""));

  // --- routing explanation --------------------------------------------------------------------------------
  r.get("/v1/models/:model/route", async (c) => {
    const entry = await modelOr404(c);
    const query = c.req.query("minAccuracy");
    const requested = query !== undefined ? parseMinAccuracy(query, "minAccuracy") : requestedMinAccuracy(c);
    const cooling = stateOf(c).cooldowns.active(entry.model.id);
    const decision = await decide(c, entry, {
      sla: slaOf(entry.sla),
      requestedMinAccuracy: requested,
      coolingDown: cooling,
    });
    return c.json({
      model: entry.model.name,
      task: entry.model.task,
      policy: `active variants meeting the SLA (accuracy >= max(task minimum, request minimum); with a margin, the lower confidence bound of accuracy minus the most accurate variant's above -margin, paired on the shared eval split's examples, Bonferroni over the variants compared; p50 <= SLA maximum latency (the p50 is onnxruntime-web wasm's, the runtime that serves them, when every active variant has that figure, else onnxruntime-node's for all: see latency); not demoted by live feedback: with at least ${LIVE_MIN_LABELLED} labelled requests from ${LIVE_MIN_UNITS} units served in the last ${stateOf(c).config.liveFeedbackWindowMs / 86_400_000} days (in experiments or routed), a cluster-robust upper bound below the SLA floor or below the best variant's lower bound minus the margin, Bonferroni over the bounds); lowest p50 latency, then fewest parameters; if none qualifies, the most accurate active variant (x-sluice-sla: unmet) unless the SLA is strict (503)`,
      ...decision,
      coolingDown: [...cooling],
    });
  });

  return r;
}

function serveContext(c: Ctx, s: GatewayState, timings: Timings): ServeContext {
  let keepAlive: ServeContext["keepAlive"];
  try {
    const ctx = c.executionCtx;
    keepAlive = (work) => ctx.waitUntil(work);
  } catch {
    keepAlive = undefined; // app.request() in tests has no ExecutionContext
  }
  return {
    sessions: s.sessions,
    cooldowns: s.cooldowns,
    bucket: c.env.ARTIFACTS,
    timings,
    keepAlive,
    requestId: requestIdOf(c),
  };
}

/** `x-sluice-min-accuracy`: a number in [0, 1] or absent. */
function requestedMinAccuracy(c: Ctx): number | undefined {
  const header = c.req.header("x-sluice-min-accuracy");
  return header === undefined ? undefined : parseMinAccuracy(header, "x-sluice-min-accuracy");
}

function parseMinAccuracy(value: string, field: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0 || n > 1) {
    throw invalid(`'${value}' is not an accuracy between 0 and 1`, field);
  }
  return n;
}

/** Runs a session; onnxruntime failures become RunError (the fallback decides whose fault they are). */
async function runSession(
  session: InferenceSession,
  feeds: Feed[],
  outputs: string[],
): Promise<InferenceSession.ReturnType> {
  const { loadOrt } = await import("./ort-wasm");
  const ort = loadOrt();
  const inputs: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const f of feeds) inputs[f.name] = new ort.Tensor(f.type, f.data as never, f.dims);
  try {
    return await ortLock.run(() => session.run(inputs, outputs));
  } catch (err) {
    throw new RunError(messageOf(err));
  }
}

/**
 * `x-sluice-request-id` of a request served outside an experiment: a feedback token (feedback-token.ts) naming the
 * variant that answered and its prediction, so a label posted for it counts as that variant's live evidence.
 * Only for a response with exactly one prediction (nothing else can be scored), and not for an experiment's
 * request (its middleware sets its own id, recorded with the exposure). Null when ADMIN_TOKEN is not set.
 */
async function feedbackToken(c: Ctx, body: unknown, entry: CatalogEntry, v: VariantRow) {
  const secret = c.env.ADMIN_TOKEN;
  if (!secret || c.get(PINNED_VERSION) !== undefined) return null;
  const label = predictedLabel(body, entry.model.labels);
  const predicted = label === null ? -1 : entry.model.labels.indexOf(label);
  if (predicted < 0) return null;
  return mintFeedbackToken(
    secret,
    {
      model: entry.model.name,
      version: v.version,
      predicted,
      servedAt: Math.floor(Date.now() / 1000),
      unit: await unitDigest(c.req.header(ROUTED_UNIT_HEADER)),
    },
    { modelId: entry.model.id, variantId: v.id },
  );
}

async function respond<T>(
  c: Ctx,
  body: unknown,
  entry: CatalogEntry,
  served: Served<T>,
  decision: RouteDecision | null,
  timings: Timings,
): Promise<Response> {
  const v = served.variant;
  const token = await feedbackToken(c, body, entry, v);
  // One Response from one plain record: the middleware's queued headers (request id, the API-key check's
  // server-timing entry), then the route's (src/http/response-headers.ts says why not c.header()).
  const headers = takeHeaders(c);
  headers[REQUEST_ID_HEADER] ??= requestIdOf(c);
  headers["content-type"] = "application/json";
  if (token) headers[FEEDBACK_TOKEN_HEADER] = token;
  headers["x-sluice-variant"] = `${entry.model.name}@${v.version}`;
  headers["x-sluice-sparsity"] = String(v.sparsity);
  headers["x-sluice-precision"] = v.precision ?? "fp32";
  if (decision) headers["x-sluice-sla"] = decision.meetsSla[v.version] ? "met" : "unmet";
  if (served.attempts.length > 0) {
    headers["x-sluice-fallback"] = served.attempts.map((a) => `${a.version}:${a.stage}`).join(", ");
  }
  headers["x-sluice-session"] = served.cached ? "warm" : "cold";
  const stages = timings.header();
  headers["server-timing"] = headers["server-timing"] ? `${headers["server-timing"]}, ${stages}` : stages;
  return new Response(JSON.stringify(body), { headers });
}
