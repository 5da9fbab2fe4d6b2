/**
 * Quality of adaptation (issue 6): for spam and sentiment on the pretrained base, the test accuracy of head-only,
 * LoRA r=8, dense gate adaptation (target 0) and gates at 0.2 / 0.3 / 0.4 with the default gate method, with
 * trainable parameters and the fraction removed. Gated rows are the EXPORTED models (checked equal to the gated
 * ones); head-only and LoRA are evaluated through the engine's evaluation graph. Target: at 0.4 sparsity within
 * 1 point of the best dense method on both tasks; the verdict is printed and written, met or not.
 *
 * Each method gets its own learning rate, chosen by VALIDATION accuracy of its dense cell from `--lrs` (methods
 * differ in what an Adam step moves: a LoRA rank-8 update, a gate logit, a bias); the pruned cells use the rate
 * chosen for dense gates. The test split is read only to report. `--lrs 1e-3` gives the old single-rate grid.
 *
 *   npm run bench:quality -- [--quick] [--tasks spam,sentiment] [--methods head,lora,gates]
 *                            [--targets 0,0.2,0.3,0.4] [--gates <method>] [--steps N] [--lrs 3e-4,1e-3,3e-3,1e-2]
 *                            [--threads 2]
 */
import { writeFileSync } from "node:fs";
import { DEFAULT_ADAPTER_GATE_METHOD, DEFAULT_GATE_METHOD } from "../src/trainer-node/gates/methods";
import type { CellResult, CellSpec } from "../src/trainer-node/study/run";
import { updateBenchmarksPage } from "./lib/docs";
import {
  environment,
  label,
  loadBase,
  markdownTable,
  parseStudyArgs,
  pct,
  runGrid,
  studyBudget,
  TASK_SEQ,
  writeBenchJson,
} from "./lib/study";

const argv = process.argv.slice(2);
const takeFlag = (flag: string): string | undefined => {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv.splice(i, 2)[1] : undefined;
};
const gateMethod = (takeFlag("--gates") ?? DEFAULT_GATE_METHOD) as CellSpec["gates"];
/** Gate method of the gates + LoRA family (its own default: see ADAPTER_GATE_METHOD). */
const adapterGateMethod = (takeFlag("--adapter-gates") ?? DEFAULT_ADAPTER_GATE_METHOD) as CellSpec["gates"];
const lrs = (takeFlag("--lrs") ?? "3e-4,1e-3,3e-3,1e-2").split(",").map(Number);
if (!lrs.length || lrs.some((x) => !(x > 0)))
  throw new Error("--lrs: positive learning rates, comma-separated");
/** Seeds of the reported rows (one seed per cell is weak evidence for a gap of a point). */
const seeds = (takeFlag("--seeds") ?? "1,2,3").split(",").map(Number);
if (!seeds.length || seeds.some((x) => !Number.isInteger(x)))
  throw new Error("--seeds: integers, comma-separated");
/** Rates per method, best on seed 1, that are also trained at the other seeds to choose by the mean. */
const FINALISTS = Number(takeFlag("--finalists") ?? 2);
/** The quality bench's default budget: 600 main steps (+100 recovery), four times the sparsity study's spam. */
const DEFAULT_STEPS = 600;
const args = parseStudyArgs(argv);
if (!args.quick && args.steps === undefined) args.steps = DEFAULT_STEPS;
const kinds = args.methods ?? ["head", "lora", "gates", "gates+lora"];
const KINDS = ["head", "lora", "gates", "gates+lora"];
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`--methods: unknown '${k}' (have ${KINDS})`);
/** Rank of the adapters of the gates+LoRA rows (the same rank as the LoRA baseline). */
const ADAPTER_RANK = 8;
const targets = (args.targets ?? (args.quick ? [0, 0.4] : [0, 0.2, 0.3, 0.4])).filter((t) => t > 0);

const budget = (cell: CellSpec, lr: number, seed = seeds[0]) => ({
  ...studyBudget(cell.task, args),
  lr,
  seed,
});

const base = loadBase(args);
const denseCells: CellSpec[] = args.tasks.flatMap((task) => [
  ...(kinds.includes("head") ? [{ task, method: "head" as const, target: 0 }] : []),
  ...(kinds.includes("lora") ? [{ task, method: "lora" as const, target: 0 }] : []),
  ...(kinds.includes("gates") ? [{ task, method: "gates" as const, gates: gateMethod, target: 0 }] : []),
  ...(kinds.includes("gates+lora")
    ? [{ task, method: "gates" as const, gates: adapterGateMethod, target: 0, adapterRank: ADAPTER_RANK }]
    : []),
]);
/** The gated families: gates alone, and gates with LoRA adapters inside them. */
const families = [
  ...(kinds.includes("gates") ? [undefined] : []),
  ...(kinds.includes("gates+lora") ? [ADAPTER_RANK] : []),
];
process.stderr.write(
  `quality bench: ${denseCells.length} dense cells × ${lrs.length} learning rates, then ` +
    `${args.tasks.length * targets.length * families.length} pruned cells, on ${base.info.path}, gates ${gateMethod}, gates + LoRA ${adapterGateMethod}\n`,
);
const started = performance.now();

