/**
 * A/B validity: simulated A/A (and one A/B) experiments run through `analyzeExperiment`, the code behind
 * GET /v1/experiments/:id/results. Rows: i.i.d. traffic (one request per unit); clustered traffic (requests
 * per unit Pareto(1.3) from 3, unit accuracy Beta(9, 1), per-unit lognormal latency factor) analysed per unit
 * and, to show the bench tells the difference, per request (every request treated as its own unit, which is
 * what the analysis did before); and clustered A/B rows to show power: B 10% faster, and B 2 accuracy points
 * worse (every unit's accuracy lowered by 0.02).
 * Prints the table; writes bench-results/ab-validity.json and regenerates the figures block of
 * docs/ab-validity.md from that JSON (`--docs-only` re-renders the block from the committed JSON).
 *
 *   npx tsx bench/ab-validity.ts [--runs 2000] [--iid-runs 10000] [--units 1000] [--rows iid,sequential] [--docs-only]
 *
 * The i.i.d. row costs ~1/20 of a clustered one, so it gets more runs (a tighter interval around its rate at no real
 * cost). `--rows` re-runs only the named rows (iid, per-request, clustered, faster, worse, sequential) and keeps the
 * other rows of the committed JSON.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type AnalysisConfig,
  type ArmData,
  ArmTraffic,
  analyzeExperiment,
  analyzeTraffic,
  type UnitData,
} from "../src/gateway/experiments/analyze";
import { wilsonInterval } from "../src/gateway/experiments/stats";
import { seededNormal, seededUniform } from "../test/shared/random";
import { updateBenchmarksPage, writeDocsBlock } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "2000" },
    "iid-runs": { type: "string", default: "10000" },
    rows: { type: "string" },
    // runs of the sequential row (each analyses ~260 looks)
    "peeking-runs": { type: "string", default: "2000" },
    units: { type: "string", default: "1000" },
    "docs-only": { type: "boolean", default: false },
  },
});
const RUNS = Number(args.runs);
const IID_RUNS = Number(args["iid-runs"]);
const PEEKING_RUNS = Number(args["peeking-runs"]);
const UNITS = Number(args.units);

function arm(seed: number, clustered: boolean, medianMs: number, accuracyDrop = 0): ArmData {
  const uniform = seededUniform(seed);
  const normal = seededNormal(seed + 17);
  const units: UnitData[] = [];
  for (let i = 0; i < UNITS; i++) {
    const requests = clustered ? Math.floor(3 * (1 - uniform()) ** (-1 / 1.3)) : 1;
    const accuracy = (clustered ? uniform() ** (1 / 9) : 0.9) - accuracyDrop; // Beta(9, 1) has mean 0.9
    const factor = clustered ? Math.exp(0.5 * normal()) : 1;
    const latencyMs: number[] = [];
    let labelled = 0;
    let correct = 0;
    for (let r = 0; r < requests; r++) {
      latencyMs.push(medianMs * factor * Math.exp((clustered ? 0.3 : 0.5) * normal()));
      if (uniform() < 0.5) {
        labelled++;
        if (uniform() < accuracy) correct++;
      }
    }
    units.push({ requests, errors: 0, latencyMs, labelled, correct });
  }
  return { units };
}

/** Every request as its own unit: the old per-request analysis. */
function perRequest(d: ArmData): ArmData {
  const units: UnitData[] = [];
  for (const u of d.units) {
    let labelled = u.labelled;
    let correct = u.correct;
    for (const ms of u.latencyMs) {
      const l = labelled > 0 ? 1 : 0;
      const c = correct > 0 && l ? 1 : 0;
      labelled -= l;
      correct -= c;
      units.push({ requests: 1, errors: 0, latencyMs: [ms], labelled: l, correct: c });
    }
  }
  return { units };
}

const config: AnalysisConfig = {
  arms: [
    { name: "A", weight: 1 },
    { name: "B", weight: 1 },
  ],
  controlArm: 0,
  primaryMetric: "latency",
  alpha: 0.05,
  design: { kind: "fixed", plannedUnits: 1 },
};

interface Row {
  row: string;
  runs: number;
  accuracySignificant: number;
  latencySignificant: number;
  p95Significant: number;
  promote: number;
  seconds: number;
  /** When this row was measured (a partial `--rows` run keeps the other rows' own dates). */
  when?: string;
}

