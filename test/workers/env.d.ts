// Types the `env` that `cloudflare:test` / `cloudflare:workers` hand to tests (mirrors src/worker/env.ts).
declare namespace Cloudflare {
  interface Env {
    DB: D1Database;
    ARTIFACTS: R2Bucket;
    ADMIN_TOKEN: string;
    EVENTS: Queue<unknown>;
    SESSION_BUDGET_MB?: string;
    KEY_RATE_LIMIT: RateLimit;
    TEST_TIGHT_RATE_LIMIT: RateLimit;
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
  }
}
