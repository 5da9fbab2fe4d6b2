/**
 * The dashboard's data (read straight from D1, no caches: an admin wants the current state) and its
 * server-rendered HTML: models and variants (sparsity vs accuracy, marker size = p50 latency), the variant SLA
 * routing would choose now, and each recent experiment with per-arm latency and accuracy charts.
 */

import type { ModelRow, TaskSlaRow, VariantRow } from "../../registry/schema";
import {
  type AliasWithVersion,
  findTaskSla,
  listAliases,
  listModels,
  listVariants,
  registryDb,
} from "../../registry/store";
import { routable, slaOf } from "../catalog";
import type { ExperimentResults } from "../experiments/analyze";
import { computeResults } from "../experiments/results";
import { armName } from "../experiments/serving";
import { type ExperimentWithArms, experimentDb, listExperiments } from "../experiments/store";
import { type RouteDecision, selectVariant } from "../routing";
import { barChart, escapeHtml as h, scatterChart } from "./charts";

/** Experiments shown with full results (newest first); older ones are listed only. */
const MAX_EXPERIMENTS_WITH_RESULTS = 10;

export interface DashboardModel {
  model: ModelRow;
  variants: VariantRow[];
  sla: TaskSlaRow | null;
  aliases: AliasWithVersion[];
  route: RouteDecision;
  /** the model's running experiment, which overrides SLA routing for the requests it covers */
  runningExperiment: { id: number; name: string } | null;
}

export interface DashboardExperiment {
  experiment: ExperimentWithArms;
  results: ExperimentResults | null;
  pendingFeedback: number;
  error?: string;
}

export interface DashboardData {
  generatedAt: string;
  models: DashboardModel[];
  experiments: DashboardExperiment[];
}

export async function loadDashboard(d1: D1Database): Promise<DashboardData> {
  const rdb = registryDb(d1);
  const edb = experimentDb(d1);
  const all = await listExperiments(edb);
  const models = await Promise.all(
    (await listModels(rdb)).map(async (model) => {
      const [variants, sla, aliases] = await Promise.all([
        listVariants(rdb, model.id),
        findTaskSla(rdb, model.task),
        listAliases(rdb, model.id),
      ]);
      const route = selectVariant(variants.map(routable), { sla: slaOf(sla ?? null) });
      const running = all.find((e) => e.model.id === model.id && e.experiment.status === "running");
      const runningExperiment = running ? { id: running.experiment.id, name: running.experiment.name } : null;
      return { model, variants, sla: sla ?? null, aliases, route, runningExperiment };
    }),
  );
  const experiments = await Promise.all(
    all.map(async (experiment, i): Promise<DashboardExperiment> => {
      if (i >= MAX_EXPERIMENTS_WITH_RESULTS || experiment.experiment.status === "draft") {
        return { experiment, results: null, pendingFeedback: 0 };
      }
      try {
        const view = await computeResults(edb, d1, experiment);
        return { experiment, results: view.results, pendingFeedback: view.pendingFeedback };
      } catch (err) {
        // one experiment the analysis rejects must not take the page down
        return {
          experiment,
          results: null,
          pendingFeedback: 0,
          error: err instanceof Error ? err.message : String(err),
        };
      }
    }),
  );
  return { generatedAt: new Date().toISOString(), models, experiments };
}

const pct = (x: number, digits = 1) => `${(x * 100).toFixed(digits)}%`;
const ms = (x: number) => `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`;

