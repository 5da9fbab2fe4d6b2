import { createApp } from "./app";
import type { Env } from "./env";
import { consumeEventBatch } from "./experiments/events";

const app = createApp();

export default {
  fetch: app.fetch,
  /** Consumer of the EVENTS queue: experiment exposures -> D1, idempotent on request id. */
  async queue(batch, env) {
    await consumeEventBatch(batch, env.DB);
  },
} satisfies ExportedHandler<Env>;
