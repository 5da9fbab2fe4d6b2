/**
 * Gateway inference through the real Worker: starts `wrangler dev` on a fresh local D1/R2 (temporary persist
 * dir), registers one model through the registry API, and measures in one run on that model:
 *   - the cold first request (ORT wasm instantiation + R2 read + sha256 + session creation + inference),
 *   - onnxruntime-web inference time inside workerd (server-timing `infer`),
 *   - the gateway's own overhead: `route` (catalog lookup + selectVariant) and everything that is neither
 *     loading, tokenizing nor inference (total - load - tokenize - infer + auth + generation: validation, JSON,
 *     tensors, the API-key check, the registry generation poll), with its parts' means,
 *   - the gateway's own CPU per request (`--profile N`, default 500 requests at c=1): a V8 CPU profile of the
 *     Worker's isolate through wrangler's inspector splits the isolate thread's CPU time (/proc) between the
 *     gateway (src/, Hono, zod, Drizzle), onnxruntime-web, the tokenizer and V8/workerd (profiled() below).
 *     This, not server-timing, is the overhead figure: workerd's clock under wrangler dev is whole milliseconds
 *     of wall time (performance.now() === Date.now(); it advances through pure CPU too), so a sub-ms stage reads
 *     0 or 1 and its mean is wall time, preemption on a loaded machine included; CPU time is not,
 *   - end-to-end latency from a Node client (p50, p95) at concurrency 1, 8 and 32, with throughput,
 *   - onnxruntime-node (CPU, 1 thread) on the same bytes and input, interleaved with the concurrency-1
 *     requests so both see the same machine load, for context.
 * Prints a table and writes bench-results/gateway.json. wrangler is always shut down (errors, Ctrl-C too).
 *
 *   npm run bench:gateway -- [--model reference|small] [--seq 64] [--batch 1] [--requests 200]
 *                            [--tree <checkout>] [--out <file.json>] [--variants dense|family]
 *                            [--profile 500] [--profile-interval 200]
 *   npm run bench:gateway -- --compare <baseline checkout> [--rounds 1] [--margin 0.03]
 * `--variants family` registers the trained reference family (bench/lib/variant-family.ts: 0.4 fp32 and
 * 0.4 int8, each with its manifest's accuracy and per-example evidence, through the `sluice push` code path),
 * sets a non-inferiority accuracy SLA on task spam (`--margin`) and sends the requests unpinned, so the router
 * picks the variant; the JSON records which variant served each request and the router's explanation.
 * `--compare` measures, in one run and with the same client, the baseline checkout serving today's one dense
 * variant, this tree serving the same dense variant, and this tree serving the family behind the router
 * (`--rounds` times, alternating), and writes bench-results/gateway-throughput.json with the ratios.
 * `--tree` serves another checkout's Worker (e.g. a `git worktree` of an older commit) with this client, so two
 * trees are measured alike (bench:gateway-compare alternates them); a tree from before API keys is sent no key.
 * `--out` writes the JSON there instead of bench-results/gateway.json and leaves the docs alone.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import * as ortNode from "onnxruntime-node";
import { freePort, mintDevKey, startWranglerDev, type WranglerDev } from "../scripts/lib/wrangler";
import { type Manifest, parseManifest } from "../src/core/manifest";
import { buildEncoder, type EncoderConfig, REFERENCE_ENCODER } from "../src/core/models/encoder";
import { encodeModel, ioSignatureOf } from "../src/core/onnx";
import { push } from "../src/trainer-node/commands/push";
import { requestJson } from "../src/trainer-node/registry-client";
import { attribute, Inspector } from "./lib/cpu-profile";
import { updateBenchmarksPage } from "./lib/docs";
import { REFERENCE_DESCRIPTION, referenceTargetDirs } from "./lib/variant-family";
import { threadCpuMs } from "./lib/workerd-cpu";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: "reference" },
    seq: { type: "string", default: "64" },
    batch: { type: "string", default: "1" },
    requests: { type: "string", default: "200" },
    concurrency: { type: "string", default: "1,8,32" },
    /** `off`: run the gateway with AUTH=off, to measure the API-key check's share of the overhead. */
    auth: { type: "string", default: "on" },
    tree: { type: "string" },
    out: { type: "string" },
    variants: { type: "string", default: "dense" },
    compare: { type: "string" },
    rounds: { type: "string", default: "1" },
    margin: { type: "string", default: "0.03" },
    /** Requests sent at concurrency 1 under a V8 CPU profile of the Worker (0: no profile). */
    profile: { type: "string", default: "500" },
    /** The profiler's sampling interval, microseconds. */
    "profile-interval": { type: "string", default: "200" },
  },
});
const seq = Number(args.seq);
const batch = Number(args.batch);
const requests = Number(args.requests);
const CONCURRENCY = args.concurrency.split(",").map(Number);

const MODELS: Record<string, Partial<EncoderConfig>> = {
  reference: REFERENCE_ENCODER, // 4 layers, d=256, 4 heads, FFN 1024, vocab 4096
  small: { vocabSize: 4096, hidden: 64, layers: 2, heads: 2, ffn: 256, maxPositions: 256 },
};
const encoderConfig = MODELS[args.model];
if (!encoderConfig) throw new Error(`--model must be one of ${Object.keys(MODELS).join(", ")}`);

const root = path.resolve(import.meta.dirname, "..");
let dev: WranglerDev | undefined;

