import { describe, expect, it } from "vitest";
import { AdamW } from "../../src/trainer-node/train/optimizer";

describe("AdamW", () => {
  it("matches a hand-computed reference for three steps", () => {
    const p = Float32Array.from([1, -2]);
    const opt = new AdamW(new Map([["w", p]]), {
      lr: 0.1,
      weightDecay: 0.01,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    });
    const gs = [
      [0.5, -1],
      [0.25, 2],
      [-1, 0.5],
    ];
    // Reference, written out by hand from Loshchilov & Hutter (decoupled decay) with torch's bias correction.
    const ref = [1, -2];
    const m = [0, 0];
    const v = [0, 0];
    for (const [t, g] of gs.entries()) {
      opt.update(new Map([["w", Float32Array.from(g)]]));
      for (let i = 0; i < 2; i++) {
        ref[i] = Math.fround(ref[i] * (1 - 0.1 * 0.01));
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
        const mHat = m[i] / (1 - 0.9 ** (t + 1));
        const vHat = v[i] / (1 - 0.999 ** (t + 1));
        ref[i] = Math.fround(ref[i] - (0.1 * mHat) / (Math.sqrt(vHat) + 1e-8));
      }
      for (let i = 0; i < 2; i++) expect(p[i]).toBeCloseTo(ref[i], 6);
    }
    // Step 1 in closed form: mHat/√vHat = sign(g), so p1 = p0·(1 − lr·wd) − lr·sign(g).
    const q = Float32Array.from([3]);
    new AdamW(new Map([["q", q]]), { lr: 0.01 }).update(new Map([["q", Float32Array.from([-7])]]));
    expect(q[0]).toBeCloseTo(3 * (1 - 0.01 * 0.01) + 0.01, 6);
  });

  it("serialises its state so a restored optimizer continues identically", () => {
    const a = Float32Array.from([0.3, -0.1, 2]);
    const b = Float32Array.from(a);
    const optA = new AdamW(new Map([["x", a]]), { lr: 0.05 });
    const grads = [
      [1, 2, 3],
      [-1, 0.5, 0],
      [0.2, -0.3, 4],
    ].map((g) => new Map([["x", Float32Array.from(g)]]));
    optA.update(grads[0]);
    b.set(a);
    const optB = new AdamW(new Map([["x", b]]), { lr: 0.05 });
    optB.load(JSON.parse(JSON.stringify(optA.state())));
    for (const g of grads.slice(1)) {
      optA.update(g);
      optB.update(g);
    }
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(optB.step).toBe(3);
  });

  it("rejects gradients of the wrong size", () => {
    const opt = new AdamW(new Map([["x", new Float32Array(2)]]));
    expect(() => opt.update(new Map([["x", new Float32Array(3)]]))).toThrow(/3 values, need 2/);
  });
});
