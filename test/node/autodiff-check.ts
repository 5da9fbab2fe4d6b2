/**
 * Finite-difference gradient checking for autodiff tests, run by onnxruntime-node.
 *
 * The forward graph's output y is turned into a scalar loss L = sum(y * R) with a fixed random R, so every
 * output element gets a different upstream gradient. Analytic gradients (from the training graph) are compared
 * with central differences (L(x + h e_i) - L(x - h e_i)) / 2h on randomly chosen coordinates, in float32.
 * Tolerance: |fd - analytic| <= atol + rtol * max(|fd|, |analytic|) with h = 1e-2, atol = 2e-3, rtol = 2e-2
 * (float32 rounding of L over 2h and the O(h^2) truncation error both sit well below that).
 */
import * as ort from "onnxruntime-node";
import { expect } from "vitest";
import { encodeModel, type Graph, tensor } from "../../src/core/onnx";
import { Rng } from "../../src/core/random";
import { buildTrainingGraph, gradName } from "../../src/trainer-node/autodiff/backward";

export type Feed = {
  dtype: "float32" | "int64" | "bool";
  dims: number[];
  data: Float32Array | BigInt64Array | Uint8Array;
};

export const f32feed = (dims: number[], data: ArrayLike<number>): Feed => ({
  dtype: "float32",
  dims,
  data: Float32Array.from(data),
});
export const i64feed = (dims: number[], data: number[]): Feed => ({
  dtype: "int64",
  dims,
  data: BigInt64Array.from(data.map(BigInt)),
});
export const boolfeed = (dims: number[], data: number[]): Feed => ({
  dtype: "bool",
  dims,
  data: Uint8Array.from(data),
});

/** Random normal feed; `away` keeps |x| >= away (for kinks at 0) and `positive` makes values > 0. */
export function randn(
  rng: Rng,
  dims: number[],
  opts: { away?: number; positive?: boolean; scale?: number } = {},
): Feed {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = rng.normal() * (opts.scale ?? 1);
    if (opts.away && Math.abs(v) < opts.away) v = Math.sign(v || 1) * (opts.away + Math.abs(v));
    if (opts.positive) v = Math.abs(v) + 0.5;
    data[i] = v;
  }
  return { dtype: "float32", dims, data };
}

const toOrt = (f: Feed) => new ort.Tensor(f.dtype, f.data, f.dims);

export interface CheckOptions {
  output: string;
  feeds: Record<string, Feed>;
  wrt: string[];
  seed?: number;
  /** Coordinates checked per wrt value (all when the tensor is smaller). */
  coords?: number;
  h?: number;
  atol?: number;
  rtol?: number;
}

/** Adds the scalar loss sum(y * R) to a copy of `forward`; returns the graph and the loss name. */
async function withProbeLoss(forward: Graph, output: string, feeds: Record<string, ort.Tensor>, rng: Rng) {
  const probe = forward.clone();
  probe.outputs = [{ name: output, dtype: "float32" }];
  const s = await ort.InferenceSession.create(encodeModel(probe));
  const y = (await s.run(feeds))[output];
  const n = y.dims.reduce((a, b) => a * b, 1);
  const g = forward.clone();
  const r = g.addInitializer(
    "probe_R",
    tensor("float32", [...y.dims], rng.normalArray(n, 1 / Math.sqrt(Math.max(1, n)))),
  );
  const prod = g.op("Mul", [output, r]);
  g.op("ReduceSum", [prod], { keepdims: 0 }, { output: "probe_loss" });
  g.outputs = [{ name: "probe_loss", dtype: "float32", shape: [] }];
  return g;
}

/** Checks d(sum(y*R))/d(wrt) of the training graph against central finite differences. */
export async function checkGradients(
  forward: Graph,
  opts: CheckOptions,
): Promise<Record<string, Float32Array>> {
  const rng = new Rng(opts.seed ?? 7);
  const h = opts.h ?? 1e-2;
  const atol = opts.atol ?? 2e-3;
  const rtol = opts.rtol ?? 2e-2;
  const feeds = Object.fromEntries(Object.entries(opts.feeds).map(([k, v]) => [k, toOrt(v)]));
  const lossGraph = await withProbeLoss(forward, opts.output, feeds, rng);
  const train = buildTrainingGraph(lossGraph, { loss: "probe_loss", wrt: opts.wrt });
  const trainSession = await ort.InferenceSession.create(encodeModel(train));
  const out = await trainSession.run(feeds);
  const lossSession = await ort.InferenceSession.create(encodeModel(lossGraph));
  const lossAt = async (name: string, i: number, delta: number) => {
    const f = opts.feeds[name];
    const data = Float32Array.from(f.data as Float32Array);
    data[i] += delta;
    const r = await lossSession.run({ ...feeds, [name]: new ort.Tensor("float32", data, f.dims) });
    return (r.probe_loss.data as Float32Array)[0];
  };
  const result: Record<string, Float32Array> = {};
  for (const w of opts.wrt) {
    const grad = out[gradName(w)].data as Float32Array;
    const f = opts.feeds[w];
    expect(grad.length, `gradient size of ${w}`).toBe(f.data.length);
    result[w] = grad;
    const n = f.data.length;
    const count = Math.min(n, opts.coords ?? 12);
    const picks = count === n ? [...Array(n).keys()] : rng.shuffle([...Array(n).keys()]).slice(0, count);
    for (const i of picks) {
      const fd = ((await lossAt(w, i, h)) - (await lossAt(w, i, -h))) / (2 * h);
      const an = grad[i];
      const tol = atol + rtol * Math.max(Math.abs(fd), Math.abs(an));
      if (!(Math.abs(fd - an) <= tol))
        throw new Error(
          `d loss/d ${w}[${i}]: analytic ${an}, finite difference ${fd} (tolerance ${tol.toExponential(2)})`,
        );
    }
  }
  return result;
}
