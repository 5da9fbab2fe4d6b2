/**
 * The gate-method study of issue 8: for spam and sentiment on the pretrained base, every gate method at targets
 * 0.2, 0.3, 0.4, 0.5. Each cell trains, exports the physically pruned model (checked equal to the gated model)
 * and evaluates the EXPORTED model on the test split. Prints a table per task; writes
 * bench-results/sparsity.json, docs/sparsity-study.md and one SVG per task of the evaluation-gate histogram
 * over training per method (at target 0.4).
 *
 *   npm run bench:sparsity -- [--quick] [--tasks spam,sentiment] [--methods finegates,hardconcrete]
 *                             [--targets 0.2,0.4] [--steps N] [--threads 2] [--dev-encoder]
 */
import { writeFileSync } from "node:fs";
import { GATE_METHODS, type GateMethodName } from "../src/trainer-node/gates/finegates";
import type { CellResult, CellSpec } from "../src/trainer-node/study/run";
import { gateHistogramSvg } from "../src/trainer-node/study/svg";
import { updateBenchmarksPage } from "./lib/docs";
import {
  environment,
  loadBase,
  markdownTable,
  parseStudyArgs,
  pct,
  runGrid,
  studyBudget,
  studyTask,
  TASK_SEQ,
  writeBenchJson,
} from "./lib/study";

const args = parseStudyArgs(process.argv.slice(2));
const methods = (args.methods ?? [...GATE_METHODS]) as GateMethodName[];
for (const m of methods)
  if (!(GATE_METHODS as readonly string[]).includes(m))
    throw new Error(`--methods: unknown gate method '${m}' (have ${GATE_METHODS.join(", ")})`);
const targets = args.targets ?? (args.quick ? [0.4] : [0.2, 0.3, 0.4, 0.5]);

const base = loadBase(args);
const cells: CellSpec[] = args.tasks.flatMap((task) =>
  methods.flatMap((gates) => targets.map((target) => ({ task, method: "gates" as const, gates, target }))),
);
process.stderr.write(`sparsity study: ${cells.length} cells on ${base.info.path}\n`);
const started = performance.now();
const results = await runGrid(base, cells, (c) => studyBudget(c.task, args), args.quick, args.fresh);
const totalMinutes = (performance.now() - started) / 60000;
// Sum of the cells' own wall times (cached cells count what they took when they ran).
const cellMinutes = results.reduce((s, r) => s + r.wallSeconds, 0) / 60;
const cachedCells = results.filter((r) => r.cached).length;

// --- tables ---------------------------------------------------------------------------------------------------
const rowsFor = (task: string) =>
  results
    .filter((r) => r.task === task)
    .map((r) => [
      r.gates!,
      r.target.toFixed(1),
      pct(r.testAccuracy),
      pct(r.removedFraction),
      r.targetMet ? "yes" : "**no**",
      pct(1 - r.params.after / r.params.before),
      pct(1 - r.flopsPerToken.after / r.flopsPerToken.before),
      r.trainableParams,
      r.steps,
      r.wallSeconds.toFixed(0),
    ]);
const HEADER = [
  "method",
  "target",
  "test acc",
  "removed (gated weights)",
  "target ±2 pts",
  "params removed",
  "FLOPs/token removed",
  "trainable",
  "steps",
  "wall s",
];

/**
 * The default method: among methods that met every target they were asked for (equal removed fraction, so
 * their accuracies are comparable), the one with the highest mean test accuracy over all (task, target) cells.
 */
function chooseDefault(rs: CellResult[]) {
  const byMethod = new Map<string, CellResult[]>();
  for (const r of rs) byMethod.set(r.gates!, [...(byMethod.get(r.gates!) ?? []), r]);
  const summary = [...byMethod].map(([method, list]) => ({
    method,
    cells: list.length,
    targetsMet: list.filter((r) => r.targetMet).length,
    meanTestAccuracy: list.reduce((s, r) => s + r.testAccuracy, 0) / list.length,
    meanRemoved: list.reduce((s, r) => s + r.removedFraction, 0) / list.length,
    meanWallSeconds: list.reduce((s, r) => s + r.wallSeconds, 0) / list.length,
  }));
  const eligible = summary.filter((s) => s.targetsMet === s.cells);
  const winner = [...eligible].sort((a, b) => b.meanTestAccuracy - a.meanTestAccuracy)[0];
  return { summary, winner: winner?.method ?? null };
}
const choice = chooseDefault(results);

let consoleTables = "";
for (const task of args.tasks)
  consoleTables += `\n${task} (seq ${TASK_SEQ[task]})\n${markdownTable(HEADER, rowsFor(task))}\n`;
const summaryTable = markdownTable(
  ["method", "targets met", "mean test acc", "mean removed", "mean wall s"],
  choice.summary.map((s) => [
    s.method,
    `${s.targetsMet}/${s.cells}`,
    pct(s.meanTestAccuracy, 2),
    pct(s.meanRemoved),
    s.meanWallSeconds.toFixed(0),
  ]),
);
console.log(consoleTables);
console.log(summaryTable);
console.log(`\ndefault by accuracy at equal removed fraction: ${choice.winner ?? "none met every target"}`);
console.log(`grid: ${cells.length} cells in ${totalMinutes.toFixed(1)} min`);

