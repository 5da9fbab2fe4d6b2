import { Hono } from "hono";
import { createDashboardRoutes } from "../gateway/dashboard/routes";
import { createExperimentRoutes } from "../gateway/experiments/routes";
import { createInferenceRoutes } from "../gateway/inference-routes";
import { notFoundOrMethodNotAllowed } from "../http/methods";
import { requestId } from "../http/request-id";
import { type ApiKeyCache, requireApiKey } from "../registry/auth";
import { createRegistryRoutes } from "../registry/routes";
import type { Env } from "./env";
import { useOpenApi } from "./openapi";

export interface AppOptions {
  /** API-key cache for this app (tests pass one with their own clock); default: the isolate's. */
  apiKeys?: ApiKeyCache;
}

/** The routes that need an API key, and the scope each needs (src/registry/auth.ts; docs/access-control.md). */
export const API_KEY_ROUTES = [
  ["/v2/models/:model/infer", "infer"],
  ["/v2/models/:model/versions/:version/infer", "infer"],
  ["/v1/models/:model/classify", "infer"],
  ["/v1/models/:model/versions/:version/classify", "infer"],
  ["/v1/models/:model/route", "infer"],
  ["/v1/feedback", "feedback"],
] as const;

/**
 * Puts the API-key check in front of every route of API_KEY_ROUTES. Registered before any route module, so it
 * also runs before the experiment hook that takes over routed infer/classify requests.
 */
export function useApiKeys(app: Hono<{ Bindings: Env }>, options: AppOptions = {}): void {
  for (const [path, scope] of API_KEY_ROUTES) {
    app.use(path, requireApiKey(scope, { cache: options.apiKeys }) as never);
  }
}

/** The gateway: registry, experiment and inference routes, health and the dashboard, on Web-standard Request/Response. */
export function createApp(options: AppOptions = {}) {
  const app = new Hono<{ Bindings: Env }>();
  // First, so every answer (errors included) carries x-request-id and handlers can log with it.
  app.use("*", requestId() as never);
  app.get("/v2/health/live", (c) => c.json({ live: true }));
  useApiKeys(app, options);
  app.route("/", createRegistryRoutes());
  // Before the inference routes: a running experiment takes over the routed infer/classify of its model.
  app.route("/", createExperimentRoutes());
  app.route("/", createInferenceRoutes());
  app.route("/", createDashboardRoutes());
  useOpenApi(app as never);
  app.notFound(notFoundOrMethodNotAllowed(app as never));
  return app;
}
