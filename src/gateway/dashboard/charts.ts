/**
 * Inline SVG charts for the dashboard: a scatter plot and grouped bars with interval whiskers. Hand-written
 * because a charting library would be the heaviest thing in the Worker for three small, static charts.
 * Everything returned is an SVG string with all text escaped.
 */

export function escapeHtml(value: unknown): string {
  return String(value)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

const W = 440;
const H = 260;
const M = { top: 16, right: 16, bottom: 44, left: 56 };
const PLOT_W = W - M.left - M.right;
const PLOT_H = H - M.top - M.bottom;
const PALETTE = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];

export const colorOf = (i: number) => PALETTE[i % PALETTE.length];

/** "Nice" axis bounds and ticks covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): { lo: number; hi: number; values: number[] } {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    return ticks(lo - pad, hi + pad, count);
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const values: number[] = [];
  for (let v = start; v <= end + step / 2; v += step) values.push(Number(v.toPrecision(12)));
  return { lo: start, hi: end, values };
}

function axes(
  x: { lo: number; hi: number; values: number[]; label: string; format: (v: number) => string } | null,
  y: { lo: number; hi: number; values: number[]; label: string; format: (v: number) => string },
): string {
  const sy = (v: number) => M.top + PLOT_H - ((v - y.lo) / (y.hi - y.lo)) * PLOT_H;
  const parts: string[] = [];
  for (const v of y.values) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + PLOT_W}" y1="${sy(v)}" y2="${sy(v)}" stroke="#e5e7eb"/>`,
      `<text x="${M.left - 6}" y="${sy(v) + 4}" text-anchor="end" font-size="11" fill="#374151">${escapeHtml(y.format(v))}</text>`,
    );
  }
  parts.push(
    `<text transform="translate(14 ${M.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#111827">${escapeHtml(y.label)}</text>`,
  );
  if (x) {
    const sx = (v: number) => M.left + ((v - x.lo) / (x.hi - x.lo)) * PLOT_W;
    for (const v of x.values) {
      parts.push(
        `<line x1="${sx(v)}" x2="${sx(v)}" y1="${M.top}" y2="${M.top + PLOT_H}" stroke="#f3f4f6"/>`,
        `<text x="${sx(v)}" y="${M.top + PLOT_H + 16}" text-anchor="middle" font-size="11" fill="#374151">${escapeHtml(x.format(v))}</text>`,
      );
    }
    parts.push(
      `<text x="${M.left + PLOT_W / 2}" y="${H - 6}" text-anchor="middle" font-size="12" fill="#111827">${escapeHtml(x.label)}</text>`,
    );
  }
  parts.push(
    `<rect x="${M.left}" y="${M.top}" width="${PLOT_W}" height="${PLOT_H}" fill="none" stroke="#9ca3af"/>`,
  );
  return parts.join("");
}

export interface ScatterPoint {
  x: number;
  y: number;
  /** drawn as the marker's radius (scaled to 4..14 px) */
  size: number;
  label: string;
  title: string;
  highlight?: boolean;
}

/** Scatter plot; marker area encodes `size` (e.g. latency), labels sit next to markers. */
export function scatterChart(
  points: readonly ScatterPoint[],
  opts: {
    title: string;
    xLabel: string;
    yLabel: string;
    xFormat: (v: number) => string;
    yFormat: (v: number) => string;
  },
): string {
  if (points.length === 0) return `<p class="empty">no variants</p>`;
  // pad the data range so markers and their labels at the extremes stay inside the plot
  const padded = (values: number[], lead: number, trail: number) => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const span = hi - lo || Math.abs(hi) || 1;
    return ticks(lo - lead * span, hi + trail * span);
  };
  const x = padded(
    points.map((p) => p.x),
    0,
    0.15,
  );
  const y = padded(
    points.map((p) => p.y),
    0.08,
    0.08,
  );
  const sx = (v: number) => M.left + ((v - x.lo) / (x.hi - x.lo)) * PLOT_W;
  const sy = (v: number) => M.top + PLOT_H - ((v - y.lo) / (y.hi - y.lo)) * PLOT_H;
  const maxSize = Math.max(...points.map((p) => p.size), 1e-9);
  const marks = points
    .map((p, i) => {
      const r = 4 + 10 * Math.sqrt(Math.max(p.size, 0) / maxSize);
      return `<g class="point"><title>${escapeHtml(p.title)}</title><circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="${r.toFixed(1)}" fill="${colorOf(i)}" fill-opacity="0.55" stroke="${p.highlight ? "#111827" : colorOf(i)}" stroke-width="${p.highlight ? 2.5 : 1}"/><text x="${sx(p.x) + r + 3}" y="${sy(p.y) + 4}" font-size="11" fill="#111827">${escapeHtml(p.label)}</text></g>`;
    })
    .join("");
  return `<svg class="chart" role="img" aria-label="${escapeHtml(opts.title)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg">${axes(
    { ...x, label: opts.xLabel, format: opts.xFormat },
    { ...y, label: opts.yLabel, format: opts.yFormat },
  )}${marks}</svg>`;
}

