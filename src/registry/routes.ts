/**
 * Registry HTTP API (Hono), mounted by the gateway Worker. Reads are open; writes need the admin bearer
 * token. See docs/registry-api.md for request/response examples.
 */
import { type Context, Hono } from "hono";
import { DEFAULT_SLA_CONFIDENCE } from "../core/evidence";
import { readFormBody } from "../http/body";
import { httpErrorHandler } from "../http/errors";
import { type AuthBindings, apiKeyCache, mintApiKey, requireAdmin } from "./auth";
import { registryConfig } from "./config";
import { conflict, notFound } from "./errors";
import { assertVariantNotInRunningExperiment } from "./experiment-guard";
import { publishesRegistryChange } from "./invalidation";
import type { ModelRow } from "./schema";
import {
  aliasesOfVariant,
  countArtifactReferences,
  deleteAlias,
  deleteVariantRow,
  findModel,
  findTaskSla,
  findVariant,
  insertApiKey,
  insertModel,
  isUniqueViolation,
  listAliases,
  listApiKeys,
  listModels,
  listVariants,
  type RegistryDb,
  registryDb,
  revokeApiKey,
  setVariantStatus,
  upsertAlias,
  upsertTaskSla,
} from "./store";
import { multipartUpload, type RegistryHooks, readUploadParts, storeVariant, validateUpload } from "./upload";
import {
  AliasName,
  CreateKeyBody,
  CreateModelBody,
  jsonInput,
  KeyId,
  ListVariantsQuery,
  ModelName,
  PatchVariantBody,
  PutAliasBody,
  PutSlaBody,
  parseParam,
  queryInput,
  TaskName,
  Version,
} from "./validation";
import { aliasView, apiKeyView, modelView, slaView, variantView } from "./views";

export interface RegistryOptions {
  /** Largest accepted variant upload; default: `maxUploadBytes` of the registry's config (MAX_UPLOAD_MB). */
  maxUploadBytes?: number;
  hooks?: RegistryHooks;
}

/** The bindings and vars the registry routes read; the Worker's Env (src/worker/env.ts) is a superset. */
export interface RegistryBindings extends AuthBindings {
  DB: D1Database;
  ARTIFACTS: R2Bucket;
  /** Largest accepted variant upload in MB (default 100). */
  MAX_UPLOAD_MB?: string;
}

type RegistryEnv = { Bindings: RegistryBindings; Variables: { db: RegistryDb } };
type Ctx = Context<RegistryEnv>;

/**
 * The request's Drizzle handle, made on first use. Not a `use("/v1/*")` middleware: once mounted on the
 * gateway, that would also run for the gateway's own /v1 routes.
 */
function db(c: Ctx): RegistryDb {
  let handle = c.get("db");
  if (!handle) {
    handle = registryDb(c.env.DB);
    c.set("db", handle);
  }
  return handle;
}

async function modelOr404(c: Ctx): Promise<ModelRow> {
  const name = parseParam(ModelName, c.req.param("model"), "model");
  const model = await findModel(db(c), name);
  if (!model) throw notFound(`model '${name}'`, "model");
  return model;
}

async function variantOr404(c: Ctx, model: ModelRow) {
  const version = parseParam(Version, c.req.param("version"), "version");
  const variant = await findVariant(db(c), model.id, version);
  if (!variant) throw notFound(`variant ${model.name}@${version}`, "version");
  return variant;
}

