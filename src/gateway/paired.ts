/**
 * Confidence intervals for the accuracy difference of two variants, from their per-example evidence.
 * Paired (same eval split): Newcombe's (1998) method 10, the square-and-add of two Wilson intervals corrected
 * by the (continuity-corrected) phi correlation of the 2×2 table, so agreement between the variants narrows the interval as it
 * should (McNemar's setting). Unpaired (different splits): Newcombe's hybrid score interval.
 */
import type { PairedCounts } from "../core/evidence";
import { type Interval, newcombeInterval, wilsonInterval } from "./experiments/stats";

/** Interval for accuracy(first) − accuracy(second) at two-sided level alpha. */
export function pairedDifferenceInterval(t: PairedCounts, alpha: number): Interval {
  const n = t.both + t.firstOnly + t.secondOnly + t.neither;
  if (n === 0) return [-1, 1];
  const r1 = t.both + t.firstOnly;
  const r2 = t.both + t.secondOnly;
  const p1 = r1 / n;
  const p2 = r2 / n;
  const [l1, u1] = wilsonInterval(r1, n, alpha);
  const [l2, u2] = wilsonInterval(r2, n, alpha);
  const denominator = Math.sqrt(r1 * (n - r1) * r2 * (n - r2));
  // Newcombe's continuity-corrected phi: without it, no discordant pairs would give a zero-width interval.
  const ad = t.both * t.neither;
  const bc = t.firstOnly * t.secondOnly;
  const numerator = ad > bc + n / 2 ? ad - bc - n / 2 : ad >= bc ? 0 : ad - bc;
  const phi = denominator > 0 ? numerator / denominator : 0;
  const d = p1 - p2;
  const below = Math.sqrt(Math.max(0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2));
  const above = Math.sqrt(Math.max(0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2));
  return [Math.max(-1, d - below), Math.min(1, d + above)];
}

/** Interval for accuracy(first) − accuracy(second) from two independent samples. */
export function unpairedDifferenceInterval(
  first: { correct: number; n: number },
  second: { correct: number; n: number },
  alpha: number,
): Interval {
  return newcombeInterval(
    { successes: second.correct, n: second.n },
    { successes: first.correct, n: first.n },
    alpha,
  );
}
