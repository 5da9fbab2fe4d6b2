/** Shared fixtures of the trainer tests: a small frozen random encoder and a synthetic token task. */
import { buildEncoder } from "../../src/core/models/encoder";
import type { Graph } from "../../src/core/onnx/graph";
import { Rng } from "../../src/core/random";
import type { TokenizedSplit } from "../../src/trainer-node/train/data";
import type { TrainOptions } from "../../src/trainer-node/train/loop";

export const SMALL_ENCODER = {
  vocabSize: 48,
  hidden: 32,
  heads: 2,
  ffn: 64,
  layers: 2,
  maxPositions: 24,
  head: "none" as const,
  initStd: 0.1,
};

export const smallEncoder = () => buildEncoder(SMALL_ENCODER);

/**
 * A task that needs only some features: label 1 iff the sequence contains a token of the "signal" set
 * {5, 6, 7} (up to four times); every other token is noise from [10, 48). Sequences start with [CLS] = 2.
 */
export function signalTask(n: number, seed: number): TokenizedSplit {
  const rng = new Rng(seed);
  const ids: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const label = rng.int(2);
    const len = 6 + rng.int(6);
    const row = [2];
    for (let t = 0; t < len; t++) row.push(10 + rng.int(38));
    if (label) for (let k = 0; k < 4; k++) row[1 + rng.int(len)] = 5 + rng.int(3);
    ids.push(row);
    labels.push(label);
  }
  return { ids, labels, padId: 0 };
}

/** Training options shared by the loop and method tests: the signal task on `base`, seeded, one thread, quiet. */
export function signalTrainOptions(base: Graph, lr: number): TrainOptions {
  return {
    base,
    task: { name: "signal", labels: ["absent", "present"] },
    train: signalTask(512, 1),
    validation: signalTask(256, 2),
    pooling: "mean",
    trainBiases: true,
    lr,
    batchSize: 16,
    seed: 1,
    threads: 1,
    progress: null,
  };
}
