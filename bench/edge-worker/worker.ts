/**
 * bench:edge's Worker: onnxruntime-web inside workerd, loaded exactly as the gateway loads it
 * (src/gateway/ort-wasm.ts), timing `session.run` inside the isolate. The driver (bench/edge.ts) uploads each model
 * in chunks (no single request body has to hold a 440 MB BERT-base), creates its session, asks for runs one
 * request at a time (so it can interleave models and read workerd's CPU counters around each request) and
 * releases it.
 *
 *   PUT    /model/:id?offset=N&total=N   a chunk of the model's bytes
 *   POST   /session/:id?level=L          create the session from the uploaded bytes at graph optimisation level L
 *                                        (all | disabled, as the gateway picks it; default all) -> { createMs }
 *   POST   /run/:id?batch=B&seq=S&runs=N[&inner=K]
 *                                        -> { ms: number[] } one entry per sample: K consecutive session.runs (default
 *                                           1) timed together in the isolate, divided by K
 *   DELETE /session/:id
 */
import type { InferenceSession, Tensor } from "onnxruntime-web/wasm";
import { loadOrt } from "../../src/gateway/ort-wasm";

const uploads = new Map<string, Uint8Array>();
const sessions = new Map<string, InferenceSession>();

/** The same inputs as bench/lib/ort-time.ts: ids in [5, 4000), the last quarter of each row padding. */
function feeds(ort: ReturnType<typeof loadOrt>, names: readonly string[], batch: number, seq: number) {
  const n = batch * seq;
  const ids = new BigInt64Array(n);
  const mask = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const on = i % seq < Math.ceil(0.75 * seq);
    ids[i] = on ? BigInt(5 + ((i * 7919) % 3995)) : 0n;
    mask[i] = on ? 1n : 0n;
  }
  const out: Record<string, Tensor> = {};
  for (const name of names)
    out[name] = new ort.Tensor(
      "int64",
      name === "input_ids" ? ids : name === "attention_mask" ? mask : new BigInt64Array(n),
      [batch, seq],
    );
  return out;
}

/**
 * workerd advances its clock only between I/O events (a Spectre mitigation; 1 ms granularity in production), so
 * a sample is bracketed by zero-length timer waits: each wait lets the clock catch up to real time without adding
 * CPU work to the span being timed. Between two waits the clock reads whole ms, so a sample of `inner` runs back
 * to back, divided by `inner`, resolves a run to 1/inner ms.
 */
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const [, kind, id] = url.pathname.split("/");
    const num = (name: string) => {
      const v = Number(url.searchParams.get(name));
      if (!Number.isInteger(v) || v < 0) throw new Error(`query parameter ${name} must be an integer >= 0`);
      return v;
    };
    try {
      if (kind === "model" && request.method === "PUT") {
        const total = num("total");
        const offset = num("offset");
        let buf = uploads.get(id);
        if (!buf || buf.length !== total) {
          buf = new Uint8Array(total);
          uploads.set(id, buf);
        }
        buf.set(new Uint8Array(await request.arrayBuffer()), offset);
        return json({ ok: true });
      }
      if (kind === "session" && request.method === "POST") {
        const bytes = uploads.get(id);
        if (!bytes) return json({ error: `no model uploaded for ${id}` }, 404);
        const level = url.searchParams.get("level") ?? "all";
        if (level !== "all" && level !== "disabled")
          return json({ error: `query parameter level must be all or disabled, got '${level}'` }, 400);
        const ort = loadOrt();
        await tick();
        const t0 = performance.now();
        const session = await ort.InferenceSession.create(bytes, {
          executionProviders: ["wasm"],
          graphOptimizationLevel: level,
        });
        await tick();
        uploads.delete(id);
        sessions.set(id, session);
        return json({ createMs: performance.now() - t0 });
      }
      if (kind === "run" && request.method === "POST") {
        const session = sessions.get(id);
        if (!session) return json({ error: `no session ${id}` }, 404);
        const input = feeds(loadOrt(), session.inputNames, num("batch"), num("seq"));
        const inner = url.searchParams.has("inner") ? num("inner") : 1;
        if (inner < 1) return json({ error: "query parameter inner must be an integer >= 1" }, 400);
        const ms: number[] = [];
        for (let r = 0, runs = num("runs"); r < runs; r++) {
          await tick();
          const t0 = performance.now();
          for (let k = 0; k < inner; k++) await session.run(input);
          await tick();
          ms.push((performance.now() - t0) / inner);
        }
        return json({ ms });
      }
      if (kind === "session" && request.method === "DELETE") {
        await sessions.get(id)?.release();
        sessions.delete(id);
        return json({ ok: true });
      }
      return json({ error: `unknown route ${request.method} ${url.pathname}` }, 404);
    } catch (err) {
      return json({ error: String((err as Error)?.stack ?? err) }, 500);
    }
  },
};
