/**
 * A/B simulation through the real gateway (`wrangler dev`: workerd, onnxruntime-web, local D1/R2, miniflare's
 * queue). Two variants of a tiny classifier with different sizes (so arm B is really faster: fewer layers),
 * traffic from simulated users (`x-sluice-user`), exposure events through the queue, and feedback labels drawn so
 * that each arm's accuracy on the traffic is known (the true label equals the served prediction with probability
 * `accuracy[arm]`). The analysis must recover both differences; then an A/A run (two variants of the same size
 * and the same accuracy) must not declare a winner. Prints tables; writes bench-results/sim-ab.json.
 *
 *   npm run sim:ab -- [--units 1000] [--concurrency 1] [--acc-a 0.92] [--acc-b 0.84]
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { buildEncoder, type EncoderConfig } from "../src/core/models/encoder";
import type { ExperimentResults } from "../src/gateway/experiments/analyze";
import { GatewayClient } from "../test/shared/gateway-client";
import { seededUniform } from "../test/shared/random";
import { startWranglerDev, type WranglerDev } from "../test/shared/wrangler-dev";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    units: { type: "string", default: "1000" },
    // 1 by default: sequential clients keep server-side latency free of queueing behind other requests.
    concurrency: { type: "string", default: "1" },
    "acc-a": { type: "string", default: "0.92" },
    "acc-b": { type: "string", default: "0.84" },
    seed: { type: "string", default: "1" },
  },
});
const UNITS = Number(args.units);
const CONCURRENCY = Number(args.concurrency);
const ACC_A = Number(args["acc-a"]);
const ACC_B = Number(args["acc-b"]);

const root = path.resolve(import.meta.dirname, "..");
const TOKENIZER = readFileSync(path.join(root, "models/tokenizer.json"), "utf8");
const LABELS = ["ham", "spam"];

/** Same family, different depth: B has a quarter of A's layers, so it is measurably faster. */
const BASE: Partial<EncoderConfig> = {
  layout: "distilbert",
  vocabSize: 4096,
  hidden: 128,
  heads: 4,
  ffn: 512,
  maxPositions: 128,
  numLabels: 2,
  initStd: 0.3,
};
const LARGE = { ...BASE, layers: 8 };
const SMALL = { ...BASE, layers: 2 };

const WORDS =
  "the offer free meeting report prize claim bob thursday winner account money cash urgent project schedule lunch click unsubscribe invoice team".split(
    " ",
  );
function sentence(r: () => number): string {
  const n = 16 + Math.floor(r() * 32);
  return Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(" ");
}

interface Served {
  requestId: string;
  arm: string;
  predicted: string;
  clientMs: number;
}

/** Sends one classify request per unit, `CONCURRENCY` at a time. */
async function drive(gw: GatewayClient, model: string, units: number, seed: number): Promise<Served[]> {
  const r = seededUniform(seed);
  const texts = Array.from({ length: units }, () => sentence(r));
  const served: Served[] = [];
  let next = 0;
  async function worker() {
    while (next < units) {
      const i = next++;
      const t0 = performance.now();
      const res = await fetch(`${gw.url}/v1/models/${model}/classify`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-sluice-user": `user-${seed}-${i}`,
          ...gw.keyHeaders(),
        },
        body: JSON.stringify({ text: texts[i] }),
      });
      const text = await res.text();
      const clientMs = performance.now() - t0;
      if (res.status !== 200) throw new Error(`classify: ${res.status} ${text.slice(0, 2000)}`);
      const body = JSON.parse(text) as { results: { label: string }[] };
      served.push({
        requestId: res.headers.get("x-sluice-request-id") ?? "",
        arm: res.headers.get("x-sluice-arm") ?? "",
        predicted: body.results[0].label,
        clientMs,
      });
      if (served.length % 200 === 0) process.stderr.write(`  ${served.length}/${units} requests\n`);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return served;
}

