/**
 * Every binding, var and secret of the Worker (wrangler.toml, `.dev.vars`): the union of what each part reads.
 * Each part declares only its own (RegistryBindings, the gateway's Env and GatewayVars), so no part imports
 * this module and nothing below src/worker/ depends on the assembly.
 *
 * The vars and secrets are also one zod schema, `WorkerVars`, composed of each part's (the defaults are written
 * once, in the part that reads the var) and parsed once per isolate into `WorkerConfig`. The app parses it
 * before any route runs (src/worker/app.ts), so a bad value is a `503 misconfigured` naming the variable on
 * every request, not a silent default or a failure deep in one route.
 */
import { z } from "zod";
import { configFromEnv, type GatewayConfig, type GatewayVars, GatewayVarsSchema } from "../gateway/config";
import type { Env as GatewayBindings } from "../gateway/env";
import { parseVars } from "../http/vars";
import { type RegistryConfig, RegistryVars, registryConfig } from "../registry/config";
import type { RegistryBindings } from "../registry/routes";

export type Env = GatewayBindings & GatewayVars & RegistryBindings;

/** Every var and secret the Worker reads, with its rule and default. */
export const WorkerVars = z.object({ ...GatewayVarsSchema.shape, ...RegistryVars.shape });

export interface WorkerConfig {
  gateway: GatewayConfig;
  registry: RegistryConfig;
}

const parsed = new WeakMap<object, WorkerConfig>();

/** The Worker's configuration, parsed once per env object (one per isolate); ConfigError names a bad var. */
export function workerConfig(env: object): WorkerConfig {
  let config = parsed.get(env);
  if (!config) {
    parseVars(WorkerVars, env); // every var checked at once, whichever part the request reaches
    config = { gateway: configFromEnv(env), registry: registryConfig(env) };
    parsed.set(env, config);
  }
  return config;
}