// --- statistics -----------------------------------------------------------------------------------------------
function quantile(samples: number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo);
}
const p50 = (xs: number[]) => quantile(xs, 0.5);
const p95 = (xs: number[]) => quantile(xs, 0.95);
/**
 * workerd under wrangler dev reports whole milliseconds; the mean of many samples resolves sub-ms costs. Its
 * clock follows real time at that resolution, also through pure CPU work (a Worker spinning a 3e7-step loop
 * reads 48-83 ms across it), not only across I/O: each stage's mean estimates its real time, preemption by
 * other processes on a loaded machine included.
 */
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function serverTiming(res: Response): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of (res.headers.get("server-timing") ?? "").split(",")) {
    const m = /^\s*([a-z0-9]+);dur=([0-9.]+)/.exec(part);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

interface Sample {
  e2eMs: number;
  timing: Record<string, number>;
  /** x-sluice-variant: which variant served the request (model@version). */
  variant: string;
}

/** A non-200 answer during a level: counted, and the run goes on (the level reports them). */
interface Failure {
  status: number;
  body: string;
  atMs: number;
}

/** What the bench sends: the model's infer route (routed or pinned) and the request body. */
interface Target {
  path: string;
  body: string;
}

// --- the model and its request ----------------------------------------------------------------------------------
const graph = buildEncoder(encoderConfig);
const modelBytes = encodeModel(graph);
const sha256 = async (b: Uint8Array) => Buffer.from(await crypto.subtle.digest("SHA-256", b)).toString("hex");

function inputIds(): number[] {
  // Deterministic token ids in [5, vocab): [CLS]-like start, no padding.
  const vocab = graph.initializers.get("bert.embeddings.word_embeddings.weight")?.dims[0] ?? 4096;
  return Array.from({ length: batch * seq }, (_, i) => (i % seq === 0 ? 2 : 5 + ((i * 7919) % (vocab - 5))));
}
const ids = inputIds();
const inferBody = JSON.stringify({
  inputs: [
    { name: "input_ids", datatype: "INT64", shape: [batch, seq], data: ids },
    { name: "attention_mask", datatype: "INT64", shape: [batch, seq], data: ids.map(() => 1) },
  ],
});

/** Today's registration: one dense fp32 variant of the random encoder, model `bench` (every tree accepts it). */
async function registerDense(url: string, token: string): Promise<Target> {
  const auth = { Authorization: `Bearer ${token}` };
  const io = ioSignatureOf(graph);
  const labels = ["neg", "pos"];
  const res = await fetch(`${url}/v1/models`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "bench", task: "bench", labels, io }),
  });
  if (res.status !== 201) throw new Error(`create model: ${res.status} ${await res.text()}`);
  const zeros = "0".repeat(64);
  const params = graph.parameterCount();
  const manifest: Manifest = {
    schemaVersion: 1,
    model: { name: "bench", task: "bench" },
    base: { name: "bench-base", sha256: zeros },
    artifact: { file: "model.onnx", sha256: await sha256(modelBytes), bytes: modelBytes.byteLength },
    io,
    labels,
    sparsity: {
      target: 0,
      removed: 0,
      params,
      baseParams: params,
      flopsPerToken: 1,
      baseFlopsPerToken: 1,
    },
    metrics: { accuracy: 0.9, others: {}, evalSet: { name: "bench", sha256: zeros, size: 1 } },
    latency: { p50Ms: 1, p95Ms: 1, batch, seqLen: seq, runtime: "bench" },
    training: {
      method: "none",
      hyperparameters: {},
      seed: 1,
      steps: 0,
      trainableParams: 0,
      createdAt: new Date().toISOString(),
    },
  };
  const form = new FormData();
  form.append(
    "manifest",
    new Blob([JSON.stringify(manifest)], { type: "application/json" }),
    "manifest.json",
  );
  form.append("model", new Blob([modelBytes]), "model.onnx");
  const up = await fetch(`${url}/v1/models/bench/variants`, { method: "POST", headers: auth, body: form });
  if (up.status !== 201) throw new Error(`upload: ${up.status} ${await up.text()}`);
  const patch = await fetch(`${url}/v1/models/bench/variants/1`, {
    method: "PATCH",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ status: "active" }),
  });
  if (patch.status !== 200) throw new Error(`activate: ${patch.status} ${await patch.text()}`);
  return { path: "/v2/models/bench/infer", body: inferBody };
}

/** One registered member of the family, as its manifest describes it. */
interface FamilyMember {
  label: string;
  version: number;
  precision: string;
  removed: number;
  params: number;
  bytes: number;
  accuracy: number;
  evalExamples: number;
  /** onnxruntime-node p50 recorded at export. */
  manifestP50Ms: number;
  /** onnxruntime-web wasm p50 recorded at export or by `sluice measure` (what the router ranks by when both have one). */
  manifestEdgeP50Ms: number | null;
}

/**
 * The trained reference family (0.4 fp32 and its int8 twin) pushed as `sluice push` does, activated, and a
 * non-inferiority SLA on its task; the requests go unpinned to the router. Returns the target, the members and
 * the router's explanation.
 */
