/**
 * Experiment HTTP API (Hono), mounted by the gateway before the inference routes:
 * - `/v1/experiments...`: create (admin), list, show, edit a draft, start/stop/promote (admin), results, and
 *   the arm a unit is assigned to;
 * - `POST /v1/feedback`: the true label of a served request;
 * - the serving hook: routed `infer`/`classify` requests of a model with a running experiment are served by
 *   the assigned arm's variant (see serving.ts); other requests fall through to the inference routes.
 * Errors use the registry's `{ error: { code, message, field? } }`.
 */
import { type Context, Hono, type Next } from "hono";
import type { z } from "zod";
import { BODY_LIMITS } from "../../http/body";
import { httpErrorHandler } from "../../http/errors";
import { keyAllowsModel, requireAdmin, verifiedKeyOf } from "../../registry/auth";
import { ApiError, conflict, notFound } from "../../registry/errors";
import { publishesRegistryChange } from "../../registry/invalidation";
import { findModel, findVariant, isUniqueViolation, registryDb } from "../../registry/store";
import { parseParam, parseQuery, readJsonBody } from "../../registry/validation";
import { configFromEnv } from "../config";
import type { Env } from "../env";
import { isFeedbackToken, parseFeedbackToken, verifyFeedbackToken } from "../feedback-token";
import { PINNED_VERSION, type ServingVariables } from "../serving-variables";
import { assignRequest } from "./assign";
import { armLabel, computeResults } from "./results";
import { armName, experimentIdOfRequest, experimentOverride, finishExperimentResponse } from "./serving";
import {
  applyPromotion,
  type ExperimentDb,
  type ExperimentWithArms,
  experimentDb,
  findExperiment,
  findExposure,
  insertExperiment,
  insertFeedback,
  insertRoutedFeedback,
  listExperiments,
  replaceArms,
  updateExperiment,
} from "./store";
import {
  CreateExperimentBody,
  ExperimentId,
  FeedbackBody,
  ListExperimentsQuery,
  PatchExperimentBody,
  PromoteBody,
} from "./validation";

type ExperimentEnv = { Bindings: Env; Variables: { db: ExperimentDb } };
type Ctx = Context<ExperimentEnv>;

/** Experiment and feedback bodies, read by the one body reader under their limit (src/http/body.ts). */
const readBody = <T extends z.ZodType>(c: Ctx, schema: T) =>
  readJsonBody(c, schema, BODY_LIMITS.experimentJsonBytes);

/** The experiment as the API shows it (internal ids of models and variants never leave the Worker). */
export function experimentView(e: ExperimentWithArms) {
  const x = e.experiment;
  return {
    id: x.id,
    model: e.model.name,
    task: e.model.task,
    name: x.name,
    status: x.status,
    unit: x.unit,
    seed: x.seed,
    primaryMetric: x.primaryMetric,
    guardrails: x.guardrails,
    alpha: x.alpha,
    design: { kind: x.design, ...(x.plannedUnits ? { plannedUnits: x.plannedUnits } : {}) },
    nonInferiorityMargin: x.nonInferiorityMargin,
    controlArm: armName(x.controlArm),
    arms: e.arms.map((a) => ({
      arm: armName(a.arm),
      index: a.arm,
      label: armLabel(a.arm, a.version),
      version: a.version,
      weight: a.weight,
      variantStatus: a.variant?.status ?? "deleted",
      sparsity: a.variant?.sparsity ?? null,
      precision: a.variant?.precision ?? null,
      accuracy: a.variant?.accuracy ?? null,
      latencyP50Ms: a.variant?.latencyP50Ms ?? null,
    })),
    winner: x.winnerArm !== null ? armName(x.winnerArm) : null,
    createdAt: x.createdAt,
    startedAt: x.startedAt,
    stoppedAt: x.stoppedAt,
  };
}

/** Looks up each arm's variant: it must exist and be active or staged (422 naming `arms[i].version`). */
async function resolveArms(
  c: Ctx,
  modelId: number,
  modelName: string,
  arms: { version: number; weight: number }[],
) {
  const rdb = registryDb(c.env.DB);
  return Promise.all(
    arms.map(async (a, i) => {
      const variant = await findVariant(rdb, modelId, a.version);
      if (!variant)
        throw new ApiError(
          422,
          "unknown_variant",
          `${modelName}@${a.version} does not exist`,
          `arms.${i}.version`,
        );
      if (variant.status === "retired") {
        throw new ApiError(
          422,
          "variant_retired",
          `${modelName}@${a.version} is retired`,
          `arms.${i}.version`,
        );
      }
      return { variantId: variant.id, version: a.version, weight: a.weight };
    }),
  );
}