/** True labels such that arm X's prediction is right with probability accuracy[X]. */
async function sendFeedback(
  gw: GatewayClient,
  served: Served[],
  accuracy: Record<string, number>,
  seed: number,
) {
  const r = seededUniform(seed * 7919);
  const truth = served.map((s) => {
    const right = r() < accuracy[s.arm];
    return right ? s.predicted : LABELS.find((l) => l !== s.predicted)!;
  });
  let next = 0;
  async function worker() {
    while (next < served.length) {
      const i = next++;
      await gw.json(
        "POST",
        "/v1/feedback",
        { requestId: served[i].requestId, label: truth[i] },
        { admin: false },
      );
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // the accuracy the draws actually produced, per arm (what the analysis should estimate)
  const realised: Record<string, { correct: number; total: number }> = {};
  served.forEach((s, i) => {
    realised[s.arm] ??= { correct: 0, total: 0 };
    realised[s.arm].total++;
    if (truth[i] === s.predicted) realised[s.arm].correct++;
  });
  return realised;
}

interface ResultsBody {
  results: ExperimentResults;
  pendingFeedback: number;
}

/** Waits until every exposure has come through the queue (and every feedback has joined). */
async function settledResults(gw: GatewayClient, id: number, requests: number): Promise<ResultsBody> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await gw.json<ResultsBody>("GET", `/v1/experiments/${id}/results`);
    const seen = r.results.arms.reduce((n, a) => n + a.requests + a.unstickyRequests, 0);
    if (seen >= requests && r.pendingFeedback === 0) return r;
    if (Date.now() > deadline) throw new Error(`only ${seen}/${requests} exposures arrived in 120 s`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function runExperiment(
  gw: GatewayClient,
  name: string,
  model: string,
  versions: [number, number],
  accuracy: Record<string, number>,
  seed: number,
) {
  const { experiment } = await gw.json<{ experiment: { id: number } }>("POST", "/v1/experiments", {
    model,
    name,
    arms: versions.map((version) => ({ version, weight: 1 })),
    unit: "x-sluice-user",
    primaryMetric: "latency",
    guardrails: { maxErrorRate: 0.01 },
    alpha: 0.05,
    design: { kind: "fixed", plannedUnits: UNITS },
  });
  // load both arms' sessions first (pinned requests are not exposures), so no arm pays a one-off model load
  for (const version of versions) {
    await gw.json(
      "POST",
      `/v1/models/${model}/versions/${version}/classify`,
      { text: "warm up" },
      { admin: false },
    );
  }
  await gw.json("POST", `/v1/experiments/${experiment.id}/start`);
  process.stderr.write(`${name}: driving ${UNITS} users through /v1/models/${model}/classify\n`);
  const t0 = performance.now();
  const served = await drive(gw, model, UNITS, seed);
  const wallS = (performance.now() - t0) / 1000;
  const realised = await sendFeedback(gw, served, accuracy, seed);
  const r = await settledResults(gw, experiment.id, UNITS);
  await gw.json("POST", `/v1/experiments/${experiment.id}/stop`);
  return { id: experiment.id, served, realised, results: r.results, wallS };
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

function printRun(title: string, run: Awaited<ReturnType<typeof runExperiment>>, truth: string) {
  const { results } = run;
  console.log(
    `\n## ${title}  (experiment ${run.id}, ${run.served.length} users in ${run.wallS.toFixed(1)} s)`,
  );
  console.log(`truth: ${truth}`);
  console.log(
    `${"arm".padEnd(10)}${pad("units", 7)}${pad("p50 ms", 9)}${pad("p95 ms", 9)}${pad("mean ms", 9)}${pad("client p50", 12)}${pad("accuracy", 10)}  95% Wilson`,
  );
  for (const a of results.arms) {
    const letter = a.name[0];
    const client = run.served
      .filter((s) => s.arm === letter)
      .map((s) => s.clientMs)
      .sort((x, y) => x - y);
    const clientP50 = client[Math.floor(client.length / 2)] ?? Number.NaN;
    console.log(
      `${a.name.padEnd(10)}${pad(a.units, 7)}${pad(a.latency?.p50Ms.toFixed(2) ?? "-", 9)}${pad(a.latency?.p95Ms.toFixed(2) ?? "-", 9)}${pad(a.latency?.meanMs.toFixed(2) ?? "-", 9)}${pad(clientP50.toFixed(2), 12)}${pad(a.accuracy ? a.accuracy.rate.toFixed(3) : "-", 10)}  [${a.accuracy?.ci.map((x) => x.toFixed(3)).join(", ") ?? ""}]`,
    );
  }
  for (const c of results.comparisons) {
    const l = c.latency;
    const acc = c.accuracy;
    if (l) {
      console.log(
        `${c.name} vs control, mean latency: ${l.difference >= 0 ? "+" : ""}${l.difference.toFixed(2)} ms (${(l.relativeDifference * 100).toFixed(1)}%), CI [${l.ci.map((x) => x.toFixed(2)).join(", ")}], ${l.method} p=${l.pValue.toExponential(2)}`,
      );
    }
    if (acc) {
      console.log(
        `${c.name} vs control, accuracy: ${(acc.difference * 100).toFixed(1)} pts, CI [${acc.ci.map((x) => (x * 100).toFixed(1)).join(", ")}] pts, ${acc.method} p=${acc.pValue.toExponential(2)}`,
      );
    }
  }
  console.log(
    `SRM: ${results.srm.observed.join("/")} p=${results.srm.pValue.toFixed(3)}${results.srm.mismatch ? " MISMATCH" : ""}`,
  );
  console.log(
    `decision: ${results.decision.action}${results.decision.arm !== null ? ` (arm ${results.decision.arm})` : ""}`,
  );
  console.log(`recommendation: ${results.recommendation}`);
}

async function main() {
  let dev: WranglerDev | undefined;
  try {
    process.stderr.write("starting wrangler dev ...\n");
    dev = await startWranglerDev();
    const gw = new GatewayClient(dev.url, dev.adminToken, dev.apiKey);
    const large = buildEncoder({ ...LARGE, seed: 1 });
    const small = buildEncoder({ ...SMALL, seed: 2 });
    const largeTwin = buildEncoder({ ...LARGE, seed: 3 });

    // A/B: a large (dense) variant against a small (sparser) one
    await gw.createModel("sim-ab", "sim-ab", LABELS, large);
    const vA = await gw.registerGraph("sim-ab", "sim-ab", LABELS, large, {
      accuracy: ACC_A,
      p50Ms: 10,
      sparsity: 0,
      tokenizer: TOKENIZER,
    });
    const vB = await gw.registerGraph("sim-ab", "sim-ab", LABELS, small, {
      accuracy: ACC_B,
      p50Ms: 3,
      sparsity: 0.75,
      tokenizer: TOKENIZER,
      status: "staged",
    });
    const ab = await runExperiment(
      gw,
      "A/B: 8 layers vs 2 layers",
      "sim-ab",
      [vA, vB],
      { A: ACC_A, B: ACC_B },
      Number(args.seed),
    );

    // A/A: two variants of the same size, same accuracy
    await gw.createModel("sim-aa", "sim-aa", LABELS, large);
    const v1 = await gw.registerGraph("sim-aa", "sim-aa", LABELS, large, {
      accuracy: ACC_A,
      p50Ms: 10,
      sparsity: 0,
      tokenizer: TOKENIZER,
    });
    const v2 = await gw.registerGraph("sim-aa", "sim-aa", LABELS, largeTwin, {
      accuracy: ACC_A,
      p50Ms: 10,
      sparsity: 0,
      tokenizer: TOKENIZER,
      status: "staged",
    });
    const aa = await runExperiment(
      gw,
      "A/A: two 8-layer variants",
      "sim-aa",
      [v1, v2],
      { A: ACC_A, B: ACC_A },
      Number(args.seed) + 1,
    );

    console.log(
      `\n# sim:ab — ${UNITS} users per run, concurrency ${CONCURRENCY}, ${cpus().length} CPUs, load ${loadavg()[0].toFixed(1)}`,
    );
    console.log("latency = server-side time per request (the experiment hook around the arm's pinned route)");
    printRun(
      "A/B",
      ab,
      `B has 2 of A's 8 layers (faster); accuracy A ${ACC_A}, B ${ACC_B} (${((ACC_B - ACC_A) * 100).toFixed(1)} pts)`,
    );
    printRun("A/A", aa, `same size, same accuracy ${ACC_A}: no winner expected`);

    const abCmp = ab.results.comparisons[0];
    const checks = {
      abLatencyDetected: abCmp.latency?.significant === true && abCmp.latency.difference < 0,
      abAccuracyDifferenceDetected: abCmp.accuracy?.significant === true && abCmp.accuracy.difference < 0,
      abAccuracyIntervalCoversTruth:
        abCmp.accuracy !== null &&
        abCmp.accuracy.ci[0] <= ACC_B - ACC_A &&
        ACC_B - ACC_A <= abCmp.accuracy.ci[1],
      abSrmClean: !ab.results.srm.mismatch,
      aaNoWinner: aa.results.decision.action !== "promote",
      aaSrmClean: !aa.results.srm.mismatch,
    };
    console.log("\nchecks:", checks);

    mkdirSync(path.join(root, "bench-results"), { recursive: true });
    const strip = (run: typeof ab) => ({
      experiment: run.id,
      users: run.served.length,
      wallS: run.wallS,
      realisedAccuracy: run.realised,
      results: run.results,
    });
    const out = {
      when: new Date().toISOString(),
      machine: { cpus: cpus().length, load1: loadavg()[0] },
      settings: {
        units: UNITS,
        concurrency: CONCURRENCY,
        accuracyA: ACC_A,
        accuracyB: ACC_B,
        large: LARGE,
        small: SMALL,
      },
      ab: strip(ab),
      aa: strip(aa),
      checks,
    };
    writeFileSync(path.join(root, "bench-results/sim-ab.json"), `${JSON.stringify(out, null, 2)}\n`);
    console.log("\nwrote bench-results/sim-ab.json");
    updateBenchmarksPage();
    if (!Object.values(checks).every(Boolean)) process.exitCode = 1;
  } catch (err) {
    // wrangler's own log says what workerd saw (exceptions, cancellations)
    if (dev) {
      mkdirSync(path.join(root, "bench-results"), { recursive: true });
      writeFileSync(path.join(root, "bench-results/sim-ab-wrangler.log"), dev.log());
      console.error("wrangler dev's log: bench-results/sim-ab-wrangler.log");
    }
    throw err;
  } finally {
    dev?.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
