/**
 * `hardconcrete`: hard-concrete L0 gates (Louizos, Welling & Kingma 2018) with a Lagrangian constraint on the
 * expected removed fraction of gated-layer weights, as CoFi (Xia, Zhong & Chen 2022) uses them.
 *
 * Per gate a log_alpha; training gate z = clamp(s·(ζ − γ) + γ, 0, 1) with
 * s = sigmoid((log u − log(1 − u) + log_alpha)/β), u ~ U(0, 1) fresh each step, β = 2/3, γ = −0.1, ζ = 1.1.
 * The stretch past [0, 1] gives every gate a real probability mass at exactly 0 and 1, so gates are pushed to
 * be closed or open instead of shrinking together (the FineGates failure of issue 8).
 * P(z ≠ 0) = sigmoid(log_alpha − β·log(−γ/ζ)). For a layer with row probabilities p_r and column probabilities
 * p_c the expected kept weights are Σp_r · Σp_c (independent gates), so the expected removed fraction is
 * ŝ = 1 − Σ_layers Σp_r·Σp_c / Σ_layers rows·cols. CoFi's Lagrangian: loss += λ1 (ŝ − t) + λ2 (ŝ − t)², where λ1,
 * λ2 follow gradient *ascent* (they grow until the constraint holds), and the target t warms up linearly from 0.
 *
 * Evaluation gates during training are CoFi's deterministic ones: per gate vector, the round(Σ(1 − P)) gates with
 * the lowest log_alpha are 0, the rest sigmoid(0.8·log_alpha/β). At the end of training the gates with the lowest
 * P are closed, across all layers, until the removed fraction counted the way export counts it first reaches the
 * target; a short recovery phase then trains the head, biases and open gates on the deterministic gates, with
 * closed gates held at 0 and open ones floored so they never become removals.
 */
import type { Rng } from "../../core/random";
import type { GateBackward, GateLayerShape, GateMethod, LayerGateValues, RemovalModel } from "./gate-method";

export interface HardConcreteOptions {
  targetSparsity: number;
  /** Steps of the main phase (the target warm-up is a fraction of it). */
  mainSteps?: number;
  /** Fraction of the main phase over which the target rises from 0 to t (CoFi warms up too). */
  warmupFraction?: number;
  /** Learning rate of the Lagrange multipliers' gradient ascent. */
  lagrangianLr?: number;
  /** Initial log_alpha (mean; std 0.01). 2 ≈ every gate open with probability 0.97. */
  initLogAlpha?: number;
  /**
   * log_alpha = logAlphaScale · θ, θ being what the optimizer updates. Adam's step is scale-free, so this gives
   * the gates a learning rate logAlphaScale times the model's under the loop's single AdamW (CoFi, too, trains
   * its L0 parameters faster than the rest).
   */
  logAlphaScale?: number;
  beta?: number;
  gamma?: number;
  zeta?: number;
  recoverySteps?: number;
  minOpenGate?: number;
  removal?: RemovalModel & { kind?: string };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const clamp01 = (v: number) => Math.min(1, Math.max(0, v));
const VECTORS = ["row", "col"] as const;
type Which = (typeof VECTORS)[number];

export class HardConcreteGates implements GateMethod {
  readonly name = "hardconcrete";
  readonly params = new Map<string, Float32Array>();
  readonly beta: number;
  readonly gamma: number;
  readonly zeta: number;
  readonly scale: number;
  /** Lagrange multipliers (trained by ascent) and the number of training samples drawn so far. */
  lambda1 = 0;
  lambda2 = 0;
  private step = 0;
  /** u-dependent values of the last sample, for backward: s and the pre-clamp gate. */
  private last: { s: Float64Array; pre: Float64Array }[][] = [];
  /** 1 = closed by the final binarisation; empty before it. */
  private closed: Record<Which, Uint8Array>[] = [];
  private readonly removal: RemovalModel;
  private readonly totalWeights: number;

