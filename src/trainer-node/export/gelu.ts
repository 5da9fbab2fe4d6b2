/**
 * The tanh form of GELU for int8 variants (`sluice quantize --gelu tanh`): every fused erf GELU that
 * onnxruntime's fusions left in the graph (com.microsoft BiasGelu(x, b) and Gelu(x)) becomes com.microsoft
 * FastGelu(x[, b]), 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
 *
 * Why: in onnxruntime-web's wasm build the erf GELU kernel is one of the dearest per element — measured inside
 * workerd, 20 BiasGelu over [1, 128, 1024] cost 1.8× the CPU time of 20 FastGelu — and pruning shrinks it less than
 * the linears it sits between, so on a pruned int8 variant it is a larger share of a request than on the dense
 * model (docs/edge-heads.md).
 *
 * Not exact: |tanh form − erf form| ≤ 4.8e-4 per activation (at x ≈ ±2.7). That is an approximation of the same
 * order as the int8 weights it is offered with, so it is an int8-variant option only and is judged the same way:
 * by the variant's own test-split accuracy and its predictions changed against the fp32 variant. The fp32 variants
 * keep the exact erf form (export checks them against the gated model at 1e-4).
 */
import type { Graph } from "../../core/onnx/graph";

export type GeluForm = "erf" | "tanh";
export const GELU_FORMS: readonly GeluForm[] = ["erf", "tanh"];
/** Largest |tanh form − erf form| of GELU over the reals (attained near |x| = 2.70). */
export const TANH_GELU_MAX_ERROR = 4.74e-4;

const MS = "com.microsoft";

/** Rewrites `g` in place; returns how many GELUs it rewrote. BiasGelu's and FastGelu's inputs are the same. */
export function tanhGelu(g: Graph): number {
  let n = 0;
  for (const node of g.nodes) {
    if (node.domain !== MS || (node.op !== "BiasGelu" && node.op !== "Gelu")) continue;
    node.op = "FastGelu";
    node.name = g.uniqueName(`${node.name}/tanh`);
    n++;
  }
  return n;
}
