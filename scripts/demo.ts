/**
 * `npm run demo`: the whole product from one command. Builds (or reuses) the spam variants of the pretrained
 * base at target sparsities 0, 0.2, 0.3 and 0.4, serves them from a local gateway (wrangler dev, local D1 + R2),
 * measures their accuracy and latency THROUGH the gateway, shows which variant the router picks for an accuracy
 * SLA, prints curl commands to try next, and writes bench-results/demo.json.
 *
 *   npm run demo -- [--retrain [--save-checkpoints]] [--keep-running] [--sla 0.97] [--tiny] [--work dir] [--out file]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { FULL_PROFILE, ROOT, TINY_PROFILE } from "./demo/config";
import { runDemo } from "./demo/pipeline";
import { curlExamples, demoJson, formatDemoTable, formatRouterSummary } from "./demo/report";

const USAGE = `usage: npm run demo -- [options]
  --retrain            re-run gate training instead of exporting the committed checkpoints (models/demo/)
  --save-checkpoints   with --retrain: also refresh the committed checkpoints in models/demo/
  --keep-running       leave the gateway up after the table (prints its URL, admin token and API key; Ctrl-C stops it)
  --margin <fraction>  SLA non-inferiority margin for task spam, proven at 95% on paired evidence (default 0.03)
  --sla <accuracy>     an SLA minimum (registered) accuracy instead of the margin
  --base <model.onnx>  base encoder to adapt (default models/base/model.onnx, the committed pretrained base)
  --tiny               a small random encoder, a few training steps and test texts (the smoke test's setting)
  --work <dir>         cache and scratch directory (default runs/demo, or runs/demo-tiny with --tiny)
  --out <file>         JSON results (default bench-results/demo.json, or <work>/demo.json with --tiny)`;

function parse() {
  try {
    const { values } = parseArgs({
      options: {
        retrain: { type: "boolean", default: false },
        "save-checkpoints": { type: "boolean", default: false },
        "keep-running": { type: "boolean", default: false },
        sla: { type: "string" },
        margin: { type: "string" },
        tiny: { type: "boolean", default: false },
        base: { type: "string" },
        work: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    return values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const args = parse();
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const sla = args.sla === undefined ? undefined : Number(args.sla);
if (sla !== undefined && !(sla >= 0 && sla <= 1)) {
  console.error(`--sla must be an accuracy between 0 and 1, got '${args.sla}'\n${USAGE}`);
  process.exit(2);
}
const margin = args.margin === undefined ? undefined : Number(args.margin);
if (margin !== undefined && !(margin > 0 && margin <= 1)) {
  console.error(`--margin must be a fraction in (0, 1], got '${args.margin}'\n${USAGE}`);
  process.exit(2);
}
if (args.base && args.tiny) {
  console.error(`--base and --tiny exclude each other (--tiny builds its own small encoder)\n${USAGE}`);
  process.exit(2);
}
if (args["save-checkpoints"] && (!args.retrain || args.tiny || args.base)) {
  console.error(
    `--save-checkpoints goes with --retrain, on the committed base (not --tiny or --base)\n${USAGE}`,
  );
  process.exit(2);
}
const workDir = path.resolve(args.work ?? path.join(ROOT, args.tiny ? "runs/demo-tiny" : "runs/demo"));
const outFile = path.resolve(
  args.out ?? (args.tiny ? path.join(workDir, "demo.json") : path.join(ROOT, "bench-results/demo.json")),
);

const log = (line: string) => process.stderr.write(`${line}\n`);
try {
  const { result, gateway } = await runDemo({
    profile: args.tiny ? TINY_PROFILE : FULL_PROFILE,
    baseFile: args.base ? path.resolve(args.base) : undefined,
    workDir,
    retrain: args.retrain,
    saveCheckpoints: args["save-checkpoints"],
    slaMin: sla,
    slaMargin: margin,
    keepRunning: args["keep-running"],
    log,
  });
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(outFile, demoJson(result));

  console.log(
    `\nSluice demo: ${result.task} variants of ${result.base.source}, ${result.testSet.size} test texts (${result.testSet.name}) through the gateway\n`,
  );
  console.log(formatDemoTable(result));
  console.log(
    `\nremoved = fraction of gated-layer weights physically gone; p50 = client-side time of one ${result.requestBatch}-text classify ` +
      `request through wrangler dev; infer = onnxruntime-web inside workerd (server-timing).\n`,
  );
  console.log(formatRouterSummary(result));
  console.log(`\nwrote ${path.relative(ROOT, outFile)}; finished in ${result.wallSeconds.toFixed(0)} s\n`);
  if (gateway) {
    console.log(`The gateway is still running. Try:\n\n${curlExamples(result, gateway.url, gateway)}\n`);
    console.log("Press Ctrl-C to stop it.");
    await new Promise(() => {}); // until SIGINT/SIGTERM (the wrangler helper stops the gateway and exits)
  } else {
    console.log(
      `Try next (run with --keep-running to keep the gateway up; URL and token are printed then):\n\n${curlExamples(result, "http://127.0.0.1:<port>")}`,
    );
  }
} catch (err) {
  console.error(`\ndemo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
}
