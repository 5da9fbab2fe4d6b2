/**
 * Gate methods: how gate logits become the gate values fed to the training graph, how the task gradient on
 * those values flows back to the logits, and the sparsity regulariser. The graph only multiplies by gate
 * vectors (insert.ts); everything here is plain Node arithmetic in float64, stored in Float32Arrays for the
 * optimizer and ORT feeds.
 *
 * `finegates` follows the FineGates paper's code: logits ~ N(1, 0.1); mu = tanh(logit);
 * training gate = clamp(mu + 0.5 + eps, 0, 1), eps ~ N(0, 0.1²) fresh each step; evaluation gate =
 * clamp(mu + 0.5, 0, 1); open probability P = Φ((mu + 0.5)/0.5); regulariser per layer
 * (|mean P_rows − keep| + |mean P_cols − keep|)/2, averaged over layers, weighted by λ; keep = 1 − target.
 *
 * `finegates-binarized` (issue 8) trains exactly like `finegates`, then closes the gates with the lowest open
 * probability until the removed fraction of gated-layer weights reaches the target, and recovers for a few
 * steps with the closed gates held at zero and no regulariser.
 */
import type { Rng } from "../../core/random";
import type { GateBackward, GateLayerShape, GateMethod, LayerGateValues, RemovalModel } from "./gate-method";
import { HardConcreteGates, type HardConcreteOptions } from "./hardconcrete";

// The contract lives in gate-method.ts so hardconcrete.ts can implement it without importing this file.
export type { GateBackward, GateLayerShape, GateMethod, LayerGateValues, RemovalModel } from "./gate-method";

export const GATE_METHODS = ["finegates", "finegates-binarized", "hardconcrete"] as const;
export type GateMethodName = (typeof GATE_METHODS)[number];

/**
 * erf in float64. JavaScript has no Math.erf; this is the everywhere-convergent series
 * erf(x) = 2/√π · e^{−x²} · Σ_n 2ⁿ x^{2n+1} / (1·3·…·(2n+1)), whose terms are all positive (no cancellation),
 * accurate to ~1e-16 for |x| < 6; beyond that erf(x) = ±1 in float64.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax;
  let sum = ax;
  const x2 = ax * ax;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

const SQRT2 = Math.SQRT2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** FineGates' open probability P = Φ((mu + 0.5)/0.5), written as the paper's code writes it. */
export function openProbability(mu: number): number {
  return 0.5 - 0.5 * erf((-0.5 - mu) / (0.5 * SQRT2));
}

/** dP/dmu = φ((mu + 0.5)/0.5) / 0.5. */
export function openProbabilityGrad(mu: number): number {
  const z = (mu + 0.5) / 0.5;
  return (INV_SQRT_2PI * Math.exp(-0.5 * z * z)) / 0.5;
}

const clamp01 = (v: number) => Math.min(1, Math.max(0, v));

/** One gate vector's logits and the FineGates maps from logits to gate values. */
export class GateVector {
  /** Pre-clamp values of the last training sample (float64), for the clamp's gradient mask. */
  private lastPre: Float64Array;

  constructor(readonly logits: Float32Array) {
    this.lastPre = new Float64Array(logits.length);
  }

  /** Logits ~ N(mean, std) (the paper: N(1, 0.1)). */
  static init(n: number, rng: Rng, mean = 1, std = 0.1): GateVector {
    const l = new Float32Array(n);
    for (let i = 0; i < n; i++) l[i] = mean + std * rng.normal();
    return new GateVector(l);
  }

  get length(): number {
    return this.logits.length;
  }

  mu(i: number): number {
    return Math.tanh(this.logits[i]);
  }

  /** clamp(mu + 0.5 + eps, 0, 1) with eps ~ N(0, noiseStd²) drawn in index order. */
  train(rng: Rng, noiseStd: number): Float32Array {
    const out = new Float32Array(this.length);
    for (let i = 0; i < this.length; i++) {
      const pre = this.mu(i) + 0.5 + noiseStd * rng.normal();
      this.lastPre[i] = pre;
      out[i] = clamp01(pre);
    }
    return out;
  }

  /** clamp(mu + 0.5, 0, 1). */
  eval(): Float32Array {
    const out = new Float32Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = clamp01(this.mu(i) + 0.5);
    return out;
  }

