// Types the `env` that `cloudflare:test` / `cloudflare:workers` hand to tests (mirrors src/gateway/env.ts).
declare namespace Cloudflare {
  interface Env {
    DB: D1Database;
    ARTIFACTS: R2Bucket;
    ADMIN_TOKEN: string;
    EVENTS: Queue<unknown>;
    SESSION_BUDGET_MB?: string;
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
  }
}
