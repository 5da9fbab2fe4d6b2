import { Hono } from "hono";
import { createDashboardRoutes } from "../gateway/dashboard/routes";
import { createExperimentRoutes } from "../gateway/experiments/routes";
import { createInferenceRoutes } from "../gateway/inference-routes";
import { httpErrorHandler } from "../http/errors";
import { notFoundOrMethodNotAllowed } from "../http/methods";
import { type ReceivedAtVariables, receivedAt } from "../http/received-at";
import { type RequestIdVariables, requestId } from "../http/request-id";
import { type ApiKeyCache, requireApiKey } from "../registry/auth";
import { checkRegistryGeneration, type RegistryGeneration } from "../registry/generation";
import { registrySignal } from "../registry/invalidation";
import { createRegistryRoutes } from "../registry/routes";
import { type Env, workerConfig } from "./env";
import { useOpenApi } from "./openapi";

export interface AppOptions {
  /** API-key cache for this app (tests pass one with their own clock); default: the isolate's. */
  apiKeys?: ApiKeyCache;
  /**
   * The generation watcher, with the signal this app's caches subscribe to; default: the isolate's. A test
   * gives two apps one each to play two isolates sharing one D1.
   */
  generation?: RegistryGeneration;
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

type AppEnv = { Bindings: Env; Variables: RequestIdVariables & ReceivedAtVariables };

/** The gateway: registry, experiment and inference routes, health and the dashboard, on Web-standard Request/Response. */
export function createApp(options: AppOptions = {}) {
  const app = new Hono<AppEnv>();
  app.onError(httpErrorHandler);
  app.use("*", receivedAt); // first: `server-timing` `pre` counts from here
  app.use("*", requestId);
  app.get("/v2/health/live", (c) => c.json({ live: true }));
  // Every var, checked once per isolate before any route runs: a bad one is a 503 naming it, whichever part the
  // request reaches. Nothing is stored on the context: the route modules sit below the assembly and read their
  // part through the same memoised parsers (configFromEnv, registryConfig).
  app.use("*", async (c, next) => {
    workerConfig(c.env);
    await next();
  });
  // Before any cache is read: another isolate's registry write (or key revocation) drops this one's caches.
  app.use("*", checkRegistryGeneration({ generation: options.generation }) as never);
  if (options.apiKeys) {
    const keys = options.apiKeys;
    (options.generation?.signal ?? registrySignal).on(() => keys.forget());
  }
  useApiKeys(app as never, options);
  app.route("/", createRegistryRoutes());
  // Before the inference routes: a running experiment takes over the routed infer/classify of its model.
  app.route("/", createExperimentRoutes());
  app.route("/", createInferenceRoutes({ signal: options.generation?.signal }));
  app.route("/", createDashboardRoutes());
  useOpenApi(app as never);
  app.notFound(notFoundOrMethodNotAllowed(app as never));
  return app;
}