async function registerFamily(url: string, token: string, apiKey: string) {
  // The trained dense variant stays out: the pruned ones, trained on its re-export, also output
  // last_hidden_state, and a model's variants must share one io signature (the registry answers 409).
  const pruned = await referenceTargetDirs("0.4");
  const members: FamilyMember[] = [];
  let manifest: Manifest | undefined;
  for (const [label, dir] of [
    ["0.4 fp32", pruned.fp32],
    ["0.4 int8", pruned.int8],
  ] as const) {
    manifest = parseManifest(JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")));
    const pushed = await push({ dir, url, token, json: false }, () => {});
    const version = pushed.variant.version;
    await requestJson(url, `/v1/models/${manifest.model.name}/variants/${version}`, {
      method: "PATCH",
      token,
      body: { status: "active" },
    });
    members.push({
      label,
      version,
      precision: manifest.precision ?? "fp32",
      removed: manifest.sparsity.removed,
      params: manifest.sparsity.params,
      bytes: manifest.artifact.bytes,
      accuracy: manifest.metrics.accuracy,
      evalExamples: manifest.metrics.evalSet.size,
      manifestP50Ms: manifest.latency.p50Ms,
      manifestEdgeP50Ms: manifest.latency.edge?.p50Ms ?? null,
    });
  }
  const m = manifest as Manifest;
  const margin = Number(args.margin);
  await requestJson(url, `/v1/tasks/${m.model.task}/sla`, {
    method: "PUT",
    token,
    body: { metric: "accuracy", margin },
  });
  const route = (
    await requestJson<{
      chosen: number | null;
      reason: string;
      latency: { runtime: string; why: string };
      candidates: { version: number; verdict: string; why: string }[];
    }>(url, `/v1/models/${m.model.name}/route`, { token: apiKey })
  ).body;
  // The same token ids as today's request, one tensor per input the family's io signature names.
  const inputs = m.io.inputs.map((spec) => ({
    name: spec.name,
    datatype: "INT64",
    shape: [batch, seq],
    data: spec.name === "input_ids" ? ids : ids.map(() => (spec.name === "attention_mask" ? 1 : 0)),
  }));
  // Only the logits, as today's model returns: the pruned variants also output last_hidden_state ([1, seq, 256]),
  // and answering it would put 16k floats of JSON on every response.
  const outputs = [{ name: m.io.outputs[0].name }];
  return {
    target: { path: `/v2/models/${m.model.name}/infer`, body: JSON.stringify({ inputs, outputs }) },
    members,
    sla: { metric: "accuracy", margin },
    route,
  };
}

/** Whether the served tree has API keys (`POST /v1/keys`); an older tree is sent no Authorization header. */
let treeHasKeys = true;

/**
 * wrangler dev's proxy (ProxyWorker, in front of the Worker) answers a POST whose connection to the Worker
 * failed with a 503 "Your worker restarted mid-request" (its restart check compares the request's full URL with
 * the Worker's bare origin, so every lost connection reads as a restart). bench:gateway-proxy measured it on a
 * plain 404 route, no inference involved: a few per thousand at c=32 through the proxy, none straight to the
 * Worker's socket. It is wrangler dev's, not the gateway's, so the client retries it (the request is
 * side-effect free) and counts the retries; every other non-200 is the gateway's and counts as an error.
 */
const PROXY_DROP = "Your worker restarted mid-request";
const PROXY_RETRIES = 3;

async function send(url: string, target: Target, apiKey: string) {
  const t0 = performance.now();
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${url}${target.path}`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        ...(treeHasKeys ? { Authorization: `Bearer ${apiKey}` } : {}),
      },
      body: target.body,
    });
    const body = await res.text();
    if (res.status === 503 && body.startsWith(PROXY_DROP) && attempt < PROXY_RETRIES) continue;
    return { res, body, e2eMs: performance.now() - t0, proxyRetries: attempt };
  }
}

/** One request that must succeed (cold start, warm-up). */
async function infer(url: string, target: Target, apiKey = dev!.apiKey): Promise<Sample> {
  const { res, body, e2eMs } = await send(url, target, apiKey);
  if (res.status !== 200) throw new Error(`infer: ${res.status} ${body.slice(0, 300)}`);
  return { e2eMs, timing: serverTiming(res), variant: res.headers.get("x-sluice-variant") ?? "?" };
}

/**
 * CPU time (clock ticks, 1/100 s) so far of each process in wrangler's group, by role: the workerd running the
 * Worker (the one with an inspector), the workerd in front of it (wrangler's proxy), and wrangler itself (node).
 * Linux only; empty elsewhere.
 */
/** The process ids in wrangler's group, by role (see groupCpuTicks). */
function groupPids(pgid: number): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  let pids: string[] = [];
  try {
    pids = execFileSync("pgrep", ["-g", String(pgid)], { encoding: "utf8" })
      .trim()
      .split("\n");
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const role = cmd.includes("workerd")
        ? cmd.includes("--inspector-addr")
          ? "workerdWorker"
          : "workerdProxy"
        : "other";
      out[role] = [...(out[role] ?? []), Number(pid)];
    } catch {}
  }
  return out;
}

function groupCpuTicks(pgid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let pids: string[] = [];
  try {
    pids = execFileSync("pgrep", ["-g", String(pgid)], { encoding: "utf8" })
      .trim()
      .split("\n");
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const role = cmd.includes("workerd")
        ? cmd.includes("--inspector-addr")
          ? "workerdWorker"
          : "workerdProxy"
        : cmd.includes("esbuild")
          ? "esbuild"
          : "wrangler";
      out[role] = (out[role] ?? 0) + Number(f[11]) + Number(f[12]); // utime + stime
    } catch {}
  }
  return out;
}

/** Closed loop: `concurrency` clients each send requests back to back until `n` have been sent. */
async function level(
  url: string,
  target: Target,
  concurrency: number,
  n: number,
  interleave?: () => Promise<number>,
) {
  // Fresh keys per level, each sent at most 500 requests: the per-key rate limit (KEY_RATE_LIMIT, 600 per
  // minute in wrangler.toml) stays in the measured path without cutting a level short with 429s.
  const keys: string[] = [];
  for (let i = 0; i < (treeHasKeys ? Math.ceil(n / 500) : 1); i++)
    keys.push(treeHasKeys ? await mintDevKey(url, dev!.adminToken, ["infer"]) : "");
  const samples: Sample[] = [];
  const failures: Failure[] = [];
  let proxyRetries = 0;
  const interleaved: number[] = [];
  let sent = 0;
  const cpu0 = groupCpuTicks(dev!.pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < n) {
        const apiKey = keys[sent % keys.length];
        sent++;
        const { res, body, e2eMs, proxyRetries: retried } = await send(url, target, apiKey);
        proxyRetries += retried;
        if (res.status === 200)
          samples.push({
            e2eMs,
            timing: serverTiming(res),
            variant: res.headers.get("x-sluice-variant") ?? "?",
          });
        else failures.push({ status: res.status, body: body.slice(0, 200), atMs: performance.now() - t0 });
        if (interleave) interleaved.push(await interleave());
      }
    }),
  );
  if (failures.length > 0)
    console.error(
      `  ${failures.length} of ${n} requests failed, first: ${failures[0].status} ${failures[0].body} at ${fmt(failures[0].atMs)} ms`,
    );
  const servedBy: Record<string, number> = {};
  for (const s of samples) servedBy[s.variant] = (servedBy[s.variant] ?? 0) + 1;
  const cpuWallS = (performance.now() - t0) / 1000;
  const cpu1 = groupCpuTicks(dev!.pid);
  // Each process's CPU time over the level as a share of one core (1.0 = one core busy all along).
  const cpuCoreShare = Object.fromEntries(
    Object.entries(cpu1).map(([role, ticks]) => [role, (ticks - (cpu0[role] ?? 0)) / 100 / cpuWallS]),
  );
  // Time spent in interleaved onnxruntime-node runs is not the gateway's.
  const wallS = (performance.now() - t0 - interleaved.reduce((a, b) => a + b, 0)) / 1000;
  const e2e = samples.map((s) => s.e2eMs);
  const inferMs = samples.map((s) => s.timing.infer);
  const routeMs = samples.map((s) => s.timing.route);
  // A tree that reports `pre` (the time from the request's arrival to the handler: request id, configuration,
  // generation poll, API-key check, experiment hook) and `body` (the request body's bytes arriving and being
  // read) is measured on all of its own work and without the body's arrival; an older tree reports neither, and
  // its overhead is the legacy figure below (the handler's own time plus `auth` and `generation`).
  const hasPre = samples.every((s) => s.timing.pre !== undefined);
  const hasBody = samples.every((s) => s.timing.body !== undefined);
  const handler = (s: Sample) => s.timing.total - s.timing.infer - s.timing.load - s.timing.tokenize;
  const before = (s: Sample) => (s.timing.auth ?? 0) + (s.timing.generation ?? 0);
  // legacy: total - load - tokenize - infer + auth + generation (includes the body's arrival, not the rest of
  // the middleware); the same formula on every tree, so trees compare on it
  const legacy = samples.map((s) => handler(s) + before(s));
  const overhead = samples.map(
    (s) => handler(s) - (s.timing.body ?? 0) + (hasPre ? s.timing.pre : before(s)),
  );
  // Where the overhead goes: the API-key check, the rest of the middleware before the handler, the route
  // (catalog lookup + policy), the generation poll (present only on requests that read the counter) and the
  // rest of the handler (JSON parse, validation, tensors, session lookup, the feedback token, headers); the
  // body's arrival is reported beside it.
  const authMs = samples.map((s) => s.timing.auth ?? 0);
  const generationMs = samples.map((s) => s.timing.generation ?? 0);
  const preOtherMs = samples.map((s) => (hasPre ? s.timing.pre - before(s) : 0));
  const bodyMs = samples.map((s) => s.timing.body ?? 0);
  const restMs = samples.map((s) => handler(s) - s.timing.route - (s.timing.body ?? 0));
  if (process.env.BENCH_DUMP) {
    const sums: Record<string, number> = {};
    for (const s of samples) for (const [k, v] of Object.entries(s.timing)) sums[k] = (sums[k] ?? 0) + v;
    console.error(
      `  means ${Object.entries(sums)
        .map(([k, v]) => `${k} ${(v / samples.length).toFixed(3)}`)
        .join(", ")}`,
    );
    const sorted = [...samples].sort((a, b) => a.e2eMs - b.e2eMs);
    for (const s of sorted.slice(-12))
      console.error(`  e2e ${fmt(s.e2eMs)}  server ${JSON.stringify(s.timing)}`);
  }
  return {
    interleaved,
    concurrency,
    n: samples.length,
    errors: failures.length,
    firstErrors: failures.slice(0, 5),
    /** Requests sent again after wrangler dev's proxy dropped their connection (see PROXY_DROP). */
    proxyRetries,
    cpuCoreShare,
    servedBy,
    e2e: { p50Ms: p50(e2e), p95Ms: p95(e2e) },
    throughputRps: samples.length / wallS,
    infer: { p50Ms: p50(inferMs), p95Ms: p95(inferMs), meanMs: mean(inferMs) },
    route: { p50Ms: p50(routeMs), p95Ms: p95(routeMs), meanMs: mean(routeMs) },
    overhead: { p50Ms: p50(overhead), p95Ms: p95(overhead), meanMs: mean(overhead) },
    overheadLegacy: { p50Ms: p50(legacy), p95Ms: p95(legacy), meanMs: mean(legacy) },
    stagesReported: { pre: hasPre, body: hasBody },
    overheadParts: {
      authMeanMs: mean(authMs),
      preOtherMeanMs: mean(preOtherMs),
      bodyMeanMs: mean(bodyMs),
      routeMeanMs: mean(routeMs),
      restMeanMs: mean(restMs),
      generationMeanMs: mean(generationMs),
      generationReads: generationMs.filter((_, i) => samples[i].timing.generation !== undefined).length,
    },
  };
}

/** What a profiled sample's module counts as: the runtime's work, the tokenizer, the VM's, or the gateway's. */
function partOf(module: string): "onnxruntime" | "tokenizer" | "vm" | "gateway" {
  if (module === "(wasm)" || module.includes("onnxruntime-web")) return "onnxruntime";
  if (module.includes("@huggingface/tokenizers")) return "tokenizer";
  if (module.startsWith("(")) return "vm"; // (program), (gc), (native): workerd and V8 outside any module
  return "gateway"; // src/ and the libraries it calls (hono, zod, drizzle)
}

/**
 * The gateway's own CPU per request, from `n` requests at concurrency 1 under a CPU profile of the Worker's
 * isolate (bench/lib/cpu-profile.ts). The isolate thread's CPU time over the requests (/proc, kernel ticks) is
 * split by the profile's samples: a part's CPU is the thread's CPU times the part's share of the busy samples.
 * The share, not samples x interval: on a loaded machine V8's sampler thread is itself preempted and takes
 * fewer samples than the interval implies (`samplingCoverage`, 1.0 on an idle machine), but it still lands at
 * random points of the isolate's work, so the shares hold.
 */
async function profiled(url: string, target: Target, inspectorPort: number, n: number) {
  const intervalUs = Number(args["profile-interval"]);
  const inspector = await Inspector.connect(inspectorPort);
  try {
    const sources = await inspector.scriptSources();
    // fresh keys, each sent at most 500 requests (the per-key rate limit, as in level())
    const keys: string[] = [];
    for (let i = 0; i < (treeHasKeys ? Math.ceil(n / 500) : 1); i++)
      keys.push(treeHasKeys ? await mintDevKey(url, dev!.adminToken, ["infer"]) : "");
    for (let i = 0; i < 20; i++) await infer(url, target, keys[0]);
    const workerPid = groupPids(dev!.pid).workerdWorker?.[0];
    if (!workerPid) throw new Error("profile: the Worker's workerd process was not found");
    await inspector.startProfile(intervalUs);
    const threads0 = threadCpuMs(workerPid);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await infer(url, target, keys[Math.floor(i / 500)]);
    const wallMs = performance.now() - t0;
    const threads1 = threadCpuMs(workerPid);
    const profile = await inspector.stopProfile();
    const a = attribute(profile, sources);
    // The isolate runs on the process's main thread (named like the process; the busiest such thread).
    const isolate = [...threads1]
      .filter(([, t]) => t.name === "workerd")
      .map(([tid, t]) => t.ms - (threads0.get(tid)?.ms ?? 0))
      .reduce((x, y) => Math.max(x, y), 0);
    const perSample = isolate / a.busySamples / n; // CPU ms per request that one busy sample stands for
    const parts = { gateway: 0, onnxruntime: 0, tokenizer: 0, vm: 0 };
    for (const [module, k] of Object.entries(a.byModule)) parts[partOf(module)] += k * perSample;
    const top = (r: Record<string, number>, keep: (k: string) => boolean, count: number) =>
      Object.entries(r)
        .filter(([k]) => keep(k))
        .sort((x, y) => y[1] - x[1])
        .slice(0, count)
        .map(([name, k]) => ({ name, cpuMsPerRequest: k * perSample }));
    return {
      requests: n,
      intervalUs,
      wallMsPerRequest: wallMs / n,
      isolateCpuMsPerRequest: isolate / n,
      samplingCoverage: (a.busySamples * intervalUs) / 1000 / isolate,
      busySamples: a.busySamples,
      cpuMsPerRequest: parts,
      gatewayModules: top(a.byModule, (m) => partOf(m) === "gateway", 20),
      gatewayFunctions: top(a.byFunction, (f) => partOf(f.slice(0, f.indexOf(":"))) === "gateway", 30),
      ownInclusive: top(a.inclusive, () => true, 30),
    };
  } finally {
    inspector.close();
  }
}

/** onnxruntime-node on one thread, same bytes and input; `once()` times one run. */
async function ortNodeBaseline() {
  const session = await ortNode.InferenceSession.create(modelBytes, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const feeds = {
    input_ids: new ortNode.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [batch, seq]),
    attention_mask: new ortNode.Tensor("int64", BigInt64Array.from(ids.map(() => 1n)), [batch, seq]),
  };
  for (let i = 0; i < 5; i++) await session.run(feeds);
  return {
    once: async () => {
      const t0 = performance.now();
      await session.run(feeds);
      return performance.now() - t0;
    },
    release: () => session.release(),
  };
}

const fmt3 = (x: number) => x.toFixed(3);
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

const loadAtStart = os.loadavg();

/** A tree from before API keys answers 404 on `POST /v1/keys` (`infer` is the one scope every tree knows). */
async function probeKeys(url: string, adminToken: string): Promise<boolean> {
  const res = await fetch(`${url}/v1/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ scopes: ["infer"] }),
  });
  await res.arrayBuffer();
  return res.status !== 404;
}

