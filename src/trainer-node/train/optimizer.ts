/**
 * AdamW (Loshchilov & Hutter) over named Float32Array parameters, step for step as torch.optim.AdamW computes it:
 * decoupled decay p ← p·(1 − lr·wd), then p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε).
 * Moments are kept in float64 (the parameters are few: gates, head, biases). Hand-written because it is ten
 * lines and the state must live beside ORT feeds in Node; the state serialises to JSON for checkpoints.
 */
export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (torch's default 0.01). */
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWOptions = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
};

export interface AdamWState {
  step: number;
  options: AdamWOptions;
  /** base64 of Float64Array bytes per parameter. */
  m: Record<string, string>;
  v: Record<string, string>;
}

const toB64 = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function fromB64(s: string, n: number, name: string): Float64Array {
  const buf = Buffer.from(s, "base64");
  if (buf.byteLength !== n * 8) throw new Error(`optimizer state for ${name} has the wrong size`);
  const out = new Float64Array(n);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export class AdamW {
  readonly options: AdamWOptions;
  step = 0;
  private readonly m = new Map<string, Float64Array>();
  private readonly v = new Map<string, Float64Array>();

  /** `params` is held by reference: `update` writes the new values into these arrays. */
  constructor(
    readonly params: ReadonlyMap<string, Float32Array>,
    options: Partial<AdamWOptions> = {},
    /** Per-parameter weight decay override (e.g. no decay on biases). */
    private readonly decayOf: (name: string) => number | undefined = () => undefined,
  ) {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...ADAMW_DEFAULTS, ...given };
    for (const [name, p] of params) {
      this.m.set(name, new Float64Array(p.length));
      this.v.set(name, new Float64Array(p.length));
    }
  }

  /** One step with these gradients (same keys and sizes as params). */
  update(grads: ReadonlyMap<string, Float32Array>, lr = this.options.lr): void {
    const { beta1, beta2, eps } = this.options;
    this.step++;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`no gradient for parameter ${name}`);
      if (g.length !== p.length)
        throw new Error(`gradient for ${name} has ${g.length} values, need ${p.length}`);
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      const decay = 1 - lr * (this.decayOf(name) ?? this.options.weightDecay);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        m[i] = beta1 * m[i] + (1 - beta1) * gi;
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
        p[i] = p[i] * decay - (stepSize * m[i]) / (Math.sqrt(v[i]) / sqrtBc2 + eps);
      }
    }
  }

  state(): AdamWState {
    const m: Record<string, string> = {};
    const v: Record<string, string> = {};
    for (const name of this.params.keys()) {
      m[name] = toB64(this.m.get(name)!);
      v[name] = toB64(this.v.get(name)!);
    }
    return { step: this.step, options: { ...this.options }, m, v };
  }

  load(state: AdamWState): void {
    for (const [name, p] of this.params) {
      if (!(name in state.m) || !(name in state.v))
        throw new Error(`optimizer state has no moments for ${name}`);
      this.m.set(name, fromB64(state.m[name], p.length, name));
      this.v.set(name, fromB64(state.v[name], p.length, name));
    }
    this.step = state.step;
  }
}