type Row = CellResult & { cached?: boolean; lr: number };
// 1. Every dense cell at every candidate rate.
const sweep: Row[] = [];
for (const lr of lrs) {
  const rs = await runGrid(base, denseCells, (c) => budget(c, lr), args.quick, args.fresh);
  sweep.push(...rs.map((r) => ({ ...r, lr })));
}
// 2. Per task and method, the FINALISTS rates with the best seed-1 validation accuracy are trained at the other
// seeds too, and the rate with the best MEAN validation accuracy wins (ties: the better seed-1 rate). One seed
// can pick a rate at the edge of stability (LoRA at 3e-3 on spam: 95.6% on seed 1, diverged on seed 2).
const specOf = (r: CellSpec): CellSpec => ({
  task: r.task,
  method: r.method,
  gates: r.gates,
  target: r.target,
  ...(r.adapterRank ? { adapterRank: r.adapterRank } : {}),
});
const key = (r: CellSpec) => `${r.task}/${r.method}${r.adapterRank ? "+lora" : ""}`;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Seed-1 row -> its rows at every seed (same cell, same rate), in `seeds` order. */
const bySeed = new Map<Row, Row[]>();
const reseeded: Row[] = [];
async function atAllSeeds(r: Row): Promise<Row[]> {
  const rows = [r];
  for (const seed of seeds.slice(1)) {
    const [x] = await runGrid(base, [specOf(r)], (c) => budget(c, r.lr, seed), args.quick, args.fresh);
    rows.push({ ...x, lr: r.lr });
    reseeded.push(rows.at(-1)!);
  }
  bySeed.set(r, rows);
  return rows;
}
const chosen = new Map<string, Row>();
for (const c of denseCells) {
  const finalists = sweep
    .filter((r) => key(r) === key(c))
    .sort((a, b) => b.validationAccuracy - a.validationAccuracy)
    .slice(0, FINALISTS);
  let best: { row: Row; meanVal: number } | null = null;
  for (const r of finalists) {
    const meanVal = mean((await atAllSeeds(r)).map((x) => x.validationAccuracy));
    if (!best || meanVal > best.meanVal) best = { row: r, meanVal };
  }
  chosen.set(key(c), best!.row);
}
// 3. Pruned cells of each gated family at the rate chosen for its dense cell, at every seed.
const pruned: Row[] = [];
for (const task of args.tasks)
  for (const adapterRank of families) {
    const cellAt = (target: number): CellSpec => ({
      task,
      method: "gates",
      gates: adapterRank ? adapterGateMethod : gateMethod,
      target,
      ...(adapterRank ? { adapterRank } : {}),
    });
    const gatesRow = chosen.get(key(cellAt(0)));
    if (!gatesRow) continue;
    const cells = targets.map(cellAt);
    const rs = await runGrid(base, cells, (c) => budget(c, gatesRow.lr), args.quick, args.fresh);
    for (const r of rs) {
      const row = { ...r, lr: gatesRow.lr };
      pruned.push(row);
      await atAllSeeds(row);
    }
  }
const results: Row[] = args.tasks.flatMap((task) => [
  ...denseCells.filter((c) => c.task === task).map((c) => chosen.get(key(c))!),
  ...pruned.filter((r) => r.task === task),
]);
const testsOf = (r: Row) => bySeed.get(r)!.map((x) => x.testAccuracy);
const testCell = (r: Row) => {
  const xs = testsOf(r);
  return xs.length === 1
    ? pct(xs[0])
    : `${pct(mean(xs))} (${xs.map((x) => (100 * x).toFixed(1)).join(", ")})`;
};
const all = [...sweep, ...pruned, ...reseeded];
const totalMinutes = (performance.now() - started) / 60000;
// Sum of the cells' own wall times (cached cells count what they took when they ran).
const cellMinutes = all.reduce((s, r) => s + r.wallSeconds, 0) / 60;
const cachedCells = all.filter((r) => r.cached).length;

