import { Hono } from "hono";
import { createRegistryRoutes } from "../registry/routes";
import { createDashboardRoutes } from "./dashboard/routes";
import type { Env } from "./env";
import { createExperimentRoutes } from "./experiments/routes";
import { createInferenceRoutes, invalidateCatalogsAfterWrites } from "./inference-routes";

/** The gateway: registry, experiment and inference routes, health and the dashboard, on Web-standard Request/Response. */
export function createApp() {
  const app = new Hono<{ Bindings: Env }>();
  app.get("/v2/health/live", (c) => c.json({ live: true }));
  app.use("/v1/*", invalidateCatalogsAfterWrites);
  app.route("/", createRegistryRoutes());
  // Before the inference routes: a running experiment takes over the routed infer/classify of its model.
  app.route(
    "/",
    createExperimentRoutes({ dispatch: (request, c) => app.fetch(request, c.env, executionContextOf(c)) }),
  );
  app.route("/", createInferenceRoutes());
  app.route("/", createDashboardRoutes());
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