// --- files ----------------------------------------------------------------------------------------------------
const env = environment();
const suffix = args.quick || args.devEncoder ? "-quick" : args.steps ? `-steps${args.steps}` : "";
writeBenchJson(`sparsity${suffix}`, {
  bench: "sparsity",
  base: base.info,
  environment: env,
  grid: {
    tasks: args.tasks,
    methods,
    targets,
    budget: Object.fromEntries(args.tasks.map((t) => [t, studyBudget(t, args)])),
  },
  totalMinutes,
  cellMinutes,
  cachedCells,
  choice,
  results,
});

const svgTarget = targets.includes(0.4) ? 0.4 : targets[targets.length - 1];
const svgFiles: string[] = [];
for (const task of args.tasks) {
  const series = results
    .filter((r) => r.task === task && r.target === svgTarget)
    .map((r) => ({
      title: `${r.gates} (removed ${pct(r.removedFraction)})`,
      points: r.histogram,
    }));
  const file = `docs/sparsity-gates-${task}${suffix}.svg`;
  writeFileSync(
    file,
    gateHistogramSvg(series, `${task}: evaluation-gate histogram over training, target ${svgTarget}`),
  );
  svgFiles.push(file);
}

/** How large the winner's lead is next to the test sets' resolution (one example, in accuracy points). */
function marginNote(): string {
  const eligible = choice.summary
    .filter((m) => m.targetsMet === m.cells)
    .sort((a, b) => b.meanTestAccuracy - a.meanTestAccuracy);
  if (eligible.length < 2) return "";
  const lead = 100 * (eligible[0].meanTestAccuracy - eligible[1].meanTestAccuracy);
  const resolution = args.tasks
    .map((t) => `${t} ${(100 / (results.find((r) => r.task === t) ? studyTestSize(t) : 1)).toFixed(2)}`)
    .join(", ");
  return `Its lead over ${eligible[1].method} is ${lead.toFixed(2)} points of mean test accuracy; one test example is worth (points) ${resolution}, and every cell is one seed${lead < 2 ? ", so a lead of this size is weak evidence" : ""}.`;
}
const studyTestSize = (t: string) => studyTask(t, args.quick).test.ids.length;

const budgetLines = args.tasks
  .map((t) => {
    const b = studyBudget(t, args);
    return `- ${t}: sequence length ${TASK_SEQ[t]}, ${b.steps} main steps of batch ${b.batchSize} (+ ${b.recoverySteps} recovery steps for the binarising methods), AdamW lr ${b.lr}, λ ${b.lambda} (FineGates), gated-layer biases and the classification head (${b.pooling}-pooled) trained, seed ${b.seed}, ${b.threads} ORT threads`;
  })
  .join("\n");

const md = `# Gate-method study

Generated by \`npm run bench:sparsity${args.quick ? " -- --quick" : ""}\` on ${env.date} (${env.cpus} CPUs, ${env.cpuModel}; load average at the end ${env.loadAverage.map((x) => x.toFixed(1)).join(", ")}; the machine is shared, so wall times are indicative only). Base: \`${base.info.path}\` (sha256 \`${base.info.sha256.slice(0, 16)}…\`). ${cells.length} trainings taking ${cellMinutes.toFixed(1)} minutes of wall time in all${cachedCells ? ` (${cachedCells} of them taken from the cell cache, runs/study-cache, where an earlier run of the same cell with the same base and budget had put them; this run took ${totalMinutes.toFixed(1)} minutes)` : ""}.

Every cell trains the gates on the frozen base, **exports the physically pruned model** (export fails unless its logits equal the gated model's within 1e-4) and evaluates the exported model on the task's test split. "removed" is the fraction of gated-layer weights the exported model no longer has, counted by export, never an expected value; parameters and FLOPs per token removed are of the whole model (embeddings included in parameters).

Budget per cell:
${budgetLines}

${args.tasks.map((t) => `## ${t}\n\n${markdownTable(HEADER, rowsFor(t))}\n`).join("\n")}
## Summary and the default method

${summaryTable}

Default chosen by accuracy at equal removed fraction (only methods that met every target compete): **${choice.winner ?? "none met every target"}**.
${marginNote()}

## Evaluation gates over training

${svgFiles.map((f) => `![${f}](${f.replace(/^docs\//, "")})`).join("\n\n")}

Each panel shows, at every evaluation, how the evaluation gates (the values export folds into the weights) are spread over [0, 1]; the bottom row is gates exactly 0, the only ones export can remove.
`;
writeFileSync(`docs/sparsity-study${suffix}.md`, md);
console.log(
  `wrote bench-results/sparsity${suffix}.json, docs/sparsity-study${suffix}.md, ${svgFiles.join(", ")}`,
);
updateBenchmarksPage();