const name = (r: CellSpec) =>
  r.method === "head"
    ? "head only"
    : r.method === "lora"
      ? "LoRA r=8"
      : r.adapterRank
        ? r.target === 0
          ? `dense gates + LoRA r=${r.adapterRank} (${r.gates}, target 0)`
          : `gates ${r.gates} + LoRA r=${r.adapterRank} @${r.target}`
        : r.target === 0
          ? `dense gates (${r.gates}, target 0)`
          : `gates ${r.gates} @${r.target}`;
const HEADER = [
  "method",
  "lr",
  seeds.length > 1 ? "val acc: mean" : "val acc",
  seeds.length > 1 ? `test acc: mean (seeds ${seeds.join(", ")})` : "test acc",
  "removed (gated weights)",
  "params removed",
  "trainable",
  "steps",
  "wall s",
];

/**
 * One verdict per task and gated family (gates alone; gates + LoRA adapters): its 0.4 row against the best dense
 * row of the task (any method, including dense gates + LoRA). Test accuracies are means over the seeds; the gap
 * is also given per seed (same seed, paired).
 */
interface Verdict {
  task: string;
  family: string;
  bestDense: { method: string; testAccuracy: number } | null;
  at04: number | null;
  gapPoints: number | null;
  gapPointsBySeed: number[];
  met: boolean | null;
}
const verdicts: Verdict[] = args.tasks.flatMap((task) =>
  families.map((adapterRank) => {
    const rs = results.filter((r) => r.task === task);
    const dense = rs.filter((r) => r.method !== "gates" || r.target === 0);
    const best = [...dense].sort((a, b) => mean(testsOf(b)) - mean(testsOf(a)))[0];
    const sparse = rs.find(
      (r) => r.method === "gates" && r.target === 0.4 && (r.adapterRank ?? undefined) === adapterRank,
    );
    const gap = best && sparse ? 100 * (mean(testsOf(best)) - mean(testsOf(sparse))) : null;
    const bySeedGap = best && sparse ? testsOf(best).map((b, i) => 100 * (b - testsOf(sparse)[i])) : [];
    return {
      task,
      family: adapterRank ? `gates + LoRA r=${adapterRank}` : "gates alone",
      bestDense: best ? { method: name(best), testAccuracy: mean(testsOf(best)) } : null,
      at04: sparse ? mean(testsOf(sparse)) : null,
      gapPoints: gap,
      gapPointsBySeed: bySeedGap,
      met: gap === null ? null : gap <= 1,
    };
  }),
);

const tables = args.tasks.map((task) => ({
  task,
  table: markdownTable(
    HEADER,
    results
      .filter((r) => r.task === task)
      .map((r) => [
        name(r),
        r.lr,
        pct(mean(bySeed.get(r)!.map((x) => x.validationAccuracy))),
        testCell(r),
        pct(r.removedFraction),
        pct(1 - r.params.after / r.params.before),
        r.trainableParams,
        r.steps,
        r.wallSeconds.toFixed(0),
      ]),
  ),
}));
const verdictLines = verdicts.map((v) =>
  v.gapPoints === null
    ? `- ${v.task}, ${v.family}: not measured (no dense or no 0.4 cell in this run)`
    : `- ${v.task}, ${v.family}: best dense ${v.bestDense!.method} ${pct(v.bestDense!.testAccuracy)}, @0.4 ${pct(v.at04!)}: ` +
      `${v.gapPoints.toFixed(1)} points below${v.gapPointsBySeed.length > 1 ? ` (per seed: ${v.gapPointsBySeed.map((g) => g.toFixed(1)).join(", ")})` : ""} — target (≤ 1 point) **${v.met ? "met" : "not met"}**`,
);
// The sweep: validation (test) accuracy of every dense cell at every rate; the chosen rate in bold.
const sweepTables = args.tasks.map((task) => ({
  task,
  table: markdownTable(
    ["method", ...lrs.map((lr) => `lr ${lr}`)],
    denseCells
      .filter((c) => c.task === task)
      .map((c) => [
        name(c),
        ...lrs.map((lr) => {
          const r = sweep.find((x) => x.lr === lr && key(x) === key(c))!;
          const rows = bySeed.get(r);
          const cell =
            `${pct(r.validationAccuracy)} (${pct(r.testAccuracy)})` +
            (rows && rows.length > 1 ? `, mean val ${pct(mean(rows.map((x) => x.validationAccuracy)))}` : "");
          return chosen.get(key(c)) === r ? `**${cell}**` : cell;
        }),
      ]),
  ),
}));
for (const t of tables) console.log(`\n${t.task} (seq ${TASK_SEQ[t.task]})\n${t.table}`);
for (const t of sweepTables)
  console.log(`\n${t.task}: validation (test) accuracy by learning rate\n${t.table}`);
