/**
 * Gateway knobs, read once per isolate from the Worker's vars (wrangler.toml `[vars]` or `.dev.vars`) with one
 * zod schema, the gateway's part of the Worker's configuration (src/worker/env.ts composes every part's). Every
 * var has its default here, so an empty environment works; a var that is set but does not parse is a
 * `503 misconfigured` naming it (src/http/vars.ts), never silently the default.
 */
import { z } from "zod";
import { numberVar, parseVars } from "../http/vars";

export const GatewayVarsSchema = z.object({
  /** Byte budget (MB) of the per-isolate session cache (a Worker isolate has 128 MB in all). */
  SESSION_BUDGET_MB: numberVar(64),
  CATALOG_TTL_MS: numberVar(5_000),
  VARIANT_COOLDOWN_S: numberVar(30),
  MAX_BATCH: numberVar(64, { integer: true, positive: true }),
  MAX_SEQUENCE: numberVar(512, { integer: true, positive: true }),
  CLASSIFY_MAX_TOKENS: numberVar(128, { integer: true, positive: true }),
  MAX_INFER_BODY_MB: numberVar(4, { positive: true }),
  LIVE_FEEDBACK_TTL_S: numberVar(30),
  LIVE_FEEDBACK_WINDOW_DAYS: numberVar(14, { positive: true }),
});

/** The Worker vars this module reads (all optional strings, like every var); kept here, not in env.ts. */
export type GatewayVars = { [K in keyof z.input<typeof GatewayVarsSchema>]?: string };

export interface GatewayConfig {
  /** Byte budget of the per-isolate session cache (a Worker isolate has 128 MB in all). */
  sessionBudgetBytes: number;
  /** How long registry lookups are reused before D1 is asked again. */
  catalogTtlMs: number;
  /** How long a variant that failed to load or run is tried only after every other candidate. */
  cooldownMs: number;
  /** Largest accepted batch (axis 0 of a dynamic input; number of texts to classify). */
  maxBatch: number;
  /** Largest accepted size of any other dynamic axis (sequence length). */
  maxSequence: number;
  /** Tokens per text for `classify` (longer texts are truncated, keeping [SEP]). */
  classifyMaxTokens: number;
  /** Largest accepted inference request body (the limit src/http/body.ts reads it under). */
  maxBodyBytes: number;
  /** How long a model's live-feedback aggregate is reused before D1 is asked again (new feedback shows within it). */
  liveFeedbackTtlMs: number;
  /** Live feedback counts only for requests served within this long before now (docs/routing-evidence.md). */
  liveFeedbackWindowMs: number;
}

const MB = 1024 * 1024;

/** The gateway's configuration from the Worker's env; throws ConfigError naming a var that does not parse. */
export function configFromEnv(env: object): GatewayConfig {
  const v = parseVars(GatewayVarsSchema, env);
  return {
    sessionBudgetBytes: Math.floor(v.SESSION_BUDGET_MB * MB),
    catalogTtlMs: v.CATALOG_TTL_MS,
    cooldownMs: v.VARIANT_COOLDOWN_S * 1000,
    maxBatch: v.MAX_BATCH,
    maxSequence: v.MAX_SEQUENCE,
    classifyMaxTokens: v.CLASSIFY_MAX_TOKENS,
    maxBodyBytes: Math.floor(v.MAX_INFER_BODY_MB * MB),
    liveFeedbackTtlMs: v.LIVE_FEEDBACK_TTL_S * 1000,
    liveFeedbackWindowMs: v.LIVE_FEEDBACK_WINDOW_DAYS * 86_400_000,
  };
}

/** The configuration of an empty environment (every default). */
export const DEFAULT_CONFIG: GatewayConfig = configFromEnv({});
