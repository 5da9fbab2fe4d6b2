/**
 * What the demo prints: the variant table, the router's choice and why, and curl commands to try next; and the
 * JSON written to bench-results/demo.json.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { encodeText, loadTokenizer } from "../../src/core/tokenizer";
import { selectVariant } from "../../src/gateway/routing";
import { DEMO_MODEL, ROOT } from "./config";
import type { DemoResult } from "./pipeline";

const pct = (x: number, digits = 1) => `${(100 * x).toFixed(digits)}%`;
const ms = (x: number) => (Number.isNaN(x) ? "-" : x >= 100 ? `${x.toFixed(0)} ms` : `${x.toFixed(1)} ms`);
const int = (n: number) => n.toLocaleString("en-US");

export function formatDemoTable(r: DemoResult): string {
  const header = [
    "variant",
    "version",
    "removed",
    "params",
    "bytes",
    "accuracy (gateway)",
    `p50 / ${r.requestBatch} texts`,
    "infer p50",
    "router",
  ];
  const rows = r.rows.map((row) => [
    row.variant,
    `${row.model}@${row.version}`,
    pct(row.removed),
    `${int(row.params)} (${row.params === row.baseParams ? "dense" : `-${pct(1 - row.params / row.baseParams, 0)}`})`,
    `${(row.bytes / 1e6).toFixed(2)} MB`,
    `${pct(row.gateway.accuracy, 2)} (${row.gateway.correct}/${row.gateway.total})`,
    ms(row.gateway.p50RequestMs),
    ms(row.gateway.p50InferMs),
    row.chosen ? "<- chosen" : row.verdict.replace("_", " "),
  ]);
  const right = new Set([2, 3, 4, 5, 6, 7]);
  const widths = header.map((h, j) => Math.max(h.length, ...rows.map((row) => row[j].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, j) => (right.has(j) ? c.padStart(widths[j]) : c.padEnd(widths[j])))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function formatRouterSummary(r: DemoResult): string {
  const chosen = r.rows.find((row) => row.chosen);
  const lines = [
    `SLA for task ${r.task}: ${r.sla.margin === null ? `accuracy >= ${pct(r.sla.min, 2)} (${r.sla.rule})` : r.sla.rule}.`,
    chosen
      ? `The router serves ${chosen.model}@${chosen.version} (${chosen.variant}, ${pct(chosen.removed)} of gated weights removed): ${r.router.reason}`
      : `The router chose nothing (${r.router.outcome}): ${r.router.reason}`,
    `An unpinned request to /v1/models/${DEMO_MODEL}/classify was served by ${r.router.servedRoutedRequest}.`,
  ];
  const q = r.router.int8;
  if (q)
    lines.push(
      `${q.label} (${DEMO_MODEL}@${q.version}) has a paired lower bound of ${(100 * q.lowerBound).toFixed(2)} pts against the best; with the margin at ${(100 * q.margin).toFixed(1)} pts the router serves ${q.chosen === null ? "nothing" : `${DEMO_MODEL}@${q.chosen}`} (${q.reason}) and an unpinned request was served by ${q.servedRoutedRequest}; the SLA above was then restored.`,
    );
  for (const row of r.rows) {
    lines.push(
      `  ${row.model}@${row.version} (${row.variant}): registered accuracy ${pct(row.registered.accuracy, 2)}, p50 ${row.registered.latencyP50Ms.toFixed(2)} ms (${row.registered.latencyRuntime})${row.registered.edgeLatencyP50Ms === null ? "" : `, edge p50 ${row.registered.edgeLatencyP50Ms.toFixed(2)} ms`}: ${row.verdict} - ${row.why}`,
    );
  }
  const looser = whatIfSlas(r);
  if (looser.length > 0) {
    lines.push(
      "Other SLAs (the gateway's routing policy applied to the same registered figures; try --sla):",
    );
    lines.push(...looser.map((l) => `  ${l}`));
  }
  const mismatch = r.rows.filter((row) => row.gateway.accuracy !== row.registered.accuracy);
  if (mismatch.length > 0)
    lines.push(
      `warning: accuracy through the gateway differs from the manifest's for ${mismatch.map((m) => m.variant).join(", ")}`,
    );
  return lines.join("\n");
}

/**
 * For each registered accuracy level other than the SLA's: the variant the router would serve if the SLA were
 * exactly that accuracy (selectVariant is the gateway's own pure routing function).
 */
