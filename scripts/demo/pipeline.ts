/**
 * The demo end to end: build (or reuse) the spam variants, start the gateway under wrangler dev, register and
 * activate them, set an accuracy SLA, classify the test texts through the gateway per pinned variant, and ask the
 * router which variant it serves. Returns the table's data; the gateway is stopped unless `keepRunning` (and
 * always on failure).
 */
import os from "node:os";
import path from "node:path";
import type { IoSignature } from "../../src/core/manifest";
import { loadTokenizerFile } from "../../src/trainer-node/data/tokenizer-file";
import { startWranglerDev, type WranglerDev } from "../lib/wrangler";
import {
  DEMO_MARGIN,
  DEMO_MODEL,
  DEMO_TASK,
  type DemoProfile,
  MAX_TOKENS,
  REQUEST_BATCH,
  ROOT,
} from "./config";
import {
  explainRoute,
  measureThroughGateway,
  putAccuracySla,
  type RouteExplanation,
  registerVariants,
  routedRequest,
} from "./gateway";
import { buildVariants, type DemoVariant, loadDemoBase, loadDemoData } from "./variants";

export interface DemoOptions {
  profile: DemoProfile;
  /** Base model file (full profile; default models/base/model.onnx). */
  baseFile?: string;
  /** Cache and scratch directory (runs/demo for the full profile). */
  workDir: string;
  retrain: boolean;
  saveCheckpoints: boolean;
  /** SLA minimum accuracy (point estimate); when given, no margin is set. */
  slaMin?: number;
  /** SLA non-inferiority margin to the best variant, proven at 95% (default DEMO_MARGIN when slaMin is not given). */
  slaMargin?: number;
  keepRunning: boolean;
  log: (line: string) => void;
}

export interface DemoRow {
  model: string;
  version: number;
  variant: string;
  target: number;
  precision: "fp32" | "int8";
  /** Bytes of the registered ONNX model. */
  bytes: number;
  /** Fraction of gated-layer weights the exported model no longer has. */
  removed: number;
  params: number;
  baseParams: number;
  flopsPerToken: number;
  baseFlopsPerToken: number;
  /** Measured through the gateway (pinned classify) on the test texts. */
  gateway: {
    accuracy: number;
    correct: number;
    total: number;
    p50RequestMs: number;
    p50InferMs: number;
    coldMs: number;
    requests: number;
  };
  /** The manifest's figures (what the registry stores and the router compares). */
  /** latencyP50Ms: onnxruntime-node; edgeLatencyP50Ms: onnxruntime-web wasm (null: not measured). */
  registered: {
    accuracy: number;
    latencyP50Ms: number;
    edgeLatencyP50Ms: number | null;
    latencyRuntime: string;
  };
  /** The router's verdict on this variant for the SLA (chosen, eligible, below_sla, ...) and why. */
  verdict: string;
  why: string;
  /** The margin test against the most accurate variant (absent for that variant, or without a margin SLA). */
  margin?: RouteExplanation["candidates"][number]["margin"];
  chosen: boolean;
  dir: string;
  checkpoint: { source: string; file: string };
  cached: boolean;
}

