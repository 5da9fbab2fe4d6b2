import { Hono } from "hono";
import { notFoundOrMethodNotAllowed } from "../http/methods";
import { type ApiKeyCache, requireApiKey } from "../registry/auth";
import { createRegistryRoutes } from "../registry/routes";
import { createDashboardRoutes } from "./dashboard/routes";
import type { Env } from "./env";
import { createExperimentRoutes } from "./experiments/routes";
import { createInferenceRoutes, invalidateCatalogsAfterWrites } from "./inference-routes";

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
  app.get("/v2/health/live", (c) => c.json({ live: true }));
  useApiKeys(app, options);
  app.use("/v1/*", invalidateCatalogsAfterWrites);
  app.route("/", createRegistryRoutes());
  // Before the inference routes: a running experiment takes over the routed infer/classify of its model.
  app.route(
    "/",
    createExperimentRoutes({ dispatch: (request, c) => app.fetch(request, c.env, executionContextOf(c)) }),
  );
  app.route("/", createInferenceRoutes());
  app.route("/", createDashboardRoutes());
  app.notFound(notFoundOrMethodNotAllowed(app as never));
  return app;
}

/** The request's ExecutionContext; absent under `app.request()` in tests. */
function executionContextOf(c: { executionCtx: ExecutionContext }): ExecutionContext | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined;
  }
}
