/**
 * `sluice ls <model> --url <gateway>`: the model's variants as a table, with both latency figures: onnxruntime-node
 * and onnxruntime-web wasm (the edge runtime, which the router ranks by when every variant has it).
 */

import { readOk, registryClient } from "../registry-client";
import { type Command, UsageError } from "./command";
import { flagOrEnv, gatewayUrlFlag, parseFlags } from "./options";

const USAGE = `usage: sluice ls <model> --url <gateway url> [--status staged|active|retired] [--json]
  --url defaults to $SLUICE_URL.`;

export interface LsOptions {
  model: string;
  url: string;
  status?: string;
  json: boolean;
}

export function parseLsArgs(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): LsOptions {
  const { values, positionals } = parseFlags(
    {
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: "string" },
        status: { type: "string" },
        json: { type: "boolean", default: false },
      },
    },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`expected exactly one model name\n${USAGE}`);
  const url = flagOrEnv(values.url, env, "SLUICE_URL", "--url", USAGE);
  if (values.status && !["staged", "active", "retired"].includes(values.status)) {
    throw new UsageError(`--status must be staged, active or retired\n${USAGE}`);
  }
  return {
    model: positionals[0],
    url: gatewayUrlFlag(url),
    status: values.status,
    json: values.json ?? false,
  };
}

/** The fields of a variant the table shows (a subset of the registry's variant JSON). */
export interface VariantListItem {
  version: number;
  status: string;
  sparsity: number;
  /** Absent from gateways that predate int8 variants (all fp32). */
  precision?: string;
  params: number;
  accuracy: number;
  /** onnxruntime-node p50. */
  latencyP50Ms: number;
  /** onnxruntime-web wasm p50 (the edge runtime); null: not measured, absent: a gateway that predates it. */
  edgeLatencyP50Ms?: number | null;
  sha256: string;
  createdAt: string;
}

const HEADERS = [
  "VERSION",
  "STATUS",
  "SPARSITY",
  "PRECISION",
  "PARAMS",
  "ACCURACY",
  "NODE P50 MS",
  "EDGE P50 MS",
  "SHA256",
  "CREATED",
] as const;
const RIGHT_ALIGNED = new Set(["VERSION", "SPARSITY", "PARAMS", "ACCURACY", "NODE P50 MS", "EDGE P50 MS"]);

export function formatVariantTable(variants: VariantListItem[]): string {
  if (variants.length === 0) return "no variants";
  const rows = variants.map((v) => [
    String(v.version),
    v.status,
    `${(100 * v.sparsity).toFixed(1)}%`,
    v.precision ?? "fp32",
    v.params.toLocaleString("en-US"),
    v.accuracy.toFixed(4),
    v.latencyP50Ms.toFixed(2),
    v.edgeLatencyP50Ms == null ? "-" : v.edgeLatencyP50Ms.toFixed(2),
    v.sha256.slice(0, 12),
    v.createdAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
  ]);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (RIGHT_ALIGNED.has(HEADERS[i]) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(HEADERS), ...rows.map(line)].join("\n");
}

export const command: Command = {
  summary:
    "list a model's registered variants (version, status, sparsity, precision, params, accuracy, p50s, sha256)",
  async run(argv) {
    const opts = parseLsArgs(argv);
    const { body } = await readOk(
      await registryClient(opts.url).v1.models[":model"].variants.$get({
        param: { model: encodeURIComponent(opts.model) },
        query: opts.status ? { status: opts.status } : {},
      }),
    );
    // Assigning the typed response checks that the registry's variant view still has every column shown.
    const variants: VariantListItem[] = body.variants;
    console.log(opts.json ? JSON.stringify(variants, null, 2) : formatVariantTable(variants));
    return 0;
  },
};
