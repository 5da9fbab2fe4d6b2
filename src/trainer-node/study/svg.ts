/**
 * The evaluation-gate histogram over training as a small SVG heat map: x = evaluation step, y = gate-value bin
 * (exactly 0 at the bottom, (0.9, 1] at the top), shade = fraction of gates in the bin. A bimodal method shows
 * two bright bands (0 and near 1); FineGates' uniform shrinking shows one band sliding down together.
 * Hand-written: a dozen rectangles and labels do not need a charting library.
 */
import { HISTOGRAM_BINS } from "./run";

export interface HeatmapSeries {
  title: string;
  points: { step: number; phase: string; bins: number[] }[];
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** One panel per series, side by side, sharing the y axis labels and colour scale. */
export function gateHistogramSvg(series: HeatmapSeries[], caption: string): string {
  const panelW = 220;
  const panelH = 176;
  const left = 44;
  const top = 40;
  const gap = 24;
  const rows = HISTOGRAM_BINS.length;
  const cellH = panelH / rows;
  const width = left + series.length * (panelW + gap) + 10;
  const height = top + panelH + 56;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="10">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="14" font-size="12" font-weight="bold">${esc(caption)}</text>`,
  ];
  for (let r = 0; r < rows; r++) {
    const y = top + panelH - (r + 1) * cellH;
    out.push(
      `<text x="${left - 4}" y="${(y + cellH * 0.7).toFixed(1)}" text-anchor="end">${esc(HISTOGRAM_BINS[r])}</text>`,
    );
  }
  for (const [i, s] of series.entries()) {
    const x0 = left + i * (panelW + gap);
    out.push(`<text x="${x0}" y="${top - 8}" font-size="11">${esc(s.title)}</text>`);
    out.push(
      `<rect x="${x0}" y="${top}" width="${panelW}" height="${panelH}" fill="#f4f4f4" stroke="#999"/>`,
    );
    const n = s.points.length;
    const cellW = n ? panelW / n : panelW;
    for (const [k, p] of s.points.entries()) {
      for (let r = 0; r < rows; r++) {
        const f = p.bins[r] ?? 0;
        if (f <= 0) continue;
        // sqrt so small-but-present fractions stay visible; dark = many gates
        const shade = Math.round(255 * (1 - Math.sqrt(Math.min(1, f))));
        const y = top + panelH - (r + 1) * cellH;
        out.push(
          `<rect x="${(x0 + k * cellW).toFixed(1)}" y="${y.toFixed(1)}" width="${cellW.toFixed(1)}" height="${cellH.toFixed(1)}" fill="rgb(${shade},${shade},255)"><title>step ${p.step} (${p.phase}): ${(100 * f).toFixed(1)}% of gates ${esc(HISTOGRAM_BINS[r])}</title></rect>`,
        );
      }
      if (k > 0 && p.phase !== s.points[k - 1].phase)
        out.push(
          `<line x1="${(x0 + k * cellW).toFixed(1)}" y1="${top}" x2="${(x0 + k * cellW).toFixed(1)}" y2="${top + panelH}" stroke="#c00" stroke-dasharray="3,2"/>`,
        );
    }
    const first = s.points[0]?.step ?? 0;
    const last = s.points.at(-1)?.step ?? 0;
    out.push(`<text x="${x0}" y="${top + panelH + 12}">${first}</text>`);
    out.push(`<text x="${x0 + panelW}" y="${top + panelH + 12}" text-anchor="end">${last}</text>`);
    out.push(`<text x="${x0 + panelW / 2}" y="${top + panelH + 12}" text-anchor="middle">step</text>`);
  }
  out.push(
    `<text x="${left}" y="${top + panelH + 32}">y: evaluation gate value (bin); shade: fraction of gates (darker = more, √ scale); red dashes: binarisation, recovery after.</text>`,
  );
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