export interface BarGroup {
  label: string;
  bars: { series: string; value: number; interval?: [number, number] }[];
}

/** Grouped vertical bars (one group per arm), optional interval whiskers, a legend of series. */
export function barChart(
  groups: readonly BarGroup[],
  opts: { title: string; yLabel: string; yFormat: (v: number) => string; yMin?: number; yMax?: number },
): string {
  const values = groups.flatMap((g) => g.bars.flatMap((b) => [b.value, ...(b.interval ?? [])]));
  const finite = values.filter(Number.isFinite);
  if (groups.length === 0 || finite.length === 0) return `<p class="empty">no data yet</p>`;
  const y = ticks(opts.yMin ?? Math.min(0, ...finite), opts.yMax ?? Math.max(...finite));
  const sy = (v: number) => M.top + PLOT_H - ((v - y.lo) / (y.hi - y.lo)) * PLOT_H;
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const groupW = PLOT_W / groups.length;
  const barW = Math.min(36, (groupW * 0.7) / series.length);
  const parts: string[] = [];
  groups.forEach((g, gi) => {
    const x0 = M.left + gi * groupW + (groupW - barW * series.length) / 2;
    g.bars.forEach((b) => {
      if (!Number.isFinite(b.value)) return;
      const si = series.indexOf(b.series);
      const x = x0 + si * barW;
      const top = sy(Math.max(b.value, y.lo));
      const base = sy(Math.max(y.lo, 0));
      parts.push(
        `<rect class="bar" x="${x + 1}" y="${Math.min(top, base)}" width="${barW - 2}" height="${Math.abs(base - top)}" fill="${colorOf(si)}" fill-opacity="0.8"><title>${escapeHtml(`${g.label} ${b.series}: ${opts.yFormat(b.value)}`)}</title></rect>`,
      );
      if (b.interval) {
        const cx = x + barW / 2;
        const [lo, hi] = b.interval.map((v) => sy(Math.min(Math.max(v, y.lo), y.hi)));
        parts.push(
          `<path class="whisker" d="M${cx} ${lo}V${hi}M${cx - 5} ${lo}H${cx + 5}M${cx - 5} ${hi}H${cx + 5}" stroke="#111827" stroke-width="1.5" fill="none"/>`,
        );
      }
    });
    parts.push(
      `<text x="${M.left + gi * groupW + groupW / 2}" y="${M.top + PLOT_H + 16}" text-anchor="middle" font-size="11" fill="#111827">${escapeHtml(g.label)}</text>`,
    );
  });
  const legend =
    series.length > 1
      ? series
          .map(
            (s, i) =>
              `<rect x="${M.left + 8 + i * 70}" y="${M.top + 6}" width="10" height="10" fill="${colorOf(i)}"/><text x="${M.left + 22 + i * 70}" y="${M.top + 15}" font-size="11">${escapeHtml(s)}</text>`,
          )
          .join("")
      : "";
  return `<svg class="chart" role="img" aria-label="${escapeHtml(opts.title)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg">${axes(
    null,
    { ...y, label: opts.yLabel, format: opts.yFormat },
  )}${parts.join("")}${legend}</svg>`;
}