/** The served tree's commit (and whether it has uncommitted changes), for the JSON. */
function treeCommit(tree: string): string {
  const git = (...a: string[]) => execFileSync("git", a, { cwd: tree, encoding: "utf8" }).trim();
  try {
    return `${git("rev-parse", "--short", "HEAD")}${git("status", "--porcelain", "--untracked-files=no") ? "+changes" : ""}`;
  } catch {
    return "unknown";
  }
}

type Variants = "dense" | "family";

/**
 * One served tree, from wrangler start to stop: registration, the cold request, warm-up and every concurrency
 * level. `interleaveNode` alternates the c=1 requests with onnxruntime-node runs (single runs only).
 */
async function measure(tree: string | undefined, variants: Variants, interleaveNode: boolean) {
  const profileRequests = Number(args.profile);
  const inspectorPort = await freePort();
  dev = await startWranglerDev({
    ...(args.auth === "off" ? { vars: { AUTH: "off" } } : {}),
    tree,
    mintKey: false,
    snapshot: true,
    args: ["--inspector-port", String(inspectorPort)],
  });
  const { url } = dev;
  treeHasKeys = await probeKeys(url, dev.adminToken);
  if (treeHasKeys) dev.apiKey = await mintDevKey(url, dev.adminToken, ["infer"]);
  else console.error("the served tree has no POST /v1/keys: requests carry no API key");
  console.error(`wrangler dev ready on ${url} (${tree ?? "this tree"}, ${variants})`);
  const family = variants === "family" ? await registerFamily(url, dev.adminToken, dev.apiKey) : undefined;
  const target = family ? family.target : await registerDense(url, dev.adminToken);
  if (family)
    console.error(
      `router: serves v${family.route.chosen} of ${family.members.map((m) => `v${m.version} ${m.label}`).join(", ")}: ${family.route.reason}`,
    );

  const cold = await infer(url, target);
  console.error(`cold first request: ${fmt(cold.e2eMs)} ms`);
  for (let i = 0; i < 10; i++) await infer(url, target); // warm-up

  // Concurrency 1 alternates gateway requests with onnxruntime-node runs, so both see the same machine load.
  const baseline = interleaveNode ? await ortNodeBaseline() : undefined;
  const levels = [];
  for (const c of CONCURRENCY) {
    const n = Math.max(requests, c * 10);
    console.error(`concurrency ${c}: ${n} requests...`);
    levels.push(await level(url, target, c, n, c === 1 ? baseline?.once : undefined));
    console.error(
      `  ${levels.at(-1)!.throughputRps.toFixed(1)} req/s, ${levels.at(-1)!.errors} errors, ${levels.at(-1)!.proxyRetries} proxy retries, p50 ${fmt(levels.at(-1)!.e2e.p50Ms)} ms, p95 ${fmt(levels.at(-1)!.e2e.p95Ms)} ms, served by ${JSON.stringify(levels.at(-1)!.servedBy)}`,
    );
  }
  const profile =
    profileRequests > 0 ? await profiled(url, target, inspectorPort, profileRequests) : undefined;
  dev.stop();
  dev = undefined;
  return { cold, levels, baseline, family, profile };
}

