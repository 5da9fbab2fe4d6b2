/**
 * Seeded gate patterns for export checks and benchmarks: the target fraction closed the way structured gates
 * close weights (whole FFN neurons through the up-row or down-column; in every head, Q/K dimensions and V
 * dimensions), evenly per head or, with `uneven`, a different number per head (several head groups in export).
 */
import type { Graph } from "../../src/core/onnx/graph";
import { Rng } from "../../src/core/random";
import { CHECKPOINT_FORMAT, type GateCheckpoint } from "../../src/trainer-node/gates/checkpoint";
import { analyzeEncoder } from "../../src/trainer-node/import/blocks";
import { selectGatedLayers } from "../../src/trainer-node/import/recognize";
import { usesOf } from "../../src/trainer-node/import/shared-weights";

/**
 * Closes `target` of every layer's FFN neurons and of every head's Q/K and V dimensions (seeded). `uneven`
 * closes each dimension independently with probability `target` instead, so heads end up with different sizes
 * (the per-head Split/Concat path of export) — the case trained gates produce.
 */
export function structuredGates(base: Graph, target: number, seed: number, uneven = false): GateCheckpoint {
  const rng = new Rng(seed);
  const analysis = analyzeEncoder(base);
  const gated = selectGatedLayers(base);
  // Keyed by every use: a shared weight's (ALBERT) one tied gate is found from any block that reads it.
  const gates = new Map(
    gated.flatMap((l) => {
      const entry = {
        node: l.node,
        rowGate: new Array(l.outFeatures).fill(1),
        colGate: new Array(l.inFeatures).fill(1),
      };
      return usesOf(l).map((u) => [u.node, entry] as const);
    }),
  );
  // A block of shared weights is patterned once, not once per use.
  const patterned = new Set<string>();
  const firstTime = (weights: string) => !patterned.has(weights) && !!patterned.add(weights);
  const pick = (n: number, k: number) =>
    uneven
      ? Array.from({ length: n }, (_, i) => i).filter(() => rng.next() < target)
      : rng.shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, k);
  for (const a of analysis.attention) {
    if (!firstTime([a.q, a.k, a.v, a.o].map((l) => l.weight).join())) continue;
    for (let h = 0; h < a.heads; h++) {
      const k = Math.round(target * a.headDim);
      for (const j of pick(a.headDim, k)) {
        const d = h * a.headDim + j;
        gates.get(rng.next() < 0.5 ? a.q.node : a.k.node)!.rowGate[d] = 0;
      }
      for (const j of pick(a.headDim, k)) {
        const d = h * a.headDim + j;
        if (rng.next() < 0.5) gates.get(a.v.node)!.rowGate[d] = 0;
        else gates.get(a.o.node)!.colGate[d] = 0;
      }
    }
  }
  for (const f of analysis.ffn) {
    if (!gates.has(f.up.node) || !firstTime(`${f.up.weight},${f.down.weight}`)) continue;
    for (const j of pick(f.up.outFeatures, Math.round(target * f.up.outFeatures))) {
      if (rng.next() < 0.5) gates.get(f.up.node)!.rowGate[j] = 0;
      else gates.get(f.down.node)!.colGate[j] = 0;
    }
  }
  return {
    format: CHECKPOINT_FORMAT,
    base: { name: "reference-encoder", sha256: "0".repeat(64) },
    task: { name: "bench", labels: ["a", "b"] },
    head: { kind: "model" },
    method: "bench-structured",
    settings: { target },
    seed,
    step: 0,
    layers: [...new Set(gates.values())],
    params: {},
  };
}
