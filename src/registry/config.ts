/**
 * The vars and secrets the registry (and its access control) reads, as one zod schema: the registry's part of
 * the Worker's configuration (src/worker/env.ts composes every part's). Defaults live here and nowhere else.
 */
import { z } from "zod";
import { numberVar, optionalStringVar, parseVars } from "../http/vars";

export const RegistryVars = z.object({
  /** Secret: bearer token for registry writes and the dashboard; unset, they answer 503. */
  ADMIN_TOKEN: optionalStringVar,
  /** `off` turns API-key checks off (local development only); unset, empty or `on` enforce them. */
  AUTH: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? "on" : v))
    .pipe(
      z.enum(["on", "off"], {
        error: (issue) =>
          `must be 'on' or 'off' (unset means 'on'), got '${String(issue.input).slice(0, 40)}'`,
      }),
    ),
  /** Largest accepted variant upload in MB. */
  MAX_UPLOAD_MB: numberVar(100, { positive: true }),
  /**
   * How often (ms) an isolate reads the registry's generation counter; another isolate's write (or key
   * revocation) is seen here by requests that start twice this long after it (src/registry/generation.ts).
   * 0: every request waits for a read.
   */
  REGISTRY_POLL_MS: numberVar(1000, { integer: true }),
});

export interface RegistryConfig {
  adminToken: string | undefined;
  auth: "on" | "off";
  maxUploadBytes: number;
  /** REGISTRY_POLL_MS: the generation counter's poll interval. */
  registryPollMs: number;
}

const MB = 1024 * 1024;

/** The registry's configuration from the Worker's env (parsed once per env object; ConfigError on a bad var). */
export function registryConfig(env: object): RegistryConfig {
  const v = parseVars(RegistryVars, env);
  return {
    adminToken: v.ADMIN_TOKEN,
    auth: v.AUTH,
    maxUploadBytes: Math.floor(v.MAX_UPLOAD_MB * MB),
    registryPollMs: v.REGISTRY_POLL_MS,
  };
}