export function createRegistryRoutes(options: RegistryOptions = {}) {
  // One chain, so the returned app's type carries every route (path, method, input, JSON output): the type
  // `RegistryApp` below, from which the CLI's `hono/client` is typed.
  return (
    new Hono<RegistryEnv>()
      .onError(httpErrorHandler)

      // --- models -------------------------------------------------------------------------------------------
      .post("/v1/models", requireAdmin, publishesRegistryChange, jsonInput(CreateModelBody), async (c) => {
        const body = c.req.valid("json");
        const existing = await findModel(db(c), body.name);
        const same = (m: ModelRow) =>
          m.task === body.task &&
          JSON.stringify(m.labels) === JSON.stringify(body.labels) &&
          JSON.stringify(m.io) === JSON.stringify(body.io);
        // Creating an identical model again is a no-op (200), so `sluice push` can always ensure the model exists.
        if (existing) {
          if (same(existing)) return c.json({ model: modelView(existing) }, 200);
          throw conflict(
            "model_exists",
            `model '${body.name}' exists with a different task, labels or io`,
            "name",
          );
        }
        try {
          return c.json({ model: modelView(await insertModel(db(c), body)) }, 201);
        } catch (err) {
          if (!isUniqueViolation(err)) throw err;
          const winner = await findModel(db(c), body.name);
          if (winner && same(winner)) return c.json({ model: modelView(winner) }, 200);
          throw conflict("model_exists", `model '${body.name}' already exists`, "name");
        }
      })

      .get("/v1/models", async (c) => {
        const rows = await listModels(db(c));
        return c.json({ models: rows.map(modelView) });
      })

      .get("/v1/models/:model", async (c) => {
        const model = await modelOr404(c);
        const aliases = await listAliases(db(c), model.id);
        return c.json({ model: modelView(model), aliases: aliases.map((a) => aliasView(model, a)) });
      })

      // --- variants -----------------------------------------------------------------------------------------
      .post(
        "/v1/models/:model/variants",
        requireAdmin,
        publishesRegistryChange,
        multipartUpload,
        async (c) => {
          const model = await modelOr404(c);
          const form = await readFormBody(c, options.maxUploadBytes ?? registryConfig(c.env).maxUploadBytes);
          const upload = await validateUpload(model, await readUploadParts(form));
          const { variant, created } = await storeVariant(
            c.env.ARTIFACTS,
            db(c),
            model,
            upload,
            options.hooks,
          );
          return c.json({ variant: variantView(model, variant), created }, created ? 201 : 200);
        },
      )

      .get("/v1/models/:model/variants", queryInput(ListVariantsQuery), async (c) => {
        const model = await modelOr404(c);
        const filters = c.req.valid("query");
        const rows = await listVariants(db(c), model.id, filters);
        return c.json({ variants: rows.map((v) => variantView(model, v)) });
      })

      .get("/v1/models/:model/variants/:version", async (c) => {
        const model = await modelOr404(c);
        const variant = await variantOr404(c, model);
        return c.json({ variant: variantView(model, variant, { manifest: true }) });
      })

      .patch(
        "/v1/models/:model/variants/:version",
        requireAdmin,
        publishesRegistryChange,
        jsonInput(PatchVariantBody),
        async (c) => {
          const { status } = c.req.valid("json");
          const model = await modelOr404(c);
          const variant = await variantOr404(c, model);
          if (status === "retired") {
            await assertVariantNotInRunningExperiment(
              c.env.DB,
              variant.id,
              `${model.name}@${variant.version}`,
              "retired",
            );
          }
          const updated = await setVariantStatus(db(c), variant.id, status);
          return c.json({ variant: variantView(model, updated) });
        },
      )

      .delete("/v1/models/:model/variants/:version", requireAdmin, publishesRegistryChange, async (c) => {
        const model = await modelOr404(c);
        const variant = await variantOr404(c, model);
        const label = `${model.name}@${variant.version}`;
        await assertVariantNotInRunningExperiment(c.env.DB, variant.id, label, "deleted");
        if (variant.status !== "retired") {
          throw conflict(
            "variant_not_retired",
            `${label} is ${variant.status}; retire it first (PATCH status "retired")`,
            "status",
          );
        }
        const pinned = await aliasesOfVariant(db(c), variant.id);
        if (pinned.length > 0) {
          const names = pinned.map((a) => a.alias).join(", ");
          throw conflict(
            "variant_aliased",
            `${label} is the target of alias(es) ${names}; move them first`,
            "alias",
          );
        }
        try {
          await deleteVariantRow(db(c), variant.id);
        } catch (err) {
          // aliases.variant_id is ON DELETE RESTRICT: an alias created since the check above wins.
          if (
            /FOREIGN KEY constraint failed/i.test(String(err instanceof Error ? (err.cause ?? err) : err))
          ) {
            throw conflict("variant_aliased", `${label} just became the target of an alias`, "alias");
          }
          throw err;
        }
        // Artifacts are shared by content: delete an object only when no remaining variant references it.
        const deletedArtifacts: string[] = [];
        for (const key of [variant.artifactKey, variant.tokenizerKey]) {
          if (key && (await countArtifactReferences(db(c), key)) === 0) {
            await c.env.ARTIFACTS.delete(key);
            deletedArtifacts.push(key);
          }
        }
        return c.json({ deleted: { model: model.name, version: variant.version }, deletedArtifacts });
      })

      // --- aliases ------------------------------------------------------------------------------------------
      .get("/v1/models/:model/aliases", async (c) => {
        const model = await modelOr404(c);
        const rows = await listAliases(db(c), model.id);
        return c.json({ aliases: rows.map((a) => aliasView(model, a)) });
      })

      .get("/v1/models/:model/aliases/:alias", async (c) => {
        const model = await modelOr404(c);
        const name = parseParam(AliasName, c.req.param("alias"), "alias");
        const found = (await listAliases(db(c), model.id)).find((a) => a.alias === name);
        if (!found) throw notFound(`alias '${name}' of model '${model.name}'`, "alias");
        return c.json({ alias: aliasView(model, found) });
      })

      .put(
        "/v1/models/:model/aliases/:alias",
        requireAdmin,
        publishesRegistryChange,
        jsonInput(PutAliasBody),
        async (c) => {
          const { version } = c.req.valid("json");
          const model = await modelOr404(c);
          const name = parseParam(AliasName, c.req.param("alias"), "alias");
          const variant = await findVariant(db(c), model.id, version);
          if (!variant) throw notFound(`variant ${model.name}@${version}`, "version");
          if (variant.status === "retired") {
            throw conflict(
              "variant_retired",
              `${model.name}@${version} is retired and cannot be aliased`,
              "version",
            );
          }
          await upsertAlias(db(c), model.id, name, variant.id);
          const saved = (await listAliases(db(c), model.id)).find((a) => a.alias === name)!;
          return c.json({ alias: aliasView(model, saved) });
        },
      )

      .delete("/v1/models/:model/aliases/:alias", requireAdmin, publishesRegistryChange, async (c) => {
        const model = await modelOr404(c);
        const name = parseParam(AliasName, c.req.param("alias"), "alias");
        if (!(await deleteAlias(db(c), model.id, name))) {
          throw notFound(`alias '${name}' of model '${model.name}'`, "alias");
        }
        return c.json({ deleted: { model: model.name, alias: name } });
      })

      // --- task SLAs ----------------------------------------------------------------------------------------
      .put("/v1/tasks/:task/sla", requireAdmin, publishesRegistryChange, jsonInput(PutSlaBody), async (c) => {
        const body = c.req.valid("json");
        const task = parseParam(TaskName, c.req.param("task"), "task");
        const row = await upsertTaskSla(db(c), {
          task,
          metric: body.metric,
          min: body.min ?? 0,
          margin: body.margin ?? null,
          confidence: body.margin === undefined ? null : (body.confidence ?? DEFAULT_SLA_CONFIDENCE),
          maxLatencyMs: body.maxLatencyMs ?? null,
          strict: body.strict ?? false,
        });
        return c.json({ sla: slaView(row) });
      })

      .get("/v1/tasks/:task/sla", async (c) => {
        const task = parseParam(TaskName, c.req.param("task"), "task");
        const row = await findTaskSla(db(c), task);
        if (!row) throw notFound(`SLA for task '${task}'`, "task");
        return c.json({ sla: slaView(row) });
      })

      // --- API keys (for inference clients) -------------------------------------------------------------------
      .post("/v1/keys", requireAdmin, jsonInput(CreateKeyBody), async (c) => {
        const { scopes, models } = c.req.valid("json");
        const minted = await mintApiKey();
        const row = await insertApiKey(db(c), {
          keyHash: minted.keyHash,
          prefix: minted.prefix,
          scopes,
          models: models ?? null,
        });
        // The only time the key itself is ever returned.
        return c.json({ key: minted.key, ...apiKeyView(row) }, 201);
      })

      .get("/v1/keys", requireAdmin, async (c) => {
        return c.json({ keys: (await listApiKeys(db(c))).map(apiKeyView) });
      })

      .delete("/v1/keys/:id", requireAdmin, async (c) => {
        const id = parseParam(KeyId, c.req.param("id"), "id");
        const row = await revokeApiKey(db(c), id);
        if (!row) throw notFound(`API key ${id}`, "id");
        apiKeyCache.forget(row.keyHash); // at once here; elsewhere at their next generation poll (revokeApiKey bumps it)
        return c.json({ key: apiKeyView(row) });
      })
  );
}

/** The registry routes' type: `hc<RegistryApp>(url)` (hono/client) is a typed client of these routes. */
export type RegistryApp = ReturnType<typeof createRegistryRoutes>;