console.log(`\n${verdictLines.join("\n")}\ngrid: ${all.length} cells in ${totalMinutes.toFixed(1)} min`);

const env = environment();
const suffix =
  args.quick || args.devEncoder ? "-quick" : args.steps !== DEFAULT_STEPS ? `-steps${args.steps}` : "";
/** The budget every cell of a task shares; the learning rate is per method (chosenLearningRates). */
const b0 = (t: string) => {
  const { lr: _lr, ...shared } = budget({ task: t, method: "gates", target: 0 }, 0);
  return shared;
};
writeBenchJson(`quality${suffix}`, {
  bench: "quality",
  base: base.info,
  environment: env,
  gateMethod,
  adapterGateMethod,
  budget: Object.fromEntries(args.tasks.map((t) => [t, b0(t)])),
  learningRates: lrs,
  chosenLearningRates: Object.fromEntries([...chosen].map(([k, r]) => [k, r.lr])),
  totalMinutes,
  cellMinutes,
  cachedCells,
  verdicts,
  seeds,
  results: results.map((row) => {
    const { histogram: _h, ...r } = row;
    return {
      ...r,
      label: label(r),
      testAccuracyMean: mean(testsOf(row)),
      testAccuracyBySeed: testsOf(row),
      validationAccuracyBySeed: bySeed.get(row)!.map((x) => x.validationAccuracy),
    };
  }),
  sweep: sweep.map(({ histogram: _h, ...r }) => ({ ...r, label: label(r) })),
});
writeFileSync(
  `docs/quality${suffix}.md`,
  `# Adaptation quality: head-only, LoRA, dense gates, gates + LoRA and pruned variants

Generated by \`npm run bench:quality${args.quick ? " -- --quick" : ""}\` (${args.steps} main steps) on ${env.date} (${env.cpus} CPUs, shared machine; load average at the end ${env.loadAverage.map((x) => x.toFixed(1)).join(", ")}). Base: \`${base.info.path}\` (sha256 \`${base.info.sha256.slice(0, 16)}…\`), frozen in every row. Gate method: \`${gateMethod}\` for gates alone (the default chosen by the sparsity study, docs/sparsity-study.md), \`${adapterGateMethod}\` for gates + LoRA. ${all.length} trainings taking ${cellMinutes.toFixed(1)} minutes of wall time in all${cachedCells ? ` (${cachedCells} of them taken from the cell cache, runs/study-cache, where an earlier run of the same cell with the same base and budget had put them; this run took ${totalMinutes.toFixed(1)} minutes)` : ""}.

Gated rows are the exported, physically smaller models evaluated on the test split; "removed" is counted by export. Head-only and LoRA keep every weight. Two gated families: gates alone (the frozen weights are only selected and rescaled), and gates + LoRA r=${ADAPTER_RANK} (rank-${ADAPTER_RANK} adapters trained inside the gates, \`sluice train --adapter-rank\`, merged into the weights by export, so the served model is the same size as with gates alone). Every row has the same budget per task except the learning rate, which each method gets by validation accuracy of its dense cell: every rate of ${lrs.join(", ")} is trained on seed ${seeds[0]}, the ${FINALISTS} best there are trained at seeds ${seeds.join(", ")}, and the best mean validation accuracy wins (each family's pruned rows use the rate chosen for its dense cell; the sweep is below, and the test split was only read to report). Seed = initialisation of the head and gates, batch order, gate noise. Test accuracies are means over the seeds, per-seed values in brackets, and the verdict compares means:
${args.tasks.map((t) => `- ${t}: sequence length ${TASK_SEQ[t]}, ${b0(t).steps} steps of batch ${b0(t).batchSize} (+ ${b0(t).recoverySteps} recovery steps for binarising gate methods), AdamW; LoRA rank 8 on every gated linear layer; gates (both families) also train the gated layers' biases and the head; head on the ${b0(t).pooling}-pooled output`).join("\n")}

${tables.map((t) => `## ${t.task}\n\n${t.table}\n`).join("\n")}
## Target: at 0.4 sparsity within 1 point of the best dense method (any dense row, per gated family)

${verdictLines.join("\n")}

## Learning-rate sweep: seed-1 validation (test) accuracy of the dense cells; finalists with their mean validation accuracy over the seeds; chosen rate in bold

${sweepTables.map((t) => `### ${t.task}\n\n${t.table}\n`).join("\n")}`,
);
console.log(`wrote bench-results/quality${suffix}.json and docs/quality${suffix}.md`);
updateBenchmarksPage();
