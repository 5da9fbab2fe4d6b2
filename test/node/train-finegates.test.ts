/**
 * FineGates' loss and gradients, end to end: the training graph on onnxruntime-node returns d(task)/d(gate); Node
 * carries it through clamp and tanh to the logits and adds the regulariser's gradient. Checked against:
 * - the regulariser and its gradient: a direct float64 evaluation of the formulas and central differences of it;
 * - the task gradient on gates: central differences of the ORT forward (float32 graph);
 * - the full logit gradient: a float64 re-derivation from the ORT gate gradient.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/core/random";
import {
  BinarizedFineGates,
  erf,
  FineGates,
  type LayerGateValues,
  openProbability,
} from "../../src/trainer-node/gates/finegates";
import { makeBatch } from "../../src/trainer-node/train/data";
import { buildTrainGraphs } from "../../src/trainer-node/train/graphs";
import { TrainerSession } from "../../src/trainer-node/train/session";
import { signalTask, smallEncoder } from "./train-fixtures";

/** The paper's formulas, written out directly in float64 (no shared code with the implementation). */
function referenceRegularizer(logits: Float32Array[][], keep: number): number {
  let total = 0;
  for (const [rows, cols] of logits) {
    const meanP = (l: Float32Array) =>
      Array.from(l).reduce((s, x) => s + 0.5 - 0.5 * erf((-0.5 - Math.tanh(x)) / (0.5 * Math.SQRT2)), 0) /
      l.length;
    total += (Math.abs(meanP(rows) - keep) + Math.abs(meanP(cols) - keep)) / 2;
  }
  return total / logits.length;
}

describe("erf", () => {
  it("matches reference values to ~1e-15", () => {
    // Values from Abramowitz & Stegun / mpmath.
    expect(erf(0)).toBe(0);
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 15);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 15);
    expect(erf(-2)).toBeCloseTo(-0.9953222650189527, 15);
    expect(erf(3.5)).toBeCloseTo(0.9999992569016276, 14); // a few ulp: the series sums ~40 terms
    expect(openProbability(-0.5)).toBe(0.5);
  });
});

describe("FineGates gate math", () => {
  const layers = [
    { node: "a", rows: 7, cols: 5 },
    { node: "b", rows: 3, cols: 9 },
  ];

  it("draws training gates as clamp(tanh(l) + 0.5 + eps) and evaluation gates without noise", () => {
    const m = new FineGates(layers, { targetSparsity: 0.4, lambda: 50 }, new Rng(3));
    const logits = m.params.get("a::row_logits")!;
    const noise = new Rng(9);
    const g = m.sample(new Rng(9));
    for (let i = 0; i < 7; i++) {
      const pre = Math.tanh(logits[i]) + 0.5 + 0.1 * noise.normal();
      expect(g[0].row[i]).toBe(Math.fround(Math.min(1, Math.max(0, pre))));
    }
    const e = m.evalGates();
    for (let i = 0; i < 7; i++)
      expect(e[0].row[i]).toBe(Math.fround(Math.min(1, Math.max(0, Math.tanh(logits[i]) + 0.5))));
    // Initialisation N(1, 0.1).
    const all = [...m.params.values()].flatMap((a) => Array.from(a));
    const mean = all.reduce((s, x) => s + x, 0) / all.length;
    expect(Math.abs(mean - 1)).toBeLessThan(0.05);
  });

  it("regulariser and its gradient equal the float64 formulas and their central differences", () => {
    const rng = new Rng(5);
    const m = new FineGates(layers, { targetSparsity: 0.4, lambda: 50 }, rng);
    // Spread the logits so the layer means sit on both sides of keep = 0.6.
    for (const [name, l] of m.params)
      for (let i = 0; i < l.length; i++) l[i] = (name.startsWith("a") ? -0.6 : 0.4) + rng.normal();
    const vectors = () => [
      [m.params.get("a::row_logits")!, m.params.get("a::col_logits")!],
      [m.params.get("b::row_logits")!, m.params.get("b::col_logits")!],
    ];
    expect(m.sparsityLoss()).toBeCloseTo(referenceRegularizer(vectors(), 0.6), 14);

    const grads = new Map([...m.params].map(([k, v]) => [k, new Float32Array(v.length)]));
    m.sample(new Rng(1));
    const zeroTask: LayerGateValues[] = layers.map((l) => ({
      node: l.node,
      row: new Float32Array(l.rows),
      col: new Float32Array(l.cols),
    }));
    m.backward(zeroTask, grads);
    // Central differences of λ·R in float64 (the logits are float32, so perturb a float64 copy).
    const h = 1e-6;
    for (const [name, l] of m.params) {
      for (let i = 0; i < l.length; i++) {
        const perturbed = (d: number) =>
          vectors().map((pair) =>
            pair.map((v) => {
              if (v !== l) return v;
              const c = Float64Array.from(v);
              c[i] += d;
              return c as unknown as Float32Array;
            }),
          );
        const fd =
          (50 * (referenceRegularizer(perturbed(h), 0.6) - referenceRegularizer(perturbed(-h), 0.6))) /
          (2 * h);
        // Tolerance: float32 storage of the gradient (rel 1e-7) plus the O(h²) and rounding error of the
        // difference quotient (~1e-9 absolute here).
        expect(Math.abs(grads.get(name)![i] - fd)).toBeLessThan(1e-6 * Math.abs(fd) + 1e-8);
      }
    }
  });
});

