import { consumeEventBatch } from "../gateway/experiments/events";
import { createApp } from "./app";
import type { Env } from "./env";

const app = createApp();

export default {
  fetch: app.fetch,
  /** Consumer of the EVENTS queue: experiment exposures -> D1, idempotent on request id. */
  async queue(batch, env) {
    await consumeEventBatch(batch, env.DB);
  },
} satisfies ExportedHandler<Env>;