export function whatIfSlas(r: DemoResult): string[] {
  if (r.sla.margin !== null) return [];
  const variants = r.rows.map((row) => ({
    version: row.version,
    status: "active" as const,
    accuracy: row.registered.accuracy,
    latencyP50Ms: row.registered.latencyP50Ms,
    edgeLatencyP50Ms: row.registered.edgeLatencyP50Ms,
    params: row.params,
    sparsity: row.removed,
  }));
  const levels = [...new Set(variants.map((v) => v.accuracy))]
    .filter((a) => a < r.sla.min)
    .sort((a, b) => b - a);
  return levels.map((min) => {
    const d = selectVariant(variants, {
      sla: { metric: "accuracy", min, maxLatencyMs: null, strict: false },
    });
    const row = r.rows.find((x) => x.version === d.chosen)!;
    // Rounded down, so passing the printed value to --sla admits this accuracy.
    return `accuracy >= ${pct(min, 2)} (--sla ${(Math.floor(min * 1e4) / 1e4).toFixed(4)}): ${row.model}@${row.version} (${row.variant}, ${pct(row.removed)} removed)`;
  });
}

/** A ready-to-send Open Inference Protocol body for one text, tokenized as the gateway's classify would. */
function oipBody(r: DemoResult, text: string): string {
  const tok = loadTokenizer(readFileSync(path.join(ROOT, r.base.tokenizer), "utf8"));
  const ids = encodeText(tok, text, r.maxTokens);
  const data: Record<string, number[]> = {
    input_ids: ids,
    attention_mask: ids.map(() => 1),
    token_type_ids: ids.map(() => 0),
  };
  const inputs = r.io.inputs.map((i) => ({
    name: i.name,
    datatype: "INT64",
    shape: [1, ids.length],
    data: data[i.name] ?? ids.map(() => 0),
  }));
  return JSON.stringify({ inputs });
}

export function curlExamples(
  r: DemoResult,
  url: string,
  credentials?: { adminToken: string; apiKey: string },
): string {
  const spam =
    "Congratulations! You have been selected to receive a FREE vacation. Click here to claim your prize";
  const ham = "Hi Bob, can we move the meeting to 3pm tomorrow? I will bring the draft of the report.";
  return [
    `export SLUICE_URL=${url} ${
      credentials
        ? `SLUICE_ADMIN_TOKEN=${credentials.adminToken} SLUICE_API_KEY=${credentials.apiKey}`
        : "SLUICE_ADMIN_TOKEN=<admin token>"
    }`,
    ...(credentials
      ? []
      : [
          `export SLUICE_API_KEY=$(curl -s -X POST $SLUICE_URL/v1/keys -H "authorization: Bearer $SLUICE_ADMIN_TOKEN" \\`,
          `  -H 'content-type: application/json' -d '{"scopes":["infer","feedback"]}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).key')`,
        ]),
    `curl -si $SLUICE_URL/v1/models/${DEMO_MODEL}/classify -H "authorization: Bearer $SLUICE_API_KEY" -H 'content-type: application/json' \\`,
    `  -d '${JSON.stringify({ texts: [spam, ham] })}'`,
    `curl -s $SLUICE_URL/v1/models/${DEMO_MODEL}/route -H "x-api-key: $SLUICE_API_KEY"   # the router's decision, explained`,
    `curl -s $SLUICE_URL/v1/models/${DEMO_MODEL}/route -H "x-api-key: $SLUICE_API_KEY" -H 'x-sluice-min-accuracy: 0.999'  # a request may demand more`,
    `curl -s $SLUICE_URL/v2/models/${DEMO_MODEL}/infer -H "x-api-key: $SLUICE_API_KEY" -H 'content-type: application/json' \\`,
    `  -d '${oipBody(r, spam)}'`,
    `node bin/sluice.js ls ${DEMO_MODEL} --url $SLUICE_URL`,
  ].join("\n");
}

/** The JSON file: everything but the test texts themselves. */
export function demoJson(r: DemoResult): string {
  const { test: _texts, ...rest } = r;
  return `${JSON.stringify(rest, null, 2)}\n`;
}
