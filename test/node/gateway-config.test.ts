import { expect, it } from "vitest";
import { configFromEnv, DEFAULT_CONFIG } from "../../src/gateway/config";
import { ConfigError } from "../../src/http/vars";

it("reads the gateway's Worker vars, with defaults for unset or empty ones", () => {
  expect(configFromEnv({})).toEqual(DEFAULT_CONFIG);
  expect(DEFAULT_CONFIG.sessionBudgetBytes).toBe(64 * 1024 * 1024);
  expect(DEFAULT_CONFIG.maxBodyBytes).toBe(4 * 1024 * 1024);
  const c = configFromEnv({
    SESSION_BUDGET_MB: "16",
    CATALOG_TTL_MS: "0",
    VARIANT_COOLDOWN_S: "2.5",
    MAX_BATCH: "8",
    MAX_SEQUENCE: "",
    MAX_INFER_BODY_MB: " ",
  });
  expect(c.sessionBudgetBytes).toBe(16 * 1024 * 1024);
  expect(c.catalogTtlMs).toBe(0);
  expect(c.cooldownMs).toBe(2500);
  expect(c.maxBatch).toBe(8);
  expect(c.maxSequence).toBe(DEFAULT_CONFIG.maxSequence);
  expect(c.maxBodyBytes).toBe(DEFAULT_CONFIG.maxBodyBytes);
});

it("refuses a var that is set but unusable, naming it, instead of falling back to the default", () => {
  const bad: [string, string][] = [
    ["MAX_SEQUENCE", "abc"],
    ["CLASSIFY_MAX_TOKENS", "-3"],
    ["MAX_BATCH", "2.5"],
    ["MAX_BATCH", "0"],
    ["SESSION_BUDGET_MB", "0x10"],
    ["MAX_INFER_BODY_MB", "1e3"],
  ];
  for (const [name, value] of bad) {
    let thrown: unknown;
    try {
      configFromEnv({ [name]: value });
    } catch (err) {
      thrown = err;
    }
    expect(thrown, `${name}=${value}`).toBeInstanceOf(ConfigError);
    const e = thrown as ConfigError;
    expect(e.variable).toBe(name);
    expect(e.status).toBe(503);
    expect(e.message).toMatch(new RegExp(`^${name}: must be .*got '${value.replace(/[.]/g, "\\.")}'`));
  }
});