  /** Open probabilities P_i (float64). */
  probabilities(): Float64Array {
    const p = new Float64Array(this.length);
    for (let i = 0; i < this.length; i++) p[i] = openProbability(this.mu(i));
    return p;
  }

  /**
   * Chain rule from d(loss)/d(training gate) to d(loss)/d(logit), adding into `grad`: through the clamp (zero
   * outside [0, 1], inclusive at the bounds as torch.clamp's backward) and tanh (1 − mu²).
   */
  backwardTrain(dGate: Float32Array, grad: Float32Array, lower = 0): void {
    for (let i = 0; i < this.length; i++) {
      const pre = this.lastPre[i];
      if (pre < lower || pre > 1) continue;
      const mu = this.mu(i);
      grad[i] += dGate[i] * (1 - mu * mu);
    }
  }
}

/**
 * Removal counted per gated weight matrix: closing r of R rows and c of C columns removes
 * r·C + c·R − r·c weights of that layer. This is a lower bound of what export removes (export also drops a
 * closed FFN neuron's column in the next layer); it is exact for the layer-local accounting.
 */
export class LayerLocalRemoval implements RemovalModel {
  constructor(readonly layers: readonly GateLayerShape[]) {}

  total(): number {
    return this.layers.reduce((s, l) => s + l.rows * l.cols, 0);
  }

  removedFraction(gates: readonly LayerGateValues[]): number {
    let removed = 0;
    for (const [i, l] of this.layers.entries()) {
      const r = countZeros(gates[i].row);
      const c = countZeros(gates[i].col);
      removed += r * l.cols + c * l.rows - r * c;
    }
    return removed / this.total();
  }
}

export function countZeros(a: Float32Array): number {
  let n = 0;
  for (const v of a) if (v === 0) n++;
  return n;
}

/** Fraction of all gate entries whose evaluation value is exactly 0. */
export function closedGateFraction(gates: readonly LayerGateValues[]): number {
  let closed = 0;
  let total = 0;
  for (const g of gates) {
    closed += countZeros(g.row) + countZeros(g.col);
    total += g.row.length + g.col.length;
  }
  return total ? closed / total : 0;
}

export interface FineGatesOptions {
  targetSparsity: number;
  lambda: number;
  /** Std of the training noise eps (paper: 0.1). */
  noiseStd?: number;
  initMean?: number;
  initStd?: number;
}

/** FineGates as published. */
export class FineGates implements GateMethod {
  readonly name: string = "finegates";
  readonly params = new Map<string, Float32Array>();
  protected readonly vectors: { row: GateVector; col: GateVector }[] = [];
  readonly noiseStd: number;

  constructor(
    readonly layers: readonly GateLayerShape[],
    readonly opts: FineGatesOptions,
    rng: Rng,
  ) {
    if (!(opts.targetSparsity >= 0 && opts.targetSparsity < 1))
      throw new Error(`target sparsity must be in [0, 1), got ${opts.targetSparsity}`);
    this.noiseStd = opts.noiseStd ?? 0.1;
    for (const l of layers) {
      const row = GateVector.init(l.rows, rng, opts.initMean ?? 1, opts.initStd ?? 0.1);
      const col = GateVector.init(l.cols, rng, opts.initMean ?? 1, opts.initStd ?? 0.1);
      this.vectors.push({ row, col });
      this.params.set(`${l.node}::row_logits`, row.logits);
      this.params.set(`${l.node}::col_logits`, col.logits);
    }
  }

  get keep(): number {
    return 1 - this.opts.targetSparsity;
  }

  settings(): Record<string, unknown> {
    return {
      targetSparsity: this.opts.targetSparsity,
      lambda: this.opts.lambda,
      noiseStd: this.noiseStd,
      init: { mean: this.opts.initMean ?? 1, std: this.opts.initStd ?? 0.1 },
    };
  }

  sample(rng: Rng): LayerGateValues[] {
    return this.layers.map((l, i) => ({
      node: l.node,
      row: this.vectors[i].row.train(rng, this.noiseStd),
      col: this.vectors[i].col.train(rng, this.noiseStd),
    }));
  }

  evalGates(): LayerGateValues[] {
    return this.layers.map((l, i) => ({
      node: l.node,
      row: this.vectors[i].row.eval(),
      col: this.vectors[i].col.eval(),
    }));
  }

