/**
 * Gateway knobs, read once per isolate from the Worker's vars (wrangler.toml `[vars]` or `.dev.vars`); every one
 * has a default so an empty environment works.
 */

/** The Worker vars this module reads (all optional strings, like every var); kept here, not in env.ts. */
export interface GatewayVars {
  SESSION_BUDGET_MB?: string;
  CATALOG_TTL_MS?: string;
  VARIANT_COOLDOWN_S?: string;
  MAX_BATCH?: string;
  MAX_SEQUENCE?: string;
  CLASSIFY_MAX_TOKENS?: string;
  MAX_INFER_BODY_MB?: string;
  LIVE_FEEDBACK_TTL_S?: string;
}

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
  /** Largest accepted inference request body. */
  maxBodyBytes: number;
  /** How long a model's live-feedback aggregate is reused before D1 is asked again (new feedback shows within it). */
  liveFeedbackTtlMs: number;
}

export const DEFAULT_CONFIG: GatewayConfig = {
  sessionBudgetBytes: 64 * 1024 * 1024,
  catalogTtlMs: 5_000,
  cooldownMs: 30_000,
  maxBatch: 64,
  maxSequence: 512,
  classifyMaxTokens: 128,
  maxBodyBytes: 4 * 1024 * 1024,
  liveFeedbackTtlMs: 30_000,
};

/** A non-negative number from a var, or the default when the var is unset, empty or not such a number. */
function nonNegative(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value.trim() !== "" && Number.isFinite(n) && n >= 0 ? n : fallback;
}

export function configFromEnv(env: GatewayVars): GatewayConfig {
  const d = DEFAULT_CONFIG;
  const mb = 1024 * 1024;
  return {
    sessionBudgetBytes: nonNegative(env.SESSION_BUDGET_MB, d.sessionBudgetBytes / mb) * mb,
    catalogTtlMs: nonNegative(env.CATALOG_TTL_MS, d.catalogTtlMs),
    cooldownMs: nonNegative(env.VARIANT_COOLDOWN_S, d.cooldownMs / 1000) * 1000,
    maxBatch: Math.floor(nonNegative(env.MAX_BATCH, d.maxBatch)),
    maxSequence: Math.floor(nonNegative(env.MAX_SEQUENCE, d.maxSequence)),
    classifyMaxTokens: Math.floor(nonNegative(env.CLASSIFY_MAX_TOKENS, d.classifyMaxTokens)),
    maxBodyBytes: nonNegative(env.MAX_INFER_BODY_MB, d.maxBodyBytes / mb) * mb,
    liveFeedbackTtlMs: nonNegative(env.LIVE_FEEDBACK_TTL_S, d.liveFeedbackTtlMs / 1000) * 1000,
  };
}