  constructor(
    readonly layers: readonly GateLayerShape[],
    readonly opts: HardConcreteOptions,
    rng: Rng,
  ) {
    if (!(opts.targetSparsity >= 0 && opts.targetSparsity < 1))
      throw new Error(`target sparsity must be in [0, 1), got ${opts.targetSparsity}`);
    this.beta = opts.beta ?? 2 / 3;
    this.gamma = opts.gamma ?? -0.1;
    this.zeta = opts.zeta ?? 1.1;
    this.scale = opts.logAlphaScale ?? 25;
    const init = opts.initLogAlpha ?? 2;
    for (const l of layers) {
      for (const which of VECTORS) {
        const n = which === "row" ? l.rows : l.cols;
        const a = new Float32Array(n);
        for (let i = 0; i < n; i++) a[i] = (init + 0.01 * rng.normal()) / this.scale;
        this.params.set(key(l.node, which), a);
      }
    }
    // Layer-local counting when the loop gives no export planner (closing r of R rows and c of C columns removes
    // r·C + c·R − r·c weights); written here rather than imported so this file does not depend on finegates.ts.
    this.removal = opts.removal ?? {
      removedFraction: (gates) => {
        let removed = 0;
        for (const [i, l] of layers.entries()) {
          const r = gates[i].row.filter((v) => v === 0).length;
          const c = gates[i].col.filter((v) => v === 0).length;
          removed += r * l.cols + c * l.rows - r * c;
        }
        return removed / this.totalWeights;
      },
    };
    this.totalWeights = layers.reduce((s, l) => s + l.rows * l.cols, 0);
  }

  get binarized(): boolean {
    return this.closed.length > 0;
  }

  settings(): Record<string, unknown> {
    return {
      targetSparsity: this.opts.targetSparsity,
      beta: this.beta,
      gamma: this.gamma,
      zeta: this.zeta,
      initLogAlpha: this.opts.initLogAlpha ?? 2,
      logAlphaScale: this.scale,
      warmupFraction: this.warmupFraction,
      lagrangianLr: this.lagrangianLr,
      recoverySteps: this.opts.recoverySteps ?? 100,
      minOpenGate: this.opts.minOpenGate ?? 0.05,
      removalCounting: this.opts.removal?.kind ?? "layer-local",
    };
  }

  private get warmupFraction() {
    return this.opts.warmupFraction ?? 0.5;
  }
  private get lagrangianLr() {
    return this.opts.lagrangianLr ?? 1;
  }

  /** Target of the current step: linear warm-up from 0 over warmupFraction of the main phase. */
  currentTarget(): number {
    const warm = this.warmupFraction * (this.opts.mainSteps ?? 0);
    const t = this.opts.targetSparsity;
    return warm > 0 ? t * Math.min(1, this.step / warm) : t;
  }

  /** P(z ≠ 0) = sigmoid(log_alpha − β·log(−γ/ζ)). */
  openProbability(logAlpha: number): number {
    return sigmoid(logAlpha - this.beta * Math.log(-this.gamma / this.zeta));
  }

  /** log_alpha of one gate vector (float64), from the optimizer's θ. */
  logAlpha(layer: number, which: Which): Float64Array {
    return Float64Array.from(this.params.get(key(this.layers[layer].node, which))!, (t) => t * this.scale);
  }

  /** ŝ, and Σp per vector (what its gradient needs). */
  expectedRemoved(): { s: number; sums: Record<Which, number>[] } {
    let kept = 0;
    const sums = this.layers.map((_, i) => {
      const sum = (w: Which) => this.logAlpha(i, w).reduce((a, la) => a + this.openProbability(la), 0);
      const s = { row: sum("row"), col: sum("col") };
      kept += s.row * s.col;
      return s;
    });
    return { s: 1 - kept / this.totalWeights, sums };
  }

