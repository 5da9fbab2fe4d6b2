import { expect, it } from "vitest";
import { configFromEnv, DEFAULT_CONFIG } from "../../src/gateway/config";

it("reads the gateway's Worker vars, falling back to defaults for unset or unusable values", () => {
  expect(configFromEnv({})).toEqual(DEFAULT_CONFIG);
  expect(DEFAULT_CONFIG.sessionBudgetBytes).toBe(64 * 1024 * 1024);
  const c = configFromEnv({
    SESSION_BUDGET_MB: "16",
    CATALOG_TTL_MS: "0",
    VARIANT_COOLDOWN_S: "2.5",
    MAX_BATCH: "8",
    MAX_SEQUENCE: "abc",
    CLASSIFY_MAX_TOKENS: "-3",
    MAX_INFER_BODY_MB: " ",
  });
  expect(c.sessionBudgetBytes).toBe(16 * 1024 * 1024);
  expect(c.catalogTtlMs).toBe(0);
  expect(c.cooldownMs).toBe(2500);
  expect(c.maxBatch).toBe(8);
  expect(c.maxSequence).toBe(DEFAULT_CONFIG.maxSequence);
  expect(c.classifyMaxTokens).toBe(DEFAULT_CONFIG.classifyMaxTokens);
  expect(c.maxBodyBytes).toBe(DEFAULT_CONFIG.maxBodyBytes);
});