describe("FineGates through the ORT training graph", () => {
  it("task gradients on gates match central differences; the full logit gradient matches a float64 re-derivation", async () => {
    const base = smallEncoder();
    const graphs = buildTrainGraphs(base, { numLabels: 2, method: "gates", pooling: "mean" });
    const params = new Map(
      [...graphs.trainable].map(([k, v]) => [k, Float32Array.from(v.data as Float32Array)]),
    );
    // A non-zero head, otherwise every gate gradient is exactly zero.
    const headRng = new Rng(11);
    for (const p of params.values()) for (let i = 0; i < p.length; i++) p[i] = headRng.normal();
    const session = await TrainerSession.create(graphs, params, { threads: 1 });
    const shapes = graphs.layers.map((l) => ({ node: l.node, rows: l.outFeatures, cols: l.inFeatures }));
    const method = new FineGates(shapes, { targetSparsity: 0.4, lambda: 50 }, new Rng(2));
    // Spread logits so some training gates clamp at 0 or 1 (zero gradient there).
    const lrng = new Rng(4);
    for (const l of method.params.values()) for (let i = 0; i < l.length; i++) l[i] = lrng.normal();
    const split = signalTask(8, 3);
    const batch = makeBatch(split, [0, 1, 2, 3, 4, 5, 6, 7]);
    const gates = method.sample(new Rng(7));
    const out = await session.step(batch, gates);
    expect(out.loss).toBeGreaterThan(0);

    // (1) d(task)/d(gate) from the graph vs central differences of the ORT forward. Float32 forward: h = 1e-2
    // keeps the quotient's rounding error (~1e-7 / h) well under the O(h²) truncation; tolerance 2e-3 · max|g|.
    const h = 1e-2;
    const pick = new Rng(8);
    let maxGrad = 0;
    for (const g of out.gateGrads)
      for (const v of [...g.row, ...g.col]) maxGrad = Math.max(maxGrad, Math.abs(v));
    expect(maxGrad).toBeGreaterThan(1e-4);
    for (let trial = 0; trial < 24; trial++) {
      const li = pick.int(gates.length);
      const which = pick.next() < 0.5 ? "row" : "col";
      const idx = pick.int(gates[li][which].length);
      const at = (d: number) => {
        const g = gates.map((x) => ({
          node: x.node,
          row: Float32Array.from(x.row),
          col: Float32Array.from(x.col),
        }));
        g[li][which][idx] += d;
        return g;
      };
      const fd = ((await session.loss(batch, at(h))) - (await session.loss(batch, at(-h)))) / (2 * h);
      expect(Math.abs(out.gateGrads[li][which][idx] - fd)).toBeLessThan(2e-3 * maxGrad);
    }

    // (2) Full chain in float64: dL/dl = dL/dg · 1[0 ≤ pre ≤ 1] · (1 − tanh²(l)) + λ · dR/dl, with pre rebuilt
    // from the same noise stream and R's gradient written out from the formulas.
    const grads = new Map([...method.params].map(([k, v]) => [k, new Float32Array(v.length)]));
    method.backward(out.gateGrads, grads);
    const noise = new Rng(7); // replayed in `sample`'s order: per layer, row gates then column gates
    const L = shapes.length;
    let clamped = 0;
    for (const [li, l] of shapes.entries()) {
      for (const which of ["row", "col"] as const) {
        const logits = method.params.get(`${l.node}::${which}_logits`)!;
        const noiseDraws = Array.from(logits, () => 0.1 * noise.normal());
        const mus = Array.from(logits, (x) => Math.tanh(x));
        const meanP = mus.reduce((s, mu) => s + openProbability(mu), 0) / mus.length;
        const sign = Math.sign(meanP - 0.6);
        for (let i = 0; i < logits.length; i++) {
          const pre = mus[i] + 0.5 + noiseDraws[i];
          const inRange = pre >= 0 && pre <= 1;
          if (!inRange) clamped++;
          const dtanh = 1 - mus[i] * mus[i];
          const z = (mus[i] + 0.5) / 0.5;
          const dP = Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI) / 0.5;
          const reg = ((50 / L) * sign * 0.5 * dP * dtanh) / logits.length;
          const task = inRange ? out.gateGrads[li][which][i] * dtanh : 0;
          const expected = task + reg;
          // float32 storage of the result: relative 1e-6 plus a tiny absolute floor.
          expect(Math.abs(grads.get(`${l.node}::${which}_logits`)![i] - expected)).toBeLessThan(
            1e-6 * Math.abs(expected) + 1e-10,
          );
        }
      }
    }
    expect(clamped).toBeGreaterThan(0);
    await session.release();
  });
});

