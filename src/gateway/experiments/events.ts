/**
 * Exposure events: what the gateway sends to the `EVENTS` queue for every request an experiment served, and
 * the queue consumer that writes them to D1.
 *
 * Delivery is at least once (a batch is retried when the consumer throws or calls retryAll, and a message can
 * be redelivered after a crash), so the consumer is idempotent on request id: the insert ignores a request id
 * already stored. A batch is written in one D1 batch (one transaction): either every new row lands and the
 * batch is acked, or none does and the whole batch is retried — no event lost, none counted twice.
 */
import { z } from "zod";

export const ExposureEvent = z.object({
  type: z.literal("exposure"),
  requestId: z.string().min(1).max(128),
  experimentId: z.number().int().positive(),
  arm: z.number().int().min(0),
  unitId: z.string().max(256).nullable(),
  sticky: z.boolean(),
  servedVersion: z.number().int().positive().nullable(),
  latencyMs: z.number().finite().min(0),
  error: z.boolean(),
  predicted: z.string().max(256).nullable(),
  /** ISO time the gateway served the request */
  servedAt: z.string().min(1).max(64),
});
export type ExposureEvent = z.infer<typeof ExposureEvent>;

/** Union of everything on the queue (one kind today; the `type` tag leaves room for more). */
export const ExperimentEvent = ExposureEvent;
export type ExperimentEvent = ExposureEvent;

/** D1 allows 100 bound parameters per statement: one statement per row keeps well inside that. */
const INSERT_EXPOSURE = `insert into exposures
  (request_id, experiment_id, arm, unit_id, sticky, served_version, latency_ms, error, predicted, served_at)
  select ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
  where exists (select 1 from experiments where id = ?2)
  on conflict (request_id) do nothing`;

export interface ConsumeResult {
  /** rows newly written */
  written: number;
  /** valid events whose request id was already stored (redeliveries) or whose experiment no longer exists */
  ignored: number;
  /** messages that were not valid events (acked and dropped: retrying cannot fix them) */
  invalid: number;
}

/**
 * Writes a batch of exposure events to D1 idempotently. Pure with respect to the queue: takes the bodies and
 * returns counts; `consumeEventBatch` maps the outcome onto ack/retry.
 */
export async function writeExposures(d1: D1Database, bodies: readonly unknown[]): Promise<ConsumeResult> {
  const events: ExposureEvent[] = [];
  let invalid = 0;
  for (const body of bodies) {
    const parsed = ExperimentEvent.safeParse(body);
    if (parsed.success) events.push(parsed.data);
    else invalid++;
  }
  if (events.length === 0) return { written: 0, ignored: 0, invalid };
  const statement = d1.prepare(INSERT_EXPOSURE);
  const results = await d1.batch(
    events.map((e) =>
      statement.bind(
        e.requestId,
        e.experimentId,
        e.arm,
        e.unitId,
        e.sticky ? 1 : 0,
        e.servedVersion,
        e.latencyMs,
        e.error ? 1 : 0,
        e.predicted,
        e.servedAt,
      ),
    ),
  );
  const written = results.reduce((n, r) => n + (r.meta.changes ?? 0), 0);
  return { written, ignored: events.length - written, invalid };
}

/**
 * The queue() handler's body: one transaction per batch; ack everything on success, retry everything on
 * failure (the retry is harmless for rows that did land, thanks to ON CONFLICT DO NOTHING).
 */
export async function consumeEventBatch(
  batch: MessageBatch<unknown>,
  d1: D1Database,
): Promise<ConsumeResult> {
  try {
    const result = await writeExposures(
      d1,
      batch.messages.map((m) => m.body),
    );
    if (result.invalid > 0) console.warn(`events: dropped ${result.invalid} invalid message(s)`);
    batch.ackAll();
    return result;
  } catch (err) {
    console.error(`events: batch of ${batch.messages.length} failed, retrying`, err);
    batch.retryAll();
    return { written: 0, ignored: 0, invalid: 0 };
  }
}