  /** Regulariser and (optionally) its gradient w.r.t. the logits, added into grads. Float64 throughout. */
  protected regularizer(grads?: Map<string, Float32Array>): number {
    const keep = this.keep;
    const L = this.layers.length;
    let total = 0;
    for (const [i, l] of this.layers.entries()) {
      for (const [which, vec] of [
        ["row", this.vectors[i].row],
        ["col", this.vectors[i].col],
      ] as const) {
        const p = vec.probabilities();
        let mean = 0;
        for (const v of p) mean += v;
        mean /= p.length;
        const dev = mean - keep;
        total += Math.abs(dev) / 2;
        if (!grads) continue;
        // d(λ/L · |mean − keep|/2)/d(logit_j) = λ/L · sign/2 · P'(mu_j)/n · (1 − mu_j²); sign(0) = 0 as torch.
        const scale = (this.opts.lambda / L) * (Math.sign(dev) / 2) * (1 / p.length);
        if (scale === 0) continue;
        const g = grads.get(`${l.node}::${which}_logits`)!;
        for (let j = 0; j < p.length; j++) {
          const mu = vec.mu(j);
          g[j] += scale * openProbabilityGrad(mu) * (1 - mu * mu);
        }
      }
    }
    return total / L;
  }

  sparsityLoss(): number {
    return this.regularizer();
  }

  backward(taskGrad: readonly LayerGateValues[], grads: Map<string, Float32Array>): GateBackward {
    for (const name of this.params.keys()) grads.get(name)!.fill(0);
    for (const [i, l] of this.layers.entries()) {
      this.vectors[i].row.backwardTrain(taskGrad[i].row, grads.get(`${l.node}::row_logits`)!);
      this.vectors[i].col.backwardTrain(taskGrad[i].col, grads.get(`${l.node}::col_logits`)!);
    }
    const sparsityLoss = this.regularizer(grads);
    return { sparsityLoss, penalty: this.opts.lambda * sparsityLoss };
  }

  endOfTraining(): { recoverySteps: number; note?: string } {
    return { recoverySteps: 0 };
  }

  saveState(): Record<string, unknown> {
    return {};
  }

  loadState(_state: Record<string, unknown>): void {}
}

export interface BinarizedOptions extends FineGatesOptions {
  /** Steps of recovery after binarisation (closed gates held at 0, no regulariser). */
  recoverySteps?: number;
  /** Lowest value an open gate may take after binarisation, so open gates never become removals. */
  minOpenGate?: number;
  /** How removals are counted (default: layer-local; the loop passes export's planner). */
  removal?: RemovalModel & { kind?: string };
}

/**
 * FineGates + binarisation (issue 8): after the main phase, close the gates with the lowest open probability
 * until the removed fraction of gated weights reaches the target; then recover with closed gates held at 0.
 * Open gates keep training on the task loss only, floored at `minOpenGate` so the removed set stays exact.
 */
export class BinarizedFineGates extends FineGates {
  override readonly name = "finegates-binarized";
  /** 1 = closed by binarisation, per vector (row, col) per layer; empty until `endOfTraining`. */
  private closed: { row: Uint8Array; col: Uint8Array }[] = [];
  private readonly removal: RemovalModel;

  constructor(
    layers: readonly GateLayerShape[],
    readonly bopts: BinarizedOptions,
    rng: Rng,
  ) {
    super(layers, bopts, rng);
    this.removal = bopts.removal ?? new LayerLocalRemoval(layers);
  }

  get binarized(): boolean {
    return this.closed.length > 0;
  }

  override settings(): Record<string, unknown> {
    return {
      ...super.settings(),
      recoverySteps: this.bopts.recoverySteps ?? 100,
      minOpenGate: this.bopts.minOpenGate ?? 0.05,
      removalCounting: this.bopts.removal?.kind ?? "layer-local",
    };
  }

  private applyMask(gates: LayerGateValues[]): LayerGateValues[] {
    if (!this.binarized) return gates;
    const floor = this.bopts.minOpenGate ?? 0.05;
    for (const [i, g] of gates.entries()) {
      for (const which of ["row", "col"] as const) {
        const v = g[which];
        const c = this.closed[i][which];
        for (let j = 0; j < v.length; j++) v[j] = c[j] ? 0 : Math.max(v[j], floor);
      }
    }
    return gates;
  }

  override sample(rng: Rng): LayerGateValues[] {
    return this.applyMask(super.sample(rng));
  }

  override evalGates(): LayerGateValues[] {
    return this.applyMask(super.evalGates());
  }

