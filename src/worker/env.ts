/**
 * Every binding, var and secret of the Worker (wrangler.toml, `.dev.vars`): the union of what each part reads.
 * Each part declares only its own (RegistryBindings, the gateway's Env and GatewayVars), so no part imports
 * this module and nothing below src/worker/ depends on the assembly.
 */
import type { GatewayVars } from "../gateway/config";
import type { Env as GatewayBindings } from "../gateway/env";
import type { RegistryBindings } from "../registry/routes";

export type Env = GatewayBindings & GatewayVars & RegistryBindings;