function modelSection(m: DashboardModel): string {
  const chosen = m.route.chosen;
  const aliasesOf = (v: VariantRow) => m.aliases.filter((a) => a.version === v.version).map((a) => a.alias);
  const rows = m.variants
    .map((v) => {
      const verdict = m.route.candidates.find((c) => c.version === v.version);
      return `<tr class="variant${v.version === chosen ? " chosen" : ""}" data-version="${v.version}">
        <td>v${v.version}${v.version === chosen ? ' <span class="badge">routed</span>' : ""}</td>
        <td><span class="status ${h(v.status)}">${h(v.status)}</span></td>
        <td class="num">${pct(v.sparsity, 0)}</td>
        <td class="num">${v.params.toLocaleString("en-US")}</td>
        <td class="num">${pct(v.accuracy)}</td>
        <td class="num">${ms(v.latencyP50Ms)}</td>
        <td>${h(aliasesOf(v).join(", "))}</td>
        <td class="why">${h(verdict?.why ?? "")}</td>
      </tr>`;
    })
    .join("");
  const chart = scatterChart(
    m.variants.map((v) => ({
      x: v.sparsity,
      y: v.accuracy,
      size: v.latencyP50Ms,
      label: `v${v.version}`,
      title: `v${v.version}: sparsity ${pct(v.sparsity, 0)}, accuracy ${pct(v.accuracy)}, p50 ${ms(v.latencyP50Ms)}`,
      highlight: v.version === chosen,
    })),
    {
      title: `${m.model.name}: sparsity vs accuracy (marker size: p50 latency)`,
      xLabel: "sparsity (fraction of gated weights removed)",
      yLabel: "accuracy",
      xFormat: (v) => pct(v, 0),
      yFormat: (v) => pct(v, 1),
    },
  );
  const sla = m.sla
    ? `SLA for task <b>${h(m.model.task)}</b>: accuracy ≥ ${pct(m.sla.min)}${m.sla.maxLatencyMs !== null ? `, p50 ≤ ${m.sla.maxLatencyMs} ms` : ""}${m.sla.strict ? " (strict)" : ""}`
    : `no SLA set for task <b>${h(m.model.task)}</b>`;
  return `<section class="model" data-model="${h(m.model.name)}">
    <h3>${h(m.model.name)} <small>${m.variants.length} variant(s), labels ${h(m.model.labels.join(" / "))}</small></h3>
    <p class="routing">${sla}. <b>Routing now:</b> <span class="route-outcome ${h(m.route.outcome)}">${
      chosen !== null ? `v${chosen}` : "none"
    }</span> — ${h(m.route.reason)}${
      m.runningExperiment
        ? `<br><b>Experiment #${m.runningExperiment.id} (${h(m.runningExperiment.name)}) is running:</b> routed requests are served by its arms instead (see below)`
        : ""
    }</p>
    <div class="row">
      <figure>${chart}<figcaption>sparsity vs accuracy; marker size is p50 latency; outlined: the routed variant</figcaption></figure>
      <table class="variants"><thead><tr><th>version</th><th>status</th><th>sparsity</th><th>params</th><th>accuracy</th><th>p50</th><th>aliases</th><th>routing verdict</th></tr></thead><tbody>${rows}</tbody></table>
    </div>
  </section>`;
}

function experimentSection(x: DashboardExperiment): string {
  const e = x.experiment.experiment;
  const arms = x.experiment.arms;
  const head = `<h3>#${e.id} ${h(e.name)} <span class="status ${h(e.status)}">${h(e.status)}</span></h3>
    <p>model <b>${h(x.experiment.model.name)}</b>; arms ${arms
      .map(
        (a) =>
          `${armName(a.arm)} = v${a.version} (weight ${a.weight}${a.variant ? `, sparsity ${pct(a.variant.sparsity, 0)}` : ""})`,
      )
      .join(
        ", ",
      )}; unit <code>${h(e.unit)}</code>; primary metric ${h(e.primaryMetric)}; ${h(e.design)} design${
      e.plannedUnits ? ` (${e.plannedUnits} planned units)` : ""
    }; α = ${e.alpha}${e.winnerArm !== null ? `; <b>promoted arm ${armName(e.winnerArm)}</b>` : ""}</p>`;
  if (x.error)
    return `<section class="experiment" data-experiment="${e.id}">${head}<p class="error">results unavailable: ${h(x.error)}</p></section>`;
  const r = x.results;
  if (!r)
    return `<section class="experiment" data-experiment="${e.id}">${head}<p class="empty">${e.status === "draft" ? "not started" : "results not computed (older experiment)"}</p></section>`;
  const latency = barChart(
    r.arms.map((a) => ({
      label: a.name,
      bars: a.latency
        ? [
            { series: "p50", value: a.latency.p50Ms },
            { series: "p95", value: a.latency.p95Ms },
          ]
        : [],
    })),
    {
      title: `experiment ${e.id}: latency per arm`,
      yLabel: "latency (ms)",
      yFormat: (v) => `${Number(v.toPrecision(3))}`,
    },
  );
  const accuracy = barChart(
    r.arms.map((a) => ({
      label: a.name,
      bars: a.accuracy ? [{ series: "accuracy", value: a.accuracy.rate, interval: a.accuracy.ci }] : [],
    })),
    {
      title: `experiment ${e.id}: accuracy per arm (Wilson interval)`,
      yLabel: "accuracy",
      yFormat: (v) => pct(v, 0),
      yMin: 0,
      yMax: 1,
    },
  );
  const rows = r.arms
    .map(
      (a) => `<tr data-arm="${h(a.name)}"><td>${h(a.name)}${a.isControl ? " (control)" : ""}</td>
        <td class="num">${a.units}</td><td class="num">${a.requests}</td>
        <td class="num">${a.latency ? ms(a.latency.p50Ms) : "–"}</td><td class="num">${a.latency ? ms(a.latency.p95Ms) : "–"}</td>
        <td class="num">${pct(a.errorRate.rate, 2)}</td>
        <td class="num">${a.accuracy ? `${pct(a.accuracy.rate)} [${pct(a.accuracy.ci[0])}, ${pct(a.accuracy.ci[1])}] (${a.accuracy.total} labelled from ${a.accuracy.units} units)` : "–"}</td></tr>`,
    )
    .join("");
  const comparisons = r.comparisons
    .map((c) => {
      const parts: string[] = [];
      if (c.latency) {
        parts.push(
          `mean latency ${c.latency.difference >= 0 ? "+" : ""}${c.latency.difference.toFixed(2)} ms (${pct(c.latency.relativeDifference)}; ${c.latency.method}, p = ${c.latency.pValue.toPrecision(2)})`,
        );
      }
      if (c.accuracy) {
        parts.push(
          `accuracy ${c.accuracy.difference >= 0 ? "+" : ""}${(c.accuracy.difference * 100).toFixed(1)} pts (${c.accuracy.method}, p = ${c.accuracy.pValue.toPrecision(2)})`,
        );
      }
      return `<li>${h(c.name)} vs control: ${h(parts.join("; ") || "not enough data")}</li>`;
    })
    .join("");
  return `<section class="experiment" data-experiment="${e.id}">
    ${head}
    <p class="recommendation"><b>Recommendation:</b> <span data-action="${h(r.decision.action)}">${h(r.recommendation)}</span></p>
    <p class="srm ${r.srm.mismatch ? "bad" : "ok"}">sample ratio ${r.srm.observed.join(" / ")} (${r.srm.basis}), χ² p = ${r.srm.pValue.toPrecision(3)}${
      r.srm.mismatch ? " — SAMPLE RATIO MISMATCH" : ""
    }; progress ${r.progress.units}${r.progress.plannedUnits ? ` / ${r.progress.plannedUnits}` : ""} units${x.pendingFeedback ? `; ${x.pendingFeedback} feedback item(s) waiting for their exposure` : ""}</p>
    <div class="row">
      <figure>${latency}<figcaption>latency per arm: p50 and p95 of successful requests (intervals and tests count units, not requests)</figcaption></figure>
      <figure>${accuracy}<figcaption>accuracy from feedback, with ${pct(1 - r.alpha, 0)} Wilson interval over units (clustered: effective sample size = labelled requests / design effect)</figcaption></figure>
    </div>
    <table class="arms"><thead><tr><th>arm</th><th>units</th><th>requests</th><th>p50</th><th>p95</th><th>errors</th><th>accuracy</th></tr></thead><tbody>${rows}</tbody></table>
    <ul class="comparisons">${comparisons}</ul>
  </section>`;
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#111827;background:#f9fafb}
header{background:#0f172a;color:#f8fafc;padding:12px 24px}header h1{margin:0;font-size:20px}header p{margin:2px 0 0;color:#cbd5e1;font-size:12px}
main{padding:8px 24px 32px}h2{margin:24px 0 8px;font-size:17px;border-bottom:1px solid #d1d5db;padding-bottom:4px}
h3{margin:12px 0 4px;font-size:15px}h3 small{color:#6b7280;font-weight:normal}
section.model,section.experiment{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px 16px;margin:12px 0}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}figure{margin:0}figcaption{font-size:11px;color:#6b7280;max-width:440px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #e5e7eb;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.why{color:#4b5563;font-size:12px;max-width:320px}tr.chosen{background:#eff6ff}
.badge{background:#2563eb;color:#fff;border-radius:4px;padding:0 4px;font-size:11px}
.status{border-radius:4px;padding:0 5px;font-size:12px;background:#e5e7eb}.status.active,.status.running{background:#dcfce7}.status.retired,.status.stopped{background:#f3f4f6;color:#6b7280}.status.promoted{background:#dbeafe}
.srm.bad{color:#b91c1c;font-weight:bold}.recommendation{font-size:15px}.error{color:#b91c1c}.empty{color:#6b7280}
`;

export function renderDashboard(data: DashboardData): string {
  const models =
    data.models.length > 0
      ? data.models.map(modelSection).join("")
      : `<p class="empty">no models registered</p>`;
  const experiments =
    data.experiments.length > 0
      ? data.experiments.map(experimentSection).join("")
      : `<p class="empty">no experiments</p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sluice dashboard</title><style>${STYLE}</style></head>
<body><header><h1>Sluice</h1><p>pruned variants at the edge · generated ${h(data.generatedAt)}</p></header>
<main>
<h2 id="models">Models, variants and routing</h2>${models}
<h2 id="experiments">Experiments</h2>${experiments}
</main></body></html>`;
}
