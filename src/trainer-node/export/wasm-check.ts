/**
 * Child process of export/optimize.ts: runs ONNX models in onnxruntime-web's wasm build (the gateway's runtime)
 * on token batches and prints their first output. It is a process of its own because onnxruntime-node and
 * onnxruntime-web loaded in one process share onnxruntime-common's backend registry, and a "wasm" session then
 * silently runs on the native backend — the check would prove nothing about the wasm build.
 *
 *   tsx src/trainer-node/export/wasm-check.ts <job.json>
 * job: { models: [{ file, level }], batches: [{ batch, seqLen, ids: number[], mask: number[], typeIds?: number[] }] }
 * prints one JSON line: [{ ok: true, output: number[] } | { ok: false, error: string }] per model, in order.
 *
 * A timing job (`kind: "time"`, export/edge-latency.ts) instead holds every model's session open and runs them
 * interleaved (A, B, A, B, ..., the order alternating each round, as export/latency.ts does natively) on one
 * batch each, printing each model's run times in ms after `warmup` untimed rounds.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

export interface WasmJob {
  models: { file: string; level: "disabled" | "basic" | "extended" | "all" }[];
  /** `typeIds`: token type ids of sentence pairs (absent: zeros). */
  batches: { batch: number; seqLen: number; ids: number[]; mask: number[]; typeIds?: number[] }[];
}
export type WasmResult = { ok: true; output: number[] } | { ok: false; error: string };

type WasmBatch = WasmJob["batches"][number];
export interface WasmTimingJob {
  kind: "time";
  models: (WasmJob["models"][number] & { batch: WasmBatch })[];
  warmup: number;
  runs: number;
}
export type WasmTimingResult =
  | { ok: true; timesMs: number[]; runtime: string }
  | { ok: false; error: string };

type Ort = typeof import("onnxruntime-web");

function feedsOf(ort: Ort, session: { inputNames: readonly string[] }, b: WasmBatch) {
  const dims = [b.batch, b.seqLen];
  const feeds: Record<string, InstanceType<Ort["Tensor"]>> = {};
  for (const name of session.inputNames) {
    const values =
      name === "input_ids"
        ? b.ids
        : name === "attention_mask"
          ? b.mask
          : name === "token_type_ids" && b.typeIds
            ? b.typeIds
            : b.ids.map(() => 0);
    feeds[name] = new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);
  }
  return feeds;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

async function time(ort: Ort, job: WasmTimingJob): Promise<WasmTimingResult[]> {
  const runtime = `onnxruntime-web ${ort.env.versions.web} wasm, 1 thread`;
  const entries: {
    session?: import("onnxruntime-web").InferenceSession;
    error?: string;
    feeds?: ReturnType<typeof feedsOf>;
    times: number[];
  }[] = [];
  try {
    for (const m of job.models) {
      try {
        const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(m.file)), {
          executionProviders: ["wasm"],
          graphOptimizationLevel: m.level,
        });
        entries.push({ session, feeds: feedsOf(ort, session, m.batch), times: [] });
      } catch (err) {
        entries.push({ error: messageOf(err), times: [] });
      }
    }
    const live = entries.filter((e) => e.session);
    for (let round = 0; round < job.warmup + job.runs; round++) {
      for (const e of round % 2 === 0 ? live : [...live].reverse()) {
        if (e.error) continue;
        try {
          const t0 = performance.now();
          await e.session!.run(e.feeds!);
          const dt = performance.now() - t0;
          if (round >= job.warmup) e.times.push(dt);
        } catch (err) {
          e.error = messageOf(err);
        }
      }
    }
  } finally {
    for (const e of entries) await e.session?.release();
  }
  return entries.map((e) =>
    e.error ? { ok: false, error: e.error } : { ok: true, timesMs: e.times, runtime },
  );
}

async function main(jobFile: string) {
  const require = createRequire(import.meta.url);
  const ort: Ort = require("onnxruntime-web");
  ort.env.wasm.numThreads = 1; // what a Worker isolate gets
  ort.env.logLevel = "error";
  const job: WasmJob | WasmTimingJob = JSON.parse(readFileSync(jobFile, "utf8"));
  if ("kind" in job && job.kind === "time") {
    console.log(JSON.stringify(await time(ort, job)));
    return;
  }
  const results: WasmResult[] = [];
  for (const m of (job as WasmJob).models) {
    try {
      const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(m.file)), {
        executionProviders: ["wasm"],
        graphOptimizationLevel: m.level,
      });
      const output: number[] = [];
      try {
        for (const b of (job as WasmJob).batches) {
          const name = session.outputNames.includes("logits") ? "logits" : session.outputNames[0];
          const out = (await session.run(feedsOf(ort, session, b), [name]))[name];
          output.push(...(out.data as Float32Array));
        }
      } finally {
        await session.release();
      }
      results.push({ ok: true, output });
    } catch (err) {
      results.push({ ok: false, error: messageOf(err) });
    }
  }
  console.log(JSON.stringify(results));
}

// A script, never imported for its values (optimize.ts imports only its types, which are erased).
main(process.argv[2]).catch((err) => {
  console.error(err);
  process.exit(1);
});