describe("binarisation", () => {
  it("closes the lowest-probability gates until the target is first met, and holds them at zero", () => {
    const layers = [
      { node: "a", rows: 10, cols: 10 },
      { node: "b", rows: 20, cols: 10 },
    ];
    const m = new BinarizedFineGates(
      layers,
      { targetSparsity: 0.3, lambda: 50, recoverySteps: 5 },
      new Rng(1),
    );
    const end = m.endOfTraining();
    expect(end.recoverySteps).toBe(5);
    const e = m.evalGates();
    let removed = 0;
    for (const [i, l] of layers.entries()) {
      const r = e[i].row.filter((v) => v === 0).length;
      const c = e[i].col.filter((v) => v === 0).length;
      removed += r * l.cols + c * l.rows - r * c;
    }
    const fraction = removed / 300;
    expect(fraction).toBeGreaterThanOrEqual(0.3);
    expect(fraction).toBeLessThan(0.3 + 20 / 300); // one more gate at most (the largest removes 20 weights)
    // Closed gates stay 0 in training samples; open ones are at least the floor.
    const s = m.sample(new Rng(2));
    for (const [i] of layers.entries())
      for (const which of ["row", "col"] as const)
        for (let j = 0; j < s[i][which].length; j++)
          if (e[i][which][j] === 0) expect(s[i][which][j]).toBe(0);
          else expect(s[i][which][j]).toBeGreaterThanOrEqual(0.05);
    // The closed gates were the least likely to be open.
    const p = (name: string, j: number) => openProbability(Math.tanh(m.params.get(name)![j]));
    let maxClosed = -1;
    let minOpen = 2;
    for (const l of layers)
      for (const which of ["row", "col"] as const) {
        const gate = e[layers.indexOf(l)][which];
        for (let j = 0; j < gate.length; j++) {
          const pj = p(`${l.node}::${which}_logits`, j);
          if (gate[j] === 0) maxClosed = Math.max(maxClosed, pj);
          else minOpen = Math.min(minOpen, pj);
        }
      }
    expect(maxClosed).toBeLessThanOrEqual(minOpen + 1e-12);
  });
});
