import type { ExperimentEvent } from "./experiments/events";

/** Bindings of the gateway Worker (see wrangler.toml). */
export interface Env {
  DB: D1Database;
  ARTIFACTS: R2Bucket;
  /** Secret: bearer token for registry writes and the dashboard. */
  ADMIN_TOKEN: string;
  SESSION_BUDGET_MB?: string;
  /** Queue of experiment exposure events (producer; the same Worker consumes it, see worker.ts). */
  EVENTS: Queue<ExperimentEvent>;
  /** Largest accepted variant upload in MB (registry; default 100). */
  MAX_UPLOAD_MB?: string;
  /** `off` turns API-key checks off (local development only; see src/registry/auth.ts). */
  AUTH?: string;
  /** Per-API-key rate limit (`[[ratelimits]]` in wrangler.toml); absent = none. */
  KEY_RATE_LIMIT?: RateLimit;
}