function run(
  row: string,
  clustered: boolean,
  flatten: boolean,
  treatmentMs: number,
  seed: number,
  accuracyDrop = 0,
  runs = RUNS,
): Row {
  const t0 = performance.now();
  let acc = 0;
  let lat = 0;
  let p95 = 0;
  let promote = 0;
  for (let k = 0; k < runs; k++) {
    let data = [
      arm(seed + 2 * k, clustered, 30),
      arm(seed + 2 * k + 1, clustered, treatmentMs, accuracyDrop),
    ];
    if (flatten) data = data.map(perRequest);
    const r = analyzeExperiment(config, data);
    const c = r.comparisons[0];
    if (c.accuracy?.significant) acc++;
    if (c.latency?.significant) lat++;
    if (c.p95?.significant) p95++;
    if (r.decision.action === "promote") promote++;
  }
  return {
    row,
    runs,
    accuracySignificant: acc / runs,
    latencySignificant: lat / runs,
    p95Significant: p95 / runs,
    promote: promote / runs,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * Scenario (c): the clustered traffic of the per-unit row, analysed after every `LOOK_EVERY` requests with a
 * sequential design, stopping each metric at its first significant look (and "promote" at the first look that
 * recommends it). Requests arrive in random order: each request gets a uniform arrival time.
 */
const LOOK_EVERY = 100;

function peekingRun(row: string, seed: number): Row {
  const t0 = performance.now();
  const sequential: AnalysisConfig = { ...config, design: { kind: "sequential", plannedUnits: 2 * UNITS } };
  let acc = 0;
  let lat = 0;
  let p95 = 0;
  let promote = 0;
  for (let k = 0; k < PEEKING_RUNS; k++) {
    const full = [arm(seed + 2 * k, true, 30), arm(seed + 2 * k + 1, true, 30)];
    const order = seededUniform(seed + 7 * k + 3);
    // One event per request: (arm, unit, index of the request within the unit), in arrival order.
    const events: { t: number; a: number; u: number; r: number }[] = [];
    full.forEach((d, a) => {
      d.units.forEach((unit, u) => {
        for (let r = 0; r < unit.requests; r++) events.push({ t: order(), a, u, r });
      });
    });
    events.sort((x, y) => x.t - y.t);
    // Labels of a unit are spread over its first `labelled` requests (which ones does not matter here).
    // The arms' traffic is aggregated as requests arrive and analysed at each look: what a results route
    // called every 100 requests would compute.
    const traffic = [new ArmTraffic(), new ArmTraffic()];
    const labelsSoFar = full.map((d) => d.units.map(() => ({ labelled: 0, correct: 0 })));
    const seen = { acc: false, lat: false, p95: false, promote: false };
    for (let i = 0; i < events.length; i++) {
      const { a, u, r } = events[i];
      const src = full[a].units[u];
      const so = labelsSoFar[a][u];
      const labelled = so.labelled < src.labelled;
      const correct = labelled && so.correct < src.correct;
      so.labelled += +labelled;
      so.correct += +correct;
      traffic[a].addRequest(u, { latencyMs: src.latencyMs[r], labelled, correct });
      if ((i + 1) % LOOK_EVERY !== 0 && i + 1 !== events.length) continue;
      const res = analyzeTraffic(sequential, traffic);
      const c = res.comparisons[0];
      seen.acc ||= !!c.accuracy?.significant;
      seen.lat ||= !!c.latency?.significant;
      seen.p95 ||= !!c.p95?.significant;
      seen.promote ||= res.decision.action === "promote";
      if (seen.acc && seen.lat && seen.p95 && seen.promote) break;
    }
    acc += +seen.acc;
    lat += +seen.lat;
    p95 += +seen.p95;
    promote += +seen.promote;
  }
  return {
    row,
    runs: PEEKING_RUNS,
    accuracySignificant: acc / PEEKING_RUNS,
    latencySignificant: lat / PEEKING_RUNS,
    p95Significant: p95 / PEEKING_RUNS,
    promote: promote / PEEKING_RUNS,
    seconds: (performance.now() - t0) / 1000,
  };
}

interface AbValidityResults {
  when: string;
  runs: number;
  unitsPerArm: number;
  alpha: number;
  rows: Row[];
}

/**
 * A rate over `runs` experiments with its 95% Wilson interval: unlike the normal approximation it stays a real
 * interval at 0 (0 of 2,000 is "at most 0.2%", not "0 ± 0").
 */
const pct = (p: number, runs: number) => {
  const [lo, hi] = wilsonInterval(Math.round(p * runs), runs, 0.05);
  return `${(p * 100).toFixed(1)}% [${(lo * 100).toFixed(1)}, ${(hi * 100).toFixed(1)}]`;
};

/** The Markdown table and the false-positive check, from the JSON alone (so docs can be re-rendered). */
function renderFigures(r: AbValidityResults): string {
  const limit = r.alpha + 0.01;
  const lines = [
    `Generated by \`npm run bench:ab-validity\` on ${r.when} from bench-results/ab-validity.json: the runs column is the number of simulated experiments per row, ${r.unitsPerArm} units per arm, alpha ${r.alpha}; fixed design except the sequential row, which is analysed after every ${LOOK_EVERY} requests. Each cell is the share of experiments with a significant result (for the sequential row: significant at any look) and its 95% Wilson interval [low, high] over the row's runs, in percent.`,
    "",
    "| row | runs | accuracy significant | mean latency significant | p95 significant | promote |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...r.rows.map(
      (x) =>
        `| ${x.row} | ${x.runs} | ${pct(x.accuracySignificant, x.runs)} | ${pct(x.latencySignificant, x.runs)} | ${pct(x.p95Significant, x.runs)} | ${pct(x.promote, x.runs)} |`,
    ),
    "",
  ];
  for (const x of r.rows.filter((row) => row.row.startsWith("A/A"))) {
    const worst = Math.max(x.accuracySignificant, x.latencySignificant, x.p95Significant);
    const ok = worst <= limit;
    lines.push(
      `- ${x.row}: largest false-positive rate ${pct(worst, x.runs)} — ${ok ? "within" : "**over**"} alpha + 1 point (${(limit * 100).toFixed(0)}%)${x.row.includes("old analysis") ? " (the per-request analysis this bench exists to catch)" : ""}.`,
    );
  }
  return lines.join("\n");
}

const root = path.resolve(import.meta.dirname, "..");
const jsonPath = path.join(root, "bench-results/ab-validity.json");
const docsPath = path.join(root, "docs/ab-validity.md");

if (args["docs-only"]) {
  writeDocsBlock(docsPath, "ab-validity", renderFigures(JSON.parse(readFileSync(jsonPath, "utf8"))));
  console.log("wrote docs/ab-validity.md from bench-results/ab-validity.json");
  process.exit(0);
}

if (process.env.AB_VALIDITY_PEEK_ONLY) {
  console.log(peekingRun("peek", 5_000_000));
  process.exit(0);
}

const ROWS: Record<string, () => Row> = {
  iid: () => run("A/A i.i.d., per unit", false, false, 30, 1_000_000, 0, IID_RUNS),
  "per-request": () => run("A/A clustered, per request (old analysis)", true, true, 30, 2_000_000),
  clustered: () => run("A/A clustered, per unit", true, false, 30, 2_000_000),
  faster: () => run("A/B clustered, B 10% faster, per unit", true, false, 27, 3_000_000),
  worse: () => run("A/B clustered, B 2 accuracy points worse, per unit", true, false, 30, 4_000_000, 0.02),
  sequential: () =>
    peekingRun(
      `A/A clustered, per unit, sequential, a look every ${LOOK_EVERY} requests, stop at first significant`,
      5_000_000,
    ),
};
const only = args.rows?.split(",").map((r) => r.trim());
for (const key of only ?? [])
  if (!(key in ROWS))
    throw new Error(`--rows: unknown row "${key}" (known: ${Object.keys(ROWS).join(", ")})`);
// A partial run keeps the committed rows it does not re-run (matched by position: the row list is fixed).
const previous: Row[] = only && existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, "utf8")).rows : [];
const rows = Object.entries(ROWS).map(([key, measure], i) =>
  !only || only.includes(key) ? { ...measure(), when: new Date().toISOString() } : (previous[i] ?? measure()),
);
const results: AbValidityResults = {
  when: new Date().toISOString(),
  runs: RUNS,
  unitsPerArm: UNITS,
  alpha: 0.05,
  rows,
};
console.log(renderFigures(results));
mkdirSync(path.join(root, "bench-results"), { recursive: true });
writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
writeDocsBlock(docsPath, "ab-validity", renderFigures(JSON.parse(readFileSync(jsonPath, "utf8"))));
console.log("\nwrote bench-results/ab-validity.json and docs/ab-validity.md");
updateBenchmarksPage();
