/**
 * An experiment arm's traffic, kept as per-unit aggregates that one request at a time updates: what the
 * analysis (analyze.ts) reads. Runtime-agnostic (the Worker's results route and the validity bench both use it).
 *
 * Why aggregates rather than raw per-unit request lists: every metric the analysis needs is a function of a
 * unit's sums (requests, errors, Σ latency, Σ latency², labelled, correct) plus, for p95, the latency samples in
 * order. Keeping those sorted as they arrive — each unit's own samples by binary insertion, the arm's pooled
 * samples by merging the requests added since the last read — means a look at a growing experiment costs
 * O(units + requests added) plus one linear merge, instead of re-validating, re-summing and re-sorting every
 * request at every look (which made a sequential experiment watched every 100 requests cost O(looks · N log N)).
 */
import { upperBound } from "./stats.ts";

/** One unit's traffic on its arm: the requests that carried its unit id. */
export interface UnitData {
  requests: number;
  /** of `requests`, how many failed */
  errors: number;
  /** server-side latency (ms) of each successful request */
  latencyMs: readonly number[];
  /** labelled feedback joined to the unit's successful requests */
  labelled: number;
  /** of `labelled`, how many predictions were right */
  correct: number;
}

/** One request as the analysis sees it. */
export interface RequestOutcome {
  /** the request failed (its latency, if given, is not counted) */
  error?: boolean;
  /** server-side latency (ms) of a successful request */
  latencyMs?: number;
  /** labelled feedback was joined to it */
  labelled?: boolean;
  /** the label agreed with the prediction (counted only when `labelled`) */
  correct?: boolean;
}

/** A unit's aggregates: the sums every per-unit metric is a function of, and its latencies sorted ascending. */
export interface UnitAggregate {
  requests: number;
  errors: number;
  labelled: number;
  correct: number;
  /** Σ latency (ms) over the unit's successful requests, in arrival order */
  latencySum: number;
  /** the unit's latency samples, ascending */
  sortedLatencyMs: readonly number[];
}

interface MutableUnit extends UnitAggregate {
  sortedLatencyMs: number[];
}

function newUnit(): MutableUnit {
  return { requests: 0, errors: 0, labelled: 0, correct: 0, latencySum: 0, sortedLatencyMs: [] };
}

function checkLatency(ms: number, where: string): void {
  if (!(Number.isFinite(ms) && ms >= 0)) {
    throw new RangeError(`${where}.latencyMs: must be finite numbers >= 0, got ${ms}`);
  }
}

/** Throws a RangeError naming the field when `u` is not a consistent unit summary. */
export function checkUnit(u: UnitData, where: string): void {
  for (const field of ["requests", "errors", "labelled", "correct"] as const) {
    if (!(Number.isInteger(u[field]) && u[field] >= 0)) {
      throw new RangeError(`${where}.${field}: must be an integer >= 0, got ${u[field]}`);
    }
  }
  if (u.errors > u.requests) throw new RangeError(`${where}.errors: exceeds requests`);
  if (u.latencyMs.length > u.requests - u.errors) {
    throw new RangeError(`${where}.latencyMs: more samples than successful requests`);
  }
  if (u.correct > u.labelled) throw new RangeError(`${where}: need correct <= labelled`);
  for (const ms of u.latencyMs) checkLatency(ms, where);
}

/**
 * One arm's traffic: per-unit aggregates (units in first-seen order), the requests without a unit id pooled apart,
 * and every unit's latency samples pooled and sorted.
 */
export class ArmTraffic {
  private readonly byKey = new Map<string | number, MutableUnit>();
  private readonly list: MutableUnit[] = [];
  private readonly loose: MutableUnit & { latencyMs: number[] } = { ...newUnit(), latencyMs: [] };
  private looseSeen = false;
  // pooled latency of the units: `pooled[0..pooledLength)` ascending, plus samples not merged in yet
  private pooled = new Float64Array(64);
  private pooledLength = 0;
  private pending: number[] = [];
  private latencySumSquaresTotal = 0;

