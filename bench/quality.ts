/**
 * Quality of adaptation (issue 6): for spam and sentiment on the pretrained base, the test accuracy of head-only,
 * LoRA r=8, dense gate adaptation (target 0) and gates at 0.2 / 0.3 / 0.4 with the default gate method, with
 * trainable parameters and the fraction removed. Gated rows are the EXPORTED models (checked equal to the gated
 * ones); head-only and LoRA are evaluated through the engine's evaluation graph. Target: at 0.4 sparsity within
 * 1 point of the best dense method on both tasks; the verdict is printed and written, met or not.
 *
 *   npm run bench:quality -- [--quick] [--tasks spam,sentiment] [--methods head,lora,gates]
 *                            [--targets 0,0.2,0.3,0.4] [--gates <method>] [--steps N] [--threads 2]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { DEFAULT_GATE_METHOD } from "../src/trainer-node/gates/methods";
import type { CellSpec } from "../src/trainer-node/study/run";
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
} from "./lib/study";

const argv = process.argv.slice(2);
const gatesFlag = argv.indexOf("--gates");
const gateMethod = (gatesFlag >= 0 ? argv.splice(gatesFlag, 2)[1] : DEFAULT_GATE_METHOD) as CellSpec["gates"];
const args = parseStudyArgs(argv);
const kinds = args.methods ?? ["head", "lora", "gates"];
const targets = args.targets ?? (args.quick ? [0, 0.4] : [0, 0.2, 0.3, 0.4]);

const budget = (cell: CellSpec) => studyBudget(cell.task, args);

const base = loadBase(args);
const cells: CellSpec[] = args.tasks.flatMap((task) => [
  ...(kinds.includes("head") ? [{ task, method: "head" as const, target: 0 }] : []),
  ...(kinds.includes("lora") ? [{ task, method: "lora" as const, target: 0 }] : []),
  ...(kinds.includes("gates")
    ? targets.map((target) => ({ task, method: "gates" as const, gates: gateMethod, target }))
    : []),
]);
process.stderr.write(`quality bench: ${cells.length} cells on ${base.info.path}, gates ${gateMethod}\n`);
const started = performance.now();
const results = await runGrid(base, cells, budget, args.quick, args.fresh);
const totalMinutes = (performance.now() - started) / 60000;
// Sum of the cells' own wall times (cached cells count what they took when they ran).
const cellMinutes = results.reduce((s, r) => s + r.wallSeconds, 0) / 60;
const cachedCells = results.filter((r) => r.cached).length;

const name = (r: CellSpec) =>
  r.method === "head"
    ? "head only"
    : r.method === "lora"
      ? "LoRA r=8"
      : r.target === 0
        ? `dense gates (${r.gates}, target 0)`
        : `gates ${r.gates} @${r.target}`;
const HEADER = [
  "method",
  "test acc",
  "removed (gated weights)",
  "params removed",
  "trainable",
  "steps",
  "wall s",
];

interface Verdict {
  task: string;
  bestDense: { method: string; testAccuracy: number } | null;
  at04: number | null;
  gapPoints: number | null;
  met: boolean | null;
}
const verdicts: Verdict[] = args.tasks.map((task) => {
  const rs = results.filter((r) => r.task === task);
  const dense = rs.filter((r) => r.method !== "gates" || r.target === 0);
  const best = [...dense].sort((a, b) => b.testAccuracy - a.testAccuracy)[0];
  const sparse = rs.find((r) => r.method === "gates" && r.target === 0.4);
  const gap = best && sparse ? 100 * (best.testAccuracy - sparse.testAccuracy) : null;
  return {
    task,
    bestDense: best ? { method: name(best), testAccuracy: best.testAccuracy } : null,
    at04: sparse?.testAccuracy ?? null,
    gapPoints: gap,
    met: gap === null ? null : gap <= 1,
  };
});

const tables = args.tasks.map((task) => ({
  task,
  table: markdownTable(
    HEADER,
    results
      .filter((r) => r.task === task)
      .map((r) => [
        name(r),
        pct(r.testAccuracy),
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
    ? `- ${v.task}: not measured (no dense or no 0.4 cell in this run)`
    : `- ${v.task}: best dense ${v.bestDense!.method} ${pct(v.bestDense!.testAccuracy)}, gated @0.4 ${pct(v.at04!)}: ` +
      `${v.gapPoints.toFixed(1)} points below — target (≤ 1 point) **${v.met ? "met" : "not met"}**`,
);
for (const t of tables) console.log(`\n${t.task} (seq ${TASK_SEQ[t.task]})\n${t.table}`);
console.log(`\n${verdictLines.join("\n")}\ngrid: ${cells.length} cells in ${totalMinutes.toFixed(1)} min`);

const env = environment();
const suffix = args.quick || args.devEncoder ? "-quick" : args.steps ? `-steps${args.steps}` : "";
mkdirSync("bench-results", { recursive: true });
mkdirSync("docs", { recursive: true });
writeFileSync(
  `bench-results/quality${suffix}.json`,
  `${JSON.stringify(
    {
      bench: "quality",
      base: base.info,
      environment: env,
      gateMethod,
      budget: Object.fromEntries(args.tasks.map((t) => [t, budget({ task: t, method: "gates", target: 0 })])),
      totalMinutes,
      cellMinutes,
      cachedCells,
      verdicts,
      results: results.map(({ histogram: _h, ...r }) => ({ ...r, label: label(r) })),
    },
    null,
    2,
  )}\n`,
);
const b0 = (t: string) => budget({ task: t, method: "gates", target: 0 });
writeFileSync(
  `docs/quality${suffix}.md`,
  `# Adaptation quality: head-only, LoRA, dense gates and pruned variants

Generated by \`npm run bench:quality${args.quick ? " -- --quick" : ""}\` on ${env.date} (${env.cpus} CPUs, shared machine; load average at the end ${env.loadAverage.map((x) => x.toFixed(1)).join(", ")}). Base: \`${base.info.path}\` (sha256 \`${base.info.sha256.slice(0, 16)}…\`), frozen in every row. Gate method: \`${gateMethod}\` (the default chosen by the sparsity study, docs/sparsity-study.md). ${cells.length} trainings taking ${cellMinutes.toFixed(1)} minutes of wall time in all${cachedCells ? ` (${cachedCells} of them taken from the cell cache, runs/study-cache, where an earlier run of the same cell with the same base and budget had put them; this run took ${totalMinutes.toFixed(1)} minutes)` : ""}.

Gated rows are the exported, physically smaller models evaluated on the test split; "removed" is counted by export. Head-only and LoRA keep every weight. Every row has the same budget per task:
${args.tasks.map((t) => `- ${t}: sequence length ${TASK_SEQ[t]}, ${b0(t).steps} steps of batch ${b0(t).batchSize} (+ ${b0(t).recoverySteps} recovery steps for binarising gate methods), AdamW lr ${b0(t).lr}, seed ${b0(t).seed}; LoRA rank 8 on every gated linear layer; gates also train the gated layers' biases and the head; head on the ${b0(t).pooling}-pooled output`).join("\n")}

${tables.map((t) => `## ${t.task}\n\n${t.table}\n`).join("\n")}
## Target: at 0.4 sparsity within 1 point of the best dense method

${verdictLines.join("\n")}
`,
);
console.log(`wrote bench-results/quality${suffix}.json and docs/quality${suffix}.md`);