/** Random hash seed for a new experiment (never changes afterwards, so assignments never move). */
function newSeed(): string {
  return [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function createExperimentRoutes() {
  const r = new Hono<ExperimentEnv>();
  r.onError(httpErrorHandler);
  const withDb = async (c: Ctx, next: Next) => {
    c.set("db", experimentDb(c.env.DB));
    await next();
  };
  r.use("/v1/experiments", withDb);
  r.use("/v1/experiments/*", withDb);
  r.use("/v1/feedback", withDb);

  async function experimentOr404(c: Ctx): Promise<ExperimentWithArms> {
    const id = parseParam(ExperimentId, c.req.param("id"), "id");
    const found = await findExperiment(c.var.db, id);
    if (!found) throw notFound(`experiment ${id}`, "id");
    return found;
  }

  const reload = async (c: Ctx, id: number) => experimentView((await findExperiment(c.var.db, id))!);

  // --- create, list, show, edit ---------------------------------------------------------------------------
  r.post("/v1/experiments", requireAdmin, async (c) => {
    const body = await readBody(c, CreateExperimentBody);
    const model = await findModel(registryDb(c.env.DB), body.model);
    if (!model) throw notFound(`model '${body.model}'`, "model");
    const arms = await resolveArms(c, model.id, model.name, body.arms);
    const id = await insertExperiment(c.var.db, {
      modelId: model.id,
      name: body.name,
      seed: newSeed(),
      unit: body.unit,
      primaryMetric: body.primaryMetric,
      guardrails: body.guardrails,
      alpha: body.alpha,
      design: body.design.kind,
      plannedUnits: body.design.plannedUnits ?? null,
      nonInferiorityMargin: body.nonInferiorityMargin,
      controlArm: body.controlArm,
      arms,
    });
    return c.json({ experiment: await reload(c, id) }, 201);
  });

  r.get("/v1/experiments", async (c) => {
    const q = parseQuery(ListExperimentsQuery, c.req.query());
    let modelId: number | undefined;
    if (q.model) {
      const model = await findModel(registryDb(c.env.DB), q.model);
      if (!model) throw notFound(`model '${q.model}'`, "model");
      modelId = model.id;
    }
    const rows = await listExperiments(c.var.db, { modelId, status: q.status });
    return c.json({ experiments: rows.map(experimentView) });
  });

  r.get("/v1/experiments/:id", async (c) => c.json({ experiment: experimentView(await experimentOr404(c)) }));

  r.patch("/v1/experiments/:id", requireAdmin, publishesRegistryChange, async (c) => {
    const e = await experimentOr404(c);
    const body = await readBody(c, PatchExperimentBody);
    if (e.experiment.status !== "draft") {
      throw conflict(
        "experiment_frozen",
        `experiment ${e.experiment.id} is ${e.experiment.status}: arms and weights are frozen once started; create a new experiment`,
        body.arms ? "arms" : "name",
      );
    }
    if (body.arms) {
      if (e.experiment.controlArm >= body.arms.length) {
        throw new ApiError(
          422,
          "invalid_body",
          `arms: the control arm ${e.experiment.controlArm} would not exist`,
          "arms",
        );
      }
      await replaceArms(c.var.db, e.experiment.id, await resolveArms(c, e.model.id, e.model.name, body.arms));
    }
    if (body.name) await updateExperiment(c.var.db, e.experiment.id, { name: body.name });
    return c.json({ experiment: await reload(c, e.experiment.id) });
  });

  // --- lifecycle ------------------------------------------------------------------------------------------
  r.post("/v1/experiments/:id/start", requireAdmin, publishesRegistryChange, async (c) => {
    const e = await experimentOr404(c);
    const x = e.experiment;
    if (x.status !== "draft") {
      throw conflict(
        "experiment_not_draft",
        `experiment ${x.id} is ${x.status}; only a draft can start`,
        "status",
      );
    }
    e.arms.forEach((a, i) => {
      if (!a.variant || a.variant.status === "retired") {
        throw conflict(
          "variant_unavailable",
          `arm ${armName(a.arm)}: ${e.model.name}@${a.version} is ${a.variant ? "retired" : "deleted"}`,
          `arms.${i}.version`,
        );
      }
    });
    try {
      await updateExperiment(c.var.db, x.id, { status: "running", startedAt: new Date().toISOString() });
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const [other] = await listExperiments(c.var.db, { modelId: e.model.id, status: "running" });
      throw conflict(
        "experiment_running",
        `model '${e.model.name}' already has running experiment ${other ? `#${other.experiment.id} '${other.experiment.name}'` : ""}; stop it first`,
        "model",
      );
    }
    return c.json({ experiment: await reload(c, x.id) });
  });

  r.post("/v1/experiments/:id/stop", requireAdmin, publishesRegistryChange, async (c) => {
    const e = await experimentOr404(c);
    const x = e.experiment;
    if (x.status !== "running") {
      throw conflict(
        "experiment_not_running",
        `experiment ${x.id} is ${x.status}; only a running one can stop`,
        "status",
      );
    }
    await updateExperiment(c.var.db, x.id, { status: "stopped", stoppedAt: new Date().toISOString() });
    return c.json({ experiment: await reload(c, x.id) });
  });

  /**
   * Promote: the winning arm's variant becomes `active` and the target of alias `production` (or `alias`); the
   * other arms' variants go back to `staged` (out of SLA routing, still pinnable, not retired: retiring is a
   * separate, explicit decision). The winner is the analysis's recommendation ("promote" -> that arm,
   * "keep-control" -> the control arm), or the arm given in the body (a human override). Running experiments
   * stop as they are promoted.
   */
  r.post("/v1/experiments/:id/promote", requireAdmin, publishesRegistryChange, async (c) => {
    const e = await experimentOr404(c);
    const x = e.experiment;
    const body = await readBody(c, PromoteBody);
    if (x.status !== "running" && x.status !== "stopped") {
      throw conflict(
        "experiment_not_promotable",
        `experiment ${x.id} is ${x.status}; only a running or stopped one can be promoted`,
        "status",
      );
    }
    let winner: number;
    let reason: string;
    if (body.arm !== undefined) {
      winner = typeof body.arm === "number" ? body.arm : body.arm.charCodeAt(0) - 65;
      if (winner >= e.arms.length)
        throw new ApiError(422, "invalid_body", `arm: experiment ${x.id} has ${e.arms.length} arms`, "arm");
      reason = "chosen by the caller";
    } else {
      const { results } = await computeResults(c.var.db, c.env.DB, e);
      const { action, arm } = results.decision;
      if (action === "promote" && arm !== null) winner = arm;
      else if (action === "keep-control") winner = x.controlArm;
      else {
        throw conflict(
          "no_winner",
          `the analysis does not name a winner (${action}): ${results.recommendation} Pass { "arm": "<letter>" } to promote anyway.`,
          "arm",
        );
      }
      reason = results.recommendation;
    }
    const winning = e.arms[winner];
    if (!winning.variant || winning.variant.status === "retired") {
      throw conflict(
        "variant_unavailable",
        `${e.model.name}@${winning.version} is ${winning.variant ? "retired" : "deleted"}`,
        "arm",
      );
    }
    await applyPromotion(c.var.db, {
      experimentId: x.id,
      modelId: e.model.id,
      winnerArm: winner,
      winnerVariantId: winning.variant.id,
      loserVariantIds: e.arms
        .filter((a) => a.arm !== winner && a.variant && a.variant.status !== "retired")
        .map((a) => a.variant!.id),
      alias: body.alias,
    });
    return c.json({
      experiment: await reload(c, x.id),
      promoted: { arm: armName(winner), version: winning.version, alias: body.alias, reason },
    });
  });

  // --- results and assignment -----------------------------------------------------------------------------
  r.get("/v1/experiments/:id/results", async (c) => {
    const e = await experimentOr404(c);
    const view = await computeResults(c.var.db, c.env.DB, e);
    return c.json({ experiment: experimentView(e), ...view });
  });

  /** Which arm a unit gets (sticky: the same answer in every isolate, for the life of the experiment). */
  r.get("/v1/experiments/:id/assignment", async (c) => {
    const e = await experimentOr404(c);
    const unit = c.req.query("unit");
    if (!unit) throw new ApiError(400, "bad_request", "query parameter 'unit' is required", "unit");
    const { arm, bucket } = assignRequest(
      { seed: e.experiment.seed, arms: e.arms.map((a) => ({ weight: a.weight })) },
      unit,
    );
    return c.json({
      experiment: e.experiment.id,
      unit,
      arm: armName(arm),
      index: arm,
      version: e.arms[arm].version,
      bucket,
    });
  });

  // --- feedback -------------------------------------------------------------------------------------------
  /**
   * Records the true label of a served request. Two kinds of request id:
   * - an experiment's (`e<id>-…`): feedback can overtake its exposure (which travels through the queue), so it
   *   is stored by request id and joined at analysis time; the experiment named in the id must exist (404);
   * - a routed request's feedback token (`r1.…`, src/gateway/feedback-token.ts): its MAC must verify against the
   *   model and variant it names (404 otherwise: a forged or altered token, or one whose variant was deleted),
   *   and it must have been served within the live-evidence window (422 `request_expired`).
   * The label must be one of the model's (422). The first label for a request wins; repeating it is a no-op
   * (200), contradicting it is a 409.
   */
  async function routedFeedbackOf(c: Ctx, requestId: string, label: string) {
    const claim = parseFeedbackToken(requestId);
    const secret = c.env.ADMIN_TOKEN;
    const unknown = () => notFound(`request id '${requestId.slice(0, 160)}'`, "requestId");
    if (!claim || !secret) throw unknown();
    const rdb = registryDb(c.env.DB);
    const model = await findModel(rdb, claim.model);
    const variant = model ? await findVariant(rdb, model.id, claim.version) : undefined;
    if (!model || !variant) throw unknown();
    if (!(await verifyFeedbackToken(secret, claim, { modelId: model.id, variantId: variant.id }))) {
      throw unknown();
    }
    const predicted = model.labels[claim.predicted];
    if (predicted === undefined) throw unknown();
    const key = verifiedKeyOf(c);
    if (key && !keyAllowsModel(key, model.name)) {
      throw new ApiError(403, "forbidden", `this API key may not use model '${model.name}'`, "model");
    }
    if (!model.labels.includes(label)) {
      throw new ApiError(422, "unknown_label", `label must be one of ${model.labels.join(", ")}`, "label");
    }
    const windowMs = configFromEnv(c.env).liveFeedbackWindowMs;
    if (claim.servedAt * 1000 < Date.now() - windowMs) {
      throw new ApiError(
        422,
        "request_expired",
        `the request was served more than ${windowMs / 86_400_000} days ago, outside the live-evidence window`,
        "requestId",
      );
    }
    const { stored, created } = await insertRoutedFeedback(c.var.db, {
      nonce: claim.nonce,
      modelId: model.id,
      variantId: variant.id,
      version: variant.version,
      unitId: claim.unit,
      predicted,
      label,
      servedAt: new Date(claim.servedAt * 1000).toISOString(),
    });
    if (stored.label !== label) {
      throw conflict(
        "feedback_exists",
        `request '${requestId}' already has label '${stored.label}'`,
        "label",
      );
    }
    return c.json(
      {
        feedback: {
          requestId,
          label: stored.label,
          model: model.name,
          version: variant.version,
          servedAt: stored.servedAt,
          correct: stored.predicted === stored.label,
        },
      },
      created ? 201 : 200,
    );
  }

  r.post("/v1/feedback", async (c) => {
    const body = await readBody(c, FeedbackBody);
    if (isFeedbackToken(body.requestId)) return routedFeedbackOf(c, body.requestId, body.label);
    const experimentId = experimentIdOfRequest(body.requestId);
    const e = experimentId !== null ? await findExperiment(c.var.db, experimentId) : undefined;
    if (!e) throw notFound(`request id '${body.requestId}'`, "requestId");
    const key = verifiedKeyOf(c);
    if (key && !keyAllowsModel(key, e.model.name)) {
      throw new ApiError(403, "forbidden", `this API key may not use model '${e.model.name}'`, "model");
    }
    if (!e.model.labels.includes(body.label)) {
      throw new ApiError(422, "unknown_label", `label must be one of ${e.model.labels.join(", ")}`, "label");
    }
    const { stored, created } = await insertFeedback(c.var.db, {
      requestId: body.requestId,
      experimentId: e.experiment.id,
      label: body.label,
    });
    if (stored.label !== body.label) {
      throw conflict(
        "feedback_exists",
        `request '${body.requestId}' already has label '${stored.label}'`,
        "label",
      );
    }
    const exposure = await findExposure(c.var.db, body.requestId);
    return c.json(
      {
        feedback: {
          requestId: stored.requestId,
          label: stored.label,
          experiment: e.experiment.id,
          // "pending": the exposure is still in the queue; it joins when it lands
          exposure: exposure ? "recorded" : "pending",
          ...(exposure ? { arm: armName(exposure.arm), correct: exposure.predicted === stored.label } : {}),
        },
      },
      created ? 201 : 200,
    );
  });

  // --- serving hook ---------------------------------------------------------------------------------------
  // Middleware in front of the routed infer/classify handlers (mounted after these routes): it picks the arm,
  // pins its version on the context and lets the same request go on to the inference handler, so the app
  // runs once per request (no re-dispatch through app.fetch).
  const intercept = async (c: Context<{ Bindings: Env; Variables: ServingVariables }>, next: Next) => {
    const model = c.req.param("model") ?? "";
    let override: Awaited<ReturnType<typeof experimentOverride>> = null;
    try {
      override = await experimentOverride(c, model);
    } catch (err) {
      // An experiment lookup failure must not take serving down: fall back to SLA routing.
      console.error(`experiments: lookup for '${model}' failed; serving without the experiment`, err);
    }
    if (!override) return next();
    c.set(PINNED_VERSION, String(override.version));
    const t0 = performance.now();
    await next();
    c.res = await finishExperimentResponse(c, override, c.res, performance.now() - t0);
  };
  r.post("/v2/models/:model/infer", intercept);
  r.post("/v1/models/:model/classify", intercept);

  return r;
}
