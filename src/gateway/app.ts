import { Hono } from "hono";
import { createRegistryRoutes } from "../registry/routes";
import type { Env } from "./env";
import { createInferenceRoutes, invalidateCatalogsAfterWrites } from "./inference-routes";

/** The gateway: registry routes, inference routes and health, on Web-standard Request/Response. */
export function createApp() {
  const app = new Hono<{ Bindings: Env }>();
  app.get("/v2/health/live", (c) => c.json({ live: true }));
  app.use("/v1/*", invalidateCatalogsAfterWrites);
  app.route("/", createRegistryRoutes());
  app.route("/", createInferenceRoutes());
  return app;
}