  override backward(taskGrad: readonly LayerGateValues[], grads: Map<string, Float32Array>): GateBackward {
    if (!this.binarized) return super.backward(taskGrad, grads);
    // Recovery: task loss only; closed gates are constants (zero gradient); the open-gate floor acts like the
    // clamp's lower bound (zero gradient below it).
    const floor = this.bopts.minOpenGate ?? 0.05;
    for (const name of this.params.keys()) grads.get(name)!.fill(0);
    for (const [i, l] of this.layers.entries()) {
      for (const which of ["row", "col"] as const) {
        const dGate = Float32Array.from(taskGrad[i][which]);
        const c = this.closed[i][which];
        for (let j = 0; j < dGate.length; j++) if (c[j]) dGate[j] = 0;
        this.vectors[i][which].backwardTrain(dGate, grads.get(`${l.node}::${which}_logits`)!, floor);
      }
    }
    return { sparsityLoss: this.regularizer(), penalty: 0 };
  }

  /**
   * Closes the gates with the lowest open probability until the removed fraction (counted by the removal model:
   * export's planner when the loop provides it, else layer-local) first reaches the target. Removal grows
   * monotonically with the number of closed gates, so the smallest such number is found by bisection.
   */
  binarize(): { removed: number; closedGates: number } {
    const target = this.opts.targetSparsity;
    const order: { layer: number; which: "row" | "col"; index: number; p: number }[] = [];
    for (const [i] of this.layers.entries())
      for (const which of ["row", "col"] as const) {
        const p = this.vectors[i][which].probabilities();
        for (let j = 0; j < p.length; j++) order.push({ layer: i, which, index: j, p: p[j] });
      }
    order.sort((a, b) => a.p - b.p); // stable: ties keep (layer, row/col, index) order, so runs reproduce
    // Never close the last open row or column of a layer: it would vanish rather than shrink.
    const open = this.layers.map((l) => ({ row: l.rows, col: l.cols }));
    const candidates = order.filter((g) => open[g.layer][g.which]-- > 1);
    const closeFirst = (k: number) => {
      this.closed = this.layers.map((l) => ({ row: new Uint8Array(l.rows), col: new Uint8Array(l.cols) }));
      for (let i = 0; i < k; i++)
        this.closed[candidates[i].layer][candidates[i].which][candidates[i].index] = 1;
      return this.removal.removedFraction(this.closedGates());
    };
    let lo = 0;
    let hi = candidates.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (closeFirst(mid) >= target) hi = mid;
      else lo = mid + 1;
    }
    const removed = closeFirst(lo);
    return { removed, closedGates: lo };
  }

  /** Gates that are 0 where closed and 1 elsewhere: what the removal count depends on. */
  private closedGates(): LayerGateValues[] {
    return this.layers.map((l, i) => ({
      node: l.node,
      row: Float32Array.from(this.closed[i].row, (c) => (c ? 0 : 1)),
      col: Float32Array.from(this.closed[i].col, (c) => (c ? 0 : 1)),
    }));
  }

  override endOfTraining(): { recoverySteps: number; note?: string } {
    if (this.binarized) return { recoverySteps: 0 };
    const { removed, closedGates } = this.binarize();
    return {
      recoverySteps: this.bopts.recoverySteps ?? 100,
      note: `binarised: closed ${closedGates} gates, ${(100 * removed).toFixed(2)}% of gated weights removed`,
    };
  }

  override saveState(): Record<string, unknown> {
    return {
      closed: this.closed.map((c) => ({ row: Array.from(c.row), col: Array.from(c.col) })),
    };
  }

  override loadState(state: Record<string, unknown>): void {
    const closed = state.closed as { row: number[]; col: number[] }[] | undefined;
    this.closed = (closed ?? []).map((c) => ({ row: Uint8Array.from(c.row), col: Uint8Array.from(c.col) }));
  }
}

export function createGateMethod(
  name: string,
  layers: readonly GateLayerShape[],
  opts: BinarizedOptions & Partial<HardConcreteOptions>,
  rng: Rng,
): GateMethod {
  switch (name) {
    case "finegates":
      return new FineGates(layers, opts, rng);
    case "finegates-binarized":
      return new BinarizedFineGates(layers, opts, rng);
    case "hardconcrete":
      return new HardConcreteGates(layers, opts, rng);
    default:
      throw new Error(`unknown gate method '${name}' (available: ${GATE_METHODS.join(", ")})`);
  }
}
