/**
 * Concurrency soak of the real gateway under `wrangler dev`: several clients send pinned classify requests
 * (no experiment) to two models, each with two 8-layer variants loaded, with texts of varying length, for long
 * enough that registry lookups expire and are refreshed while other requests are in flight. Every response must
 * be a 200; any other status (in particular workerd's 500 "the Worker's code had hung", which is what a request
 * waiting on a promise that only another request's I/O can settle gets) fails the run loudly, with wrangler's
 * log. Prints a table and writes bench-results/gateway-soak.json. wrangler is always shut down.
 *
 *   npm run bench:gateway-soak -- [--clients 3] [--requests 150] [--catalog-ttl-ms 5000] [--layers 8]
 *
 * `--requests` is per client and model. A short `--catalog-ttl-ms` refreshes lookups more often (a harsher
 * soak); the default is the gateway's own default TTL.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { startWranglerDev, type WranglerDev } from "../scripts/lib/wrangler";
import { buildEncoder } from "../src/core/models/encoder";
import { DEFAULT_CONFIG } from "../src/gateway/config";
import { GatewayClient } from "../test/shared/gateway-client";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    clients: { type: "string", default: "3" },
    requests: { type: "string", default: "150" },
    "catalog-ttl-ms": { type: "string", default: String(DEFAULT_CONFIG.catalogTtlMs) },
    layers: { type: "string", default: "8" },
  },
});
const clients = Number(args.clients);
const requestsPerClient = Number(args.requests);
const catalogTtlMs = Number(args["catalog-ttl-ms"]);
const layers = Number(args.layers);

const root = path.resolve(import.meta.dirname, "..");
const WORDS = (
  "the offer free meeting report prize claim bob thursday winner account money cash urgent project schedule " +
  "lunch click unsubscribe invoice team"
).split(" ");

/** Deterministic texts (LCG), so two runs send the same requests. */
function textSource(seed: number) {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
  return () => {
    const len = 16 + Math.floor(rnd() * 32);
    return Array.from({ length: len }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(" ");
  };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((s.length - 1) * q))] : Number.NaN;
};

interface Failure {
  model: string;
  client: number;
  i: number;
  status: number;
  body: string;
}

let dev: WranglerDev | undefined;
try {
  dev = await startWranglerDev({ vars: { CATALOG_TTL_MS: String(catalogTtlMs) } });
  const gw = new GatewayClient(dev.url, dev.adminToken, dev.apiKey);
  const tokenizer = readFileSync(path.join(root, "models/tokenizer.json"), "utf8");
  const encoder = (seed: number) =>
    buildEncoder({
      layout: "distilbert",
      vocabSize: 4096,
      hidden: 128,
      layers,
      heads: 4,
      ffn: 512,
      maxPositions: 128,
      numLabels: 2,
      initStd: 0.3,
      seed,
    });
  const models = ["soak-a", "soak-b"];
  const versions: Record<string, number[]> = {};
  for (const [m, name] of models.entries()) {
    await gw.createModel(name, name, ["a", "b"], encoder(1));
    const v = { accuracy: 0.9, sparsity: 0, tokenizer };
    versions[name] = [
      await gw.registerGraph(name, name, ["a", "b"], encoder(10 * m + 1), { ...v, p50Ms: 2 }),
      await gw.registerGraph(name, name, ["a", "b"], encoder(10 * m + 2), {
        ...v,
        p50Ms: 1,
        status: "staged",
      }),
    ];
  }

  const failures: Failure[] = [];
  const latencies: number[] = [];
  const started = performance.now();
  let sent = 0;
  // Models one after the other (the first model's sessions stay loaded while the second is soaked).
  for (const name of models) {
    const nextText = textSource(7 + name.length);
    await Promise.all(
      Array.from({ length: clients }, async (_, client) => {
        for (let i = 0; i < requestsPerClient; i++) {
          const version = versions[name][(i + client) % 2];
          const t0 = performance.now();
          const res = await fetch(`${dev!.url}/v1/models/${name}/versions/${version}/classify`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${dev!.apiKey}` },
            body: JSON.stringify({ text: nextText() }),
          });
          const body = await res.text();
          latencies.push(performance.now() - t0);
          sent++;
          if (res.status !== 200) failures.push({ model: name, client, i, status: res.status, body });
        }
      }),
    );
  }
  const seconds = (performance.now() - started) / 1000;

  const result = {
    clients,
    requestsPerClientAndModel: requestsPerClient,
    models: models.length,
    layers,
    catalogTtlMs,
    requests: sent,
    failures: failures.length,
    seconds: Number(seconds.toFixed(1)),
    p50Ms: Number(quantile(latencies, 0.5).toFixed(1)),
    p95Ms: Number(quantile(latencies, 0.95).toFixed(1)),
    firstFailures: failures.slice(0, 10),
  };
  console.log("\ngateway concurrency soak (pinned classify, wrangler dev)");
  console.table([
    {
      requests: sent,
      clients,
      "catalog TTL ms": catalogTtlMs,
      failures: failures.length,
      "p50 ms": result.p50Ms,
      "p95 ms": result.p95Ms,
      seconds: result.seconds,
    },
  ]);
  mkdirSync(path.join(root, "bench-results"), { recursive: true });
  writeFileSync(path.join(root, "bench-results/gateway-soak.json"), `${JSON.stringify(result, null, 2)}\n`);
  updateBenchmarksPage();
  if (failures.length > 0) {
    for (const f of failures.slice(0, 10)) {
      console.error(`FAIL ${f.model} client ${f.client} #${f.i}: ${f.status} ${f.body.slice(0, 160)}`);
    }
    console.error(`\nwrangler log (last 4000 chars):\n${dev.log().slice(-4000)}`);
    if (failures.some((f) => f.body.includes("restarted mid-request"))) {
      console.error(
        "(wrangler reloaded the Worker mid-run: a source file changed while the soak ran; run it again)",
      );
    }
    console.error(`\nSOAK FAILED: ${failures.length} of ${sent} requests were not 200`);
    process.exitCode = 1;
  } else {
    console.log(`soak passed: ${sent} requests, 0 failures`);
  }
} finally {
  dev?.stop();
}
