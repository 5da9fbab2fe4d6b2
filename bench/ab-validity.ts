/**
 * A/B validity: simulated A/A (and one A/B) experiments run through `analyzeExperiment`, the code behind
 * GET /v1/experiments/:id/results. Rows: i.i.d. traffic (one request per unit); clustered traffic (requests
 * per unit Pareto(1.3) from 3, unit accuracy Beta(9, 1), per-unit lognormal latency factor) analysed per unit
 * and, to show the bench tells the difference, per request (every request treated as its own unit, which is
 * what the analysis did before issue 16); and clustered A/B with B 10% faster to show power.
 * Prints the table; writes bench-results/ab-validity.json.
 *
 *   npx tsx bench/ab-validity.ts [--runs 400] [--units 1000]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type AnalysisConfig,
  type ArmData,
  analyzeExperiment,
  type UnitData,
} from "../src/gateway/experiments/analyze";
import { seededNormal, seededUniform } from "../test/shared/random";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: { runs: { type: "string", default: "400" }, units: { type: "string", default: "1000" } },
});
const RUNS = Number(args.runs);
const UNITS = Number(args.units);

function arm(seed: number, clustered: boolean, medianMs: number): ArmData {
  const uniform = seededUniform(seed);
  const normal = seededNormal(seed + 17);
  const units: UnitData[] = [];
  for (let i = 0; i < UNITS; i++) {
    const requests = clustered ? Math.floor(3 * (1 - uniform()) ** (-1 / 1.3)) : 1;
    const accuracy = clustered ? uniform() ** (1 / 9) : 0.9; // Beta(9, 1) has mean 0.9
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
}

function run(row: string, clustered: boolean, flatten: boolean, treatmentMs: number, seed: number): Row {
  const t0 = performance.now();
  let acc = 0;
  let lat = 0;
  let p95 = 0;
  let promote = 0;
  for (let k = 0; k < RUNS; k++) {
    let data = [arm(seed + 2 * k, clustered, 30), arm(seed + 2 * k + 1, clustered, treatmentMs)];
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
    runs: RUNS,
    accuracySignificant: acc / RUNS,
    latencySignificant: lat / RUNS,
    p95Significant: p95 / RUNS,
    promote: promote / RUNS,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** 95% binomial (normal approximation) half-width. */
const half = (p: number) => 1.96 * Math.sqrt((p * (1 - p)) / RUNS);
const pct = (p: number) => `${(p * 100).toFixed(1)}% ±${(half(p) * 100).toFixed(1)}`;

const rows = [
  run("A/A i.i.d., per unit", false, false, 30, 1_000_000),
  run("A/A clustered, per request (old analysis)", true, true, 30, 2_000_000),
  run("A/A clustered, per unit", true, false, 30, 2_000_000),
  run("A/B clustered, B 10% faster, per unit", true, false, 27, 3_000_000),
];
console.log(
  `# A/B validity — ${RUNS} experiments per row, ${UNITS} units per arm, alpha 0.05, fixed design\n`,
);
console.log("| row | accuracy significant | mean latency significant | p95 significant | promote |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(
    `| ${r.row} | ${pct(r.accuracySignificant)} | ${pct(r.latencySignificant)} | ${pct(r.p95Significant)} | ${pct(r.promote)} |`,
  );
}
const root = path.resolve(import.meta.dirname, "..");
mkdirSync(path.join(root, "bench-results"), { recursive: true });
writeFileSync(
  path.join(root, "bench-results/ab-validity.json"),
  `${JSON.stringify({ when: new Date().toISOString(), runs: RUNS, unitsPerArm: UNITS, alpha: 0.05, rows }, null, 2)}\n`,
);
console.log("\nwrote bench-results/ab-validity.json");
updateBenchmarksPage();