export interface DemoResult {
  date: string;
  profile: string;
  wallSeconds: number;
  machine: { cpus: number; cpu?: string; loadAverage: number[]; node: string };
  base: { source: string; sha256: string; tokenizer: string };
  /** The model's inputs and outputs (the same for every variant). */
  io: IoSignature;
  task: string;
  testSet: { name: string; size: number; sha256: string };
  requestBatch: number;
  maxTokens: number;
  sla: { min: number; margin: number | null; rule: string };
  rows: DemoRow[];
  router: {
    chosen: number | null;
    outcome: string;
    reason: string;
    policy: string;
    /** x-sluice-variant of an unpinned classify request, which must be the chosen variant. */
    servedRoutedRequest: string;
    /** When the SLA's margin leaves the int8 variant out: the router asked again at a margin its bound passes. */
    int8?: Int8Route;
  };
  steps: { step: string; seconds: number }[];
  /** Texts and labels the gateway saw and its predictions per version, for checking (not in the JSON file). */
  test: { texts: string[]; labels: string[]; predictions: Record<number, string[]> };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

export async function runDemo(o: DemoOptions): Promise<{ result: DemoResult; gateway?: WranglerDev }> {
  const started = performance.now();
  const steps: DemoResult["steps"] = [];
  const TOTAL = 6;
  const step = async <T>(n: number, what: string, fn: () => Promise<T> | T): Promise<T> => {
    o.log(`[${n}/${TOTAL}] ${what}`);
    const t0 = performance.now();
    const out = await fn();
    const seconds = (performance.now() - t0) / 1000;
    steps.push({ step: what, seconds });
    o.log(`      done in ${seconds.toFixed(1)} s`);
    return out;
  };

  const { base, tokenizer, data } = await step(1, "loading the base model and the spam task", () => {
    const base = loadDemoBase(o.profile, o.baseFile);
    const tokenizer = loadTokenizerFile(base.tokenizerFile);
    const data = loadDemoData(o.profile, tokenizer);
    o.log(
      `      base: ${base.source} (sha256 ${base.info.sha256.slice(0, 12)}…); ${data.train.ids.length} training, ` +
        `${data.validation.ids.length} validation, ${data.test.texts.length} test texts`,
    );
    return { base, tokenizer, data };
  });

  const variants = await step(
    2,
    "building the spam variants (targets 0, 0.2, 0.3, 0.4; 0.4 also in int8)",
    () =>
      buildVariants({
        profile: o.profile,
        base,
        data,
        tokenizer,
        workDir: o.workDir,
        retrain: o.retrain,
        saveCheckpoints: o.saveCheckpoints,
        log: o.log,
      }),
  );

  const dev = await step(
    3,
    "starting the gateway (wrangler dev, local D1 + R2 in a temporary directory)",
    () => startWranglerDev({ vars: { CLASSIFY_MAX_TOKENS: String(MAX_TOKENS) } }),
  );
  try {
    const { url, adminToken, apiKey } = dev;
    o.log(`      ${url}`);
    o.log(`      API key (infer, feedback; minted with POST /v1/keys): ${apiKey}`);

    const slaMin = o.slaMin ?? 0;
    const slaMargin =
      o.slaMin !== undefined && o.slaMargin === undefined ? null : (o.slaMargin ?? DEMO_MARGIN);
    const slaRule =
      slaMargin === null
        ? "given with --sla: registered accuracy at least this"
        : `non-inferiority: serve the cheapest variant proven, at 95% confidence on the paired test-split evidence, to be at most ${(100 * slaMargin).toFixed(1)} points less accurate than the most accurate one${o.slaMargin !== undefined ? " (--margin)" : ""}`;
    const versions = await step(
      4,
      "registering the variants (sluice push), activating them, setting the SLA",
      async () => {
        const versions = await registerVariants(url, adminToken, variants, o.log);
        await putAccuracySla(url, adminToken, slaMargin === null ? { min: slaMin } : { margin: slaMargin });
        o.log(`      SLA for task ${DEMO_TASK}: ${slaRule}`);
        return versions;
      },
    );

    const labelNames = data.test.labels.map((l) => data.labels[l]);
    const measured = await step(
      5,
      `classifying ${data.test.texts.length} test texts through POST /v1/models/${DEMO_MODEL}/versions/:v/classify (${REQUEST_BATCH} per request)`,
      () =>
        measureThroughGateway(
          url,
          apiKey,
          variants.map((v) => versions.get(v.label)!),
          data.test.texts,
          labelNames,
        ),
    );

    const { route, served, int8 } = await step(
      6,
      `asking the router (GET /v1/models/${DEMO_MODEL}/route)`,
      async () => {
        const route = await explainRoute(url, apiKey);
        const served = await routedRequest(url, apiKey, data.test.texts[0]);
        const int8 = await int8AtItsBound(url, adminToken, apiKey, route, versions, variants, slaMargin);
        return { route, served, int8 };
      },
    );

    const rows: DemoRow[] = variants.map((v, i) => {
      const version = versions.get(v.label)!;
      const g = measured[i];
      const candidate = route.candidates.find((c) => c.version === version);
      const s = v.manifest.sparsity;
      return {
        model: DEMO_MODEL,
        version,
        variant: v.label,
        target: v.target,
        precision: v.precision,
        bytes: v.manifest.artifact.bytes,
        removed: s.removed,
        params: s.params,
        baseParams: s.baseParams,
        flopsPerToken: s.flopsPerToken,
        baseFlopsPerToken: s.baseFlopsPerToken,
        gateway: {
          accuracy: g.accuracy,
          correct: g.correct,
          total: g.total,
          p50RequestMs: median(g.requestMs),
          p50InferMs: median(g.inferMs),
          coldMs: g.coldMs,
          requests: g.requestMs.length,
        },
        registered: {
          accuracy: v.manifest.metrics.accuracy,
          latencyP50Ms: v.manifest.latency.p50Ms,
          edgeLatencyP50Ms: v.manifest.latency.edge?.p50Ms ?? null,
          latencyRuntime: `${v.manifest.latency.runtime}, batch ${v.manifest.latency.batch} x ${v.manifest.latency.seqLen}`,
        },
        verdict: candidate?.verdict ?? "unknown",
        why: candidate?.why ?? "",
        margin: candidate?.margin,
        chosen: route.chosen === version,
        dir: path.relative(ROOT, v.dir),
        checkpoint: v.checkpoint,
        cached: v.cached,
      };
    });

    const result: DemoResult = {
      date: new Date().toISOString(),
      profile: o.profile.name,
      wallSeconds: (performance.now() - started) / 1000,
      machine: {
        cpus: os.availableParallelism(),
        cpu: os.cpus()[0]?.model,
        loadAverage: os.loadavg(),
        node: process.version,
      },
      base: {
        source: base.source,
        sha256: base.info.sha256,
        tokenizer: path.relative(ROOT, base.tokenizerFile),
      },
      io: variants[0].manifest.io,
      task: DEMO_TASK,
      testSet: { name: data.test.name, size: data.test.texts.length, sha256: data.test.sha256 },
      requestBatch: REQUEST_BATCH,
      maxTokens: MAX_TOKENS,
      sla: { min: slaMin, margin: slaMargin, rule: slaRule },
      rows,
      router: {
        chosen: route.chosen,
        outcome: route.outcome,
        reason: route.reason,
        policy: route.policy,
        servedRoutedRequest: served.variant,
        ...(int8 ? { int8 } : {}),
      },
      steps,
      test: {
        texts: data.test.texts,
        labels: labelNames,
        predictions: Object.fromEntries(measured.map((g) => [g.version, g.predictions])),
      },
    };
    if (!o.keepRunning) dev.stop();
    return { result, gateway: o.keepRunning ? dev : undefined };
  } catch (err) {
    dev.stop();
    throw err;
  }
}

/** The router's answer at the smallest margin (in half points) the int8 variant's paired lower bound passes. */
export interface Int8Route {
  version: number;
  label: string;
  /** Its lower bound on accuracy(int8) − accuracy(best) under the demo's SLA. */
  lowerBound: number;
  margin: number;
  chosen: number | null;
  reason: string;
  servedRoutedRequest: string;
}

/**
 * When the SLA's margin leaves the int8 variant just outside (its paired bound below −margin), sets the SLA to
 * the smallest half-point margin its bound passes, asks the router and an unpinned request which variant it
 * serves, and puts the demo's SLA back. Nothing when the int8 variant is already served or the SLA has no margin.
 */
async function int8AtItsBound(
  url: string,
  adminToken: string,
  apiKey: string,
  route: RouteExplanation,
  versions: Map<string, number>,
  variants: DemoVariant[],
  slaMargin: number | null,
): Promise<Int8Route | undefined> {
  const int8 = variants.find((v) => v.precision === "int8");
  const version = int8 ? versions.get(int8.label) : undefined;
  const lower = route.candidates.find((c) => c.version === version)?.margin?.interval[0];
  if (slaMargin === null || !int8 || version === undefined || lower === undefined || route.chosen === version)
    return undefined;
  const margin = Math.ceil((-lower * 1e4 + 1) / 50) / 200; // strictly past the bound, in half points
  await putAccuracySla(url, adminToken, { margin });
  try {
    const again = await explainRoute(url, apiKey);
    const served = await routedRequest(url, apiKey, "a routed request under the wider margin");
    return {
      version,
      label: int8.label,
      lowerBound: lower,
      margin,
      chosen: again.chosen,
      reason: again.reason,
      servedRoutedRequest: served.variant,
    };
  } finally {
    await putAccuracySla(url, adminToken, { margin: slaMargin });
  }
}