  sample(rng: Rng): LayerGateValues[] {
    if (this.binarized) return this.evalGates();
    this.step++;
    const range = this.zeta - this.gamma;
    this.last = [];
    const out = this.layers.map((l, i) => {
      const lastLayer: { s: Float64Array; pre: Float64Array }[] = [];
      const gate = (which: Which) => {
        const la = this.logAlpha(i, which);
        const s = new Float64Array(la.length);
        const pre = new Float64Array(la.length);
        const z = new Float32Array(la.length);
        for (let j = 0; j < la.length; j++) {
          const u = Math.min(1 - 1e-6, Math.max(1e-6, rng.next()));
          s[j] = sigmoid((Math.log(u) - Math.log(1 - u) + la[j]) / this.beta);
          pre[j] = s[j] * range + this.gamma;
          z[j] = clamp01(pre[j]);
        }
        lastLayer.push({ s, pre });
        return z;
      };
      const row = gate("row");
      const col = gate("col");
      this.last.push(lastLayer);
      return { node: l.node, row, col };
    });
    return out;
  }

  /** CoFi's soft mask for an open gate: sigmoid(0.8·log_alpha/β). */
  private softGate(la: number): number {
    return sigmoid((0.8 * la) / this.beta);
  }

  evalGates(): LayerGateValues[] {
    const floor = this.opts.minOpenGate ?? 0.05;
    return this.layers.map((l, i) => {
      const gate = (which: Which) => {
        const la = this.logAlpha(i, which);
        const g = Float32Array.from(la, (v) => this.softGate(v));
        if (this.binarized) {
          const c = this.closed[i][which];
          for (let j = 0; j < g.length; j++) g[j] = c[j] ? 0 : Math.max(g[j], floor);
          return g;
        }
        // Deterministic gate (CoFi): zero the round(expected number of zeros) lowest log_alphas.
        let expectedZeros = 0;
        for (const v of la) expectedZeros += 1 - this.openProbability(v);
        const k = Math.min(la.length, Math.round(expectedZeros));
        const order = Array.from(la.keys()).sort((a, b) => la[a] - la[b] || a - b);
        for (let r = 0; r < k; r++) g[order[r]] = 0;
        return g;
      };
      return { node: l.node, row: gate("row"), col: gate("col") };
    });
  }

  sparsityLoss(): number {
    return Math.abs(this.expectedRemoved().s - this.currentTarget());
  }

  backward(taskGrad: readonly LayerGateValues[], grads: Map<string, Float32Array>): GateBackward {
    for (const name of this.params.keys()) grads.get(name)!.fill(0);
    if (this.binarized) return this.recoveryBackward(taskGrad, grads);
    const range = this.zeta - this.gamma;
    // Task loss through the clamp (zero gradient outside [0, 1], inclusive as torch.clamp) and the sigmoid.
    for (const [i, l] of this.layers.entries()) {
      for (const [v, which] of VECTORS.entries()) {
        const g = grads.get(key(l.node, which))!;
        const { s, pre } = this.last[i][v];
        const d = taskGrad[i][which];
        for (let j = 0; j < g.length; j++)
          if (pre[j] >= 0 && pre[j] <= 1) g[j] += (this.scale * d[j] * range * s[j] * (1 - s[j])) / this.beta;
      }
    }
    // Lagrangian on the expected removed fraction: d/dŝ = λ1 + 2 λ2 (ŝ − t); dŝ/dla = −P'(la)·Σp_other / total.
    const t = this.currentTarget();
    const { s: expected, sums } = this.expectedRemoved();
    const gap = expected - t;
    const dPenalty = this.lambda1 + 2 * this.lambda2 * gap;
    for (const [i, l] of this.layers.entries()) {
      for (const which of VECTORS) {
        const other = which === "row" ? sums[i].col : sums[i].row;
        const la = this.logAlpha(i, which);
        const g = grads.get(key(l.node, which))!;
        for (let j = 0; j < la.length; j++) {
          const p = this.openProbability(la[j]);
          g[j] += (this.scale * dPenalty * -(p * (1 - p)) * other) / this.totalWeights;
        }
      }
    }
    const penalty = this.lambda1 * gap + this.lambda2 * gap * gap;
    // Gradient ascent on the multipliers: dL/dλ1 = ŝ − t, dL/dλ2 = (ŝ − t)².
    this.lambda1 += this.lagrangianLr * gap;
    this.lambda2 += this.lagrangianLr * gap * gap;
    return { sparsityLoss: Math.abs(gap), penalty };
  }