  /** Arm traffic from per-unit summaries (what `analyzeExperiment` takes), each checked. */
  static fromUnits(units: readonly UnitData[], unsticky?: UnitData, where = "units"): ArmTraffic {
    const t = new ArmTraffic();
    units.forEach((u, j) => {
      checkUnit(u, `${where}[${j}]`);
      t.addUnitData(u);
    });
    if (unsticky) {
      checkUnit(unsticky, `${where.replace(/units$/, "unsticky")}`);
      t.addUnsticky(unsticky);
    }
    return t;
  }

  /** Adds one request of unit `key` (a unit id; any key distinct per unit). */
  addRequest(key: string | number, r: RequestOutcome): void {
    checkRequest(r);
    let u = this.byKey.get(key);
    if (!u) {
      u = newUnit();
      this.byKey.set(key, u);
      this.list.push(u);
    }
    u.requests++;
    // as the exposure rows say: a failed request counts as an error and carries no latency
    if (r.error) u.errors++;
    else if (r.latencyMs !== undefined) this.addLatency(u, r.latencyMs);
    if (r.labelled) {
      u.labelled++;
      if (r.correct) u.correct++;
    }
  }

  /** Adds one request that carried no unit id: reported apart, never part of the per-unit estimates. */
  addUnstickyRequest(r: RequestOutcome): void {
    checkRequest(r);
    this.looseSeen = true;
    const u = this.loose;
    u.requests++;
    if (r.error) u.errors++;
    else if (r.latencyMs !== undefined) {
      u.latencyMs.push(r.latencyMs);
      u.latencySum += r.latencyMs;
    }
    if (r.labelled) {
      u.labelled++;
      if (r.correct) u.correct++;
    }
  }

  private addUnitData(d: UnitData): void {
    // not keyed: a unit listed twice in `units` stays two units, as the array says
    const u = newUnit();
    this.list.push(u);
    u.requests = d.requests;
    u.errors = d.errors;
    u.labelled = d.labelled;
    u.correct = d.correct;
    for (const ms of d.latencyMs) this.addLatency(u, ms);
  }

  private addUnsticky(d: UnitData): void {
    this.looseSeen = true;
    const u = this.loose;
    u.requests += d.requests;
    u.errors += d.errors;
    u.labelled += d.labelled;
    u.correct += d.correct;
    for (const ms of d.latencyMs) {
      u.latencyMs.push(ms);
      u.latencySum += ms;
    }
  }

  private addLatency(u: MutableUnit, ms: number): void {
    u.latencySum += ms;
    const s = u.sortedLatencyMs;
    if (s.length === 0 || ms >= s[s.length - 1]) s.push(ms);
    else s.splice(upperBound(s, ms), 0, ms);
    this.pending.push(ms);
    this.latencySumSquaresTotal += ms * ms;
  }

  /** The units seen, in first-seen order (units with no request are never added). */
  get units(): readonly UnitAggregate[] {
    return this.list;
  }

  /** Σ latency² over every unit's successful requests (for the latency design effect). */
  get latencySumSquares(): number {
    return this.latencySumSquaresTotal;
  }

  /** Requests without a unit id, pooled; null when there were none. */
  get unsticky(): UnitData | null {
    return this.looseSeen ? this.loose : null;
  }

  /**
   * Every unit's latency samples, pooled, ascending. A view valid until the next add; samples added since the
   * last call are sorted and merged in (from the back, in place: linear in the pooled size).
   */
  sortedLatency(): Float64Array {
    const add = this.pending;
    if (add.length > 0) {
      add.sort((a, b) => a - b);
      const n = this.pooledLength;
      const total = n + add.length;
      if (total > this.pooled.length) {
        const grown = new Float64Array(Math.max(total, 2 * this.pooled.length));
        grown.set(this.pooled.subarray(0, n));
        this.pooled = grown;
      }
      const p = this.pooled;
      let i = n - 1;
      let j = add.length - 1;
      for (let k = total - 1; j >= 0; k--) {
        if (i >= 0 && p[i] > add[j]) p[k] = p[i--];
        else p[k] = add[j--];
      }
      this.pooledLength = total;
      this.pending = [];
    }
    return this.pooled.subarray(0, this.pooledLength);
  }
}

function checkRequest(r: RequestOutcome): void {
  if (r.latencyMs !== undefined && !r.error) checkLatency(r.latencyMs, "request");
}