/** The served tree, as the JSON records it. */
const treeRecord = (tree: string | undefined) => ({
  path: path.resolve(tree ?? root),
  commit: treeCommit(tree ?? root),
  apiKeys: treeHasKeys,
});

const machineRecord = () => ({
  cpus: os.cpus().length,
  cpu: os.cpus()[0]?.model,
  node: process.version,
  loadAverageAtStart: loadAtStart,
  loadAverageAtEnd: os.loadavg(),
});

async function single() {
  const variants = args.variants as Variants;
  const { cold, levels, baseline, family, profile } = await measure(args.tree, variants, true);

  const params = graph.parameterCount();
  const nodeTimes = levels.find((l) => l.concurrency === 1)?.interleaved ?? [];
  if (nodeTimes.length === 0) for (let i = 0; i < 50; i++) nodeTimes.push(await baseline!.once());
  await baseline!.release();
  const node = { p50Ms: p50(nodeTimes), p95Ms: p95(nodeTimes), n: nodeTimes.length };
  const levelResults = levels.map(({ interleaved: _, ...l }) => l);

  const rows: string[][] = [
    ["measure", "p50 ms", "p95 ms", "note"],
    [
      "cold first request (e2e)",
      fmt(cold.e2eMs),
      "",
      `server: load ${fmt(cold.timing.load)} (r2 ${fmt(cold.timing.r2)}, sha256 ${fmt(cold.timing.verify)}, session ${fmt(cold.timing.session)}), infer ${fmt(cold.timing.infer)}`,
    ],
    [
      "ORT-web infer in workerd (c=1)",
      fmt(levels[0].infer.p50Ms),
      fmt(levels[0].infer.p95Ms),
      "server-timing infer",
    ],
    [
      "onnxruntime-node, 1 thread",
      fmt(node.p50Ms),
      fmt(node.p95Ms),
      family
        ? "today's dense bytes (not the routed variant's)"
        : "same bytes and input, interleaved with c=1",
    ],
    [
      "gateway route (lookup+policy)",
      fmt(levels[0].route.p50Ms),
      fmt(levels[0].route.p95Ms),
      `server-timing route; mean ${fmt(levels[0].route.meanMs)}`,
    ],
    [
      "gateway overhead (all but infer)",
      fmt(levels[0].overhead.p50Ms),
      fmt(levels[0].overhead.p95Ms),
      `${
        levels[0].stagesReported.pre
          ? "pre + total - load - tokenize - infer - body"
          : "total - load - tokenize - infer + auth + generation"
      }; mean ${fmt(levels[0].overhead.meanMs)}`,
    ],
    [
      "  of which (means)",
      "",
      "",
      `auth ${fmt(levels[0].overheadParts.authMeanMs)}, other middleware ${fmt(levels[0].overheadParts.preOtherMeanMs)}, route ${fmt(levels[0].overheadParts.routeMeanMs)}, rest ${fmt(levels[0].overheadParts.restMeanMs)}; generation poll ${fmt(levels[0].overheadParts.generationMeanMs)} (${levels[0].overheadParts.generationReads} reads)`,
    ],
    [
      "request body arrival + read",
      "",
      "",
      levels[0].stagesReported.body
        ? `server-timing body, beside the overhead; mean ${fmt(levels[0].overheadParts.bodyMeanMs)}`
        : "not reported by this tree (inside rest)",
    ],
    [
      "legacy overhead formula",
      fmt(levels[0].overheadLegacy.p50Ms),
      fmt(levels[0].overheadLegacy.p95Ms),
      `total - load - tokenize - infer + auth + generation (any tree); mean ${fmt(levels[0].overheadLegacy.meanMs)}`,
    ],
  ];
  if (profile) {
    const c = profile.cpuMsPerRequest;
    rows.push([
      "gateway CPU per request",
      "",
      "",
      `mean ${fmt3(c.gateway)} ms (CPU profile, ${profile.requests} requests at c=1); onnxruntime ${fmt3(c.onnxruntime)}, tokenizer ${fmt3(c.tokenizer)}, V8/workerd ${fmt3(c.vm)}; sampling coverage ${profile.samplingCoverage.toFixed(2)}`,
    ]);
  }
  for (const l of levels) {
    rows.push([
      `end to end, concurrency ${l.concurrency}`,
      fmt(l.e2e.p50Ms),
      fmt(l.e2e.p95Ms),
      `${l.throughputRps.toFixed(1)} req/s; infer p50 ${fmt(l.infer.p50Ms)} ms; ${l.errors} errors`,
    ]);
  }
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const line = (r: string[]) =>
    r.map((c, j) => (j === 0 || j === 3 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join("  ");
  console.log(
    `\nGateway inference: ${family ? "the reference family behind the router" : `${args.model} encoder (${(params / 1e6).toFixed(2)} M params)`}, batch ${batch} x seq ${seq}`,
  );
  console.log(line(rows[0]));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows.slice(1)) console.log(line(r));
  const ratio = levels[0].infer.p50Ms / node.p50Ms;
  console.log(`\nORT-web in workerd / onnxruntime-node (1 thread): ${ratio.toFixed(2)}x`);
  console.log(
    `gateway overhead (mean) share of end-to-end p50 at c=1: ${((100 * levels[0].overhead.meanMs) / levels[0].e2e.p50Ms).toFixed(1)}%`,
  );

  const result = {
    benchmark: "gateway",
    date: new Date().toISOString(),
    machine: machineRecord(),
    timerResolution: "workerd under wrangler dev reports whole milliseconds in server-timing",
    model: {
      kind: args.model,
      config: { ...REFERENCE_ENCODER, ...encoderConfig },
      params,
      bytes: modelBytes.byteLength,
      sha256: await sha256(modelBytes),
    },
    ...(family ? { family: { members: family.members, sla: family.sla, route: family.route } } : {}),
    input: { batch, seq },
    tree: treeRecord(args.tree),
    cold: { e2eMs: cold.e2eMs, serverTiming: cold.timing },
    ortNode1Thread: node,
    levels: levelResults,
    ortWebOverNodeRatio: ratio,
    ...(profile ? { profile } : {}),
  };
  const out = args.out ? path.resolve(args.out) : path.join(root, "bench-results/gateway.json");
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${path.relative(process.cwd(), out)}`);
  if (!args.out) updateBenchmarksPage();
}

/** The compared configurations, in the order each round runs them. */
const SIDES = [
  { side: "baseline", what: "baseline tree, today's one dense fp32 variant", variants: "dense" as const },
  { side: "dense", what: "this tree, the same dense fp32 variant", variants: "dense" as const },
  {
    side: "family",
    what: "this tree, the reference family behind the SLA router",
    variants: "family" as const,
  },
];

type Measured = Awaited<ReturnType<typeof measure>>;
const summary = (m: Measured) =>
  m.levels.map((l) => ({
    concurrency: l.concurrency,
    n: l.n,
    errors: l.errors,
    firstErrors: l.firstErrors,
    proxyRetries: l.proxyRetries,
    cpuCoreShare: l.cpuCoreShare,
    throughputRps: l.throughputRps,
    p50Ms: l.e2e.p50Ms,
    p95Ms: l.e2e.p95Ms,
    inferP50Ms: l.infer.p50Ms,
    servedBy: l.servedBy,
  }));

/**
 * What a dynamic batcher could save, from bench:edge's committed run: ORT-web inside workerd, the same reference
 * variants, one row (b1) against the per-row cost of a batch of 32 (b32 / 32).
 */
function batchingEvidence() {
  try {
    const edge = JSON.parse(readFileSync(path.join(root, "bench-results/edge.json"), "utf8"));
    const ref = edge.models.find((m: { model: string }) => m.model === "reference");
    const cell = (v: { timings: { workerd?: Record<string, { p50Ms: number } | null> } }, c: string) =>
      v.timings.workerd?.[c]?.p50Ms;
    return {
      source: `bench:edge (${edge.generatedAt.slice(0, 10)}, bench-results/edge.json)`,
      cells: ["b1x128", "b32x128"],
      variants: ref.variants
        .filter((v: { target: string; precision: string }) => v.target !== "0.2")
        .map((v: { target: string; precision: string; timings: never }) => ({
          label: `${v.target} ${v.precision}`,
          b1Ms: cell(v, "b1x128"),
          perRowB32Ms: (cell(v, "b32x128") ?? Number.NaN) / 32,
        })),
    };
  } catch {
    return null; // no bench:edge result committed
  }
}

/** Baseline tree vs this tree, one run, alternating; writes bench-results/gateway-throughput.json. */
async function compare() {
  const baseTree = path.resolve(args.compare!);
  const rounds = Number(args.rounds);
  const runs: Record<string, unknown>[] = [];
  let family: Measured["family"];
  const bySide = new Map<string, ReturnType<typeof summary>[]>();
  for (let round = 1; round <= rounds; round++)
    for (const s of SIDES) {
      const tree = s.side === "baseline" ? baseTree : undefined;
      const m = await measure(tree, s.variants, false);
      family ??= m.family;
      const levels = summary(m);
      bySide.set(s.side, [...(bySide.get(s.side) ?? []), levels]);
      runs.push({ side: s.side, what: s.what, round, tree: treeRecord(tree), coldMs: m.cold.e2eMs, levels });
    }
  // Per side and level, the median over rounds of each figure; ratios are family (or dense) over baseline.
  const med = (xs: number[]) => p50(xs);
  const agg = (side: string) =>
    CONCURRENCY.map((c, i) => {
      const ls = bySide.get(side)!.map((r) => r[i]);
      return {
        concurrency: c,
        throughputRps: med(ls.map((l) => l.throughputRps)),
        p50Ms: med(ls.map((l) => l.p50Ms)),
        p95Ms: med(ls.map((l) => l.p95Ms)),
        errors: ls.reduce((a, l) => a + l.errors, 0),
        proxyRetries: ls.reduce((a, l) => a + l.proxyRetries, 0),
      };
    });
  const sides = Object.fromEntries(SIDES.map((s) => [s.side, agg(s.side)]));
  const ratio = (side: string) =>
    CONCURRENCY.map((c, i) => ({
      concurrency: c,
      throughput: sides[side][i].throughputRps / sides.baseline[i].throughputRps,
      p50: sides[side][i].p50Ms / sides.baseline[i].p50Ms,
      p95: sides[side][i].p95Ms / sides.baseline[i].p95Ms,
    }));
  const result = {
    benchmark: "gateway-throughput",
    date: new Date().toISOString(),
    command: `npm run bench:gateway -- ${process.argv.slice(2).join(" ")}`,
    machine: machineRecord(),
    input: { batch, seq, requestsPerLevel: CONCURRENCY.map((c) => Math.max(requests, c * 10)) },
    note: "one run: each round serves the baseline tree, then this tree with the same dense variant, then this tree with the family, each on a fresh wrangler dev (snapshot bundle) and fresh local D1/R2; the machine is shared with other jobs, so figures move between runs and only ratios within this run are quoted",
    sides: SIDES.map((s) => ({ ...s, levels: sides[s.side] })),
    ratios: { denseOverBaseline: ratio("dense"), familyOverBaseline: ratio("family") },
    family: family
      ? { description: REFERENCE_DESCRIPTION, members: family.members, sla: family.sla, route: family.route }
      : null,
    batching: batchingEvidence(),
    runs,
  };
  const out = args.out ? path.resolve(args.out) : path.join(root, "bench-results/gateway-throughput.json");
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  for (const s of SIDES)
    console.log(
      `${s.side.padEnd(8)} ${sides[s.side].map((l) => `c=${l.concurrency}: ${l.throughputRps.toFixed(1)} req/s p50 ${fmt(l.p50Ms)} p95 ${fmt(l.p95Ms)} (${l.errors} errors, ${l.proxyRetries} proxy retries)`).join(" | ")}`,
    );
  for (const [k, r] of Object.entries(result.ratios))
    console.log(
      `${k}: ${r.map((x) => `c=${x.concurrency} throughput ${x.throughput.toFixed(2)}x p50 ${x.p50.toFixed(2)}x`).join(", ")}`,
    );
  console.log(`\nwrote ${path.relative(process.cwd(), out)}`);
  if (!args.out) updateBenchmarksPage();
}

async function main() {
  if (loadAtStart[0] > os.cpus().length) {
    console.error(
      `warning: load average ${loadAtStart[0].toFixed(1)} on ${os.cpus().length} CPUs; latency figures will be noisy`,
    );
  }
  if (args.auth !== "on" && args.auth !== "off")
    throw new Error(`--auth must be on or off, got '${args.auth}'`);
  if (args.variants !== "dense" && args.variants !== "family")
    throw new Error(`--variants must be dense or family, got '${args.variants}'`);
  if (!Number.isInteger(Number(args.rounds)) || Number(args.rounds) < 1)
    throw new Error(`--rounds must be a positive integer, got '${args.rounds}'`);
  if (!(Number(args.margin) > 0 && Number(args.margin) < 1))
    throw new Error(`--margin must be in (0, 1), got '${args.margin}'`);
  console.error(
    `model: ${args.model} encoder, ${(graph.parameterCount() / 1e6).toFixed(2)} M params, ${(modelBytes.byteLength / 2 ** 20).toFixed(1)} MB; input batch ${batch} x seq ${seq}`,
  );
  await (args.compare ? compare() : single());
}

main()
  .catch((err) => {
    console.error(err);
    if (dev) {
      const log = dev.log();
      const notable = log.split("\n").filter((l) => !/\] (POST|GET|PATCH) \S+ 200 OK/.test(l));
      console.error(`\nwrangler log, without its 200 lines (last 60):\n${notable.slice(-60).join("\n")}`);
    }
    process.exitCode = 1;
  })
  .finally(() => {
    dev?.stop();
  });