  /** Recovery: the training gates are the deterministic ones; closed gates are constants, open ones floored. */
  private recoveryBackward(
    taskGrad: readonly LayerGateValues[],
    grads: Map<string, Float32Array>,
  ): GateBackward {
    const floor = this.opts.minOpenGate ?? 0.05;
    for (const [i, l] of this.layers.entries()) {
      for (const which of VECTORS) {
        const la = this.logAlpha(i, which);
        const g = grads.get(key(l.node, which))!;
        const c = this.closed[i][which];
        const d = taskGrad[i][which];
        for (let j = 0; j < la.length; j++) {
          const soft = this.softGate(la[j]);
          if (c[j] || soft < floor) continue;
          g[j] = (this.scale * d[j] * soft * (1 - soft) * 0.8) / this.beta;
        }
      }
    }
    return { sparsityLoss: this.sparsityLoss(), penalty: 0 };
  }

  /**
   * Closes the gates with the lowest P(z ≠ 0), across layers, until the removed fraction counted by the removal
   * model (export's planner when the loop provides it) first reaches the target. Removal grows monotonically with
   * the number of closed gates, so bisection finds the smallest such number.
   */
  binarize(): { removed: number; closedGates: number } {
    const order: { layer: number; which: Which; index: number; la: number }[] = [];
    for (const [i] of this.layers.entries())
      for (const which of VECTORS) {
        const la = this.logAlpha(i, which);
        for (let j = 0; j < la.length; j++) order.push({ layer: i, which, index: j, la: la[j] });
      }
    order.sort((a, b) => a.la - b.la); // P is monotone in log_alpha; stable sort keeps runs reproducible
    const open = this.layers.map((l) => ({ row: l.rows, col: l.cols }));
    const candidates = order.filter((g) => open[g.layer][g.which]-- > 1); // never empty a whole vector
    const closeFirst = (k: number) => {
      this.closed = this.layers.map((l) => ({ row: new Uint8Array(l.rows), col: new Uint8Array(l.cols) }));
      for (let r = 0; r < k; r++)
        this.closed[candidates[r].layer][candidates[r].which][candidates[r].index] = 1;
      return this.removal.removedFraction(
        this.layers.map((l, i) => ({
          node: l.node,
          row: Float32Array.from(this.closed[i].row, (c) => (c ? 0 : 1)),
          col: Float32Array.from(this.closed[i].col, (c) => (c ? 0 : 1)),
        })),
      );
    };
    const target = this.opts.targetSparsity;
    let lo = 0;
    let hi = candidates.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (closeFirst(mid) >= target) hi = mid;
      else lo = mid + 1;
    }
    return { removed: closeFirst(lo), closedGates: lo };
  }

  endOfTraining(): { recoverySteps: number; note?: string } {
    if (this.binarized) return { recoverySteps: 0 };
    const expected = this.expectedRemoved().s;
    const { removed, closedGates } = this.binarize();
    return {
      recoverySteps: this.opts.recoverySteps ?? 100,
      note:
        `hard-concrete: expected removed ${(100 * expected).toFixed(2)}% (λ1 ${this.lambda1.toFixed(3)}, ` +
        `λ2 ${this.lambda2.toFixed(3)}); binarised: closed ${closedGates} gates, ` +
        `${(100 * removed).toFixed(2)}% of gated weights removed`,
    };
  }

  saveState(): Record<string, unknown> {
    return {
      step: this.step,
      lambda1: this.lambda1,
      lambda2: this.lambda2,
      closed: this.closed.map((c) => ({ row: Array.from(c.row), col: Array.from(c.col) })),
    };
  }

  loadState(state: Record<string, unknown>): void {
    this.step = (state.step as number | undefined) ?? 0;
    this.lambda1 = (state.lambda1 as number | undefined) ?? 0;
    this.lambda2 = (state.lambda2 as number | undefined) ?? 0;
    const closed = state.closed as { row: number[]; col: number[] }[] | undefined;
    this.closed = (closed ?? []).map((c) => ({ row: Uint8Array.from(c.row), col: Uint8Array.from(c.col) }));
  }
}

const key = (node: string, which: Which) => `${node}::${which}_log_alpha`;
