/**
 * A run's settings, resolved once: every default the trainer applies is here, so the CLI passes only what the
 * user gave and the loop reads one typed object (also what checkpoints record and resume compares).
 */
import type { GateMethodName } from "../gates/finegates";
import type { TrainMethod } from "./graphs";
import type { TrainOptions } from "./loop";

export interface TrainConfig {
  method: TrainMethod;
  gateMethod: GateMethodName;
  seed: number;
  batchSize: number;
  targetSparsity: number;
  lambda: number;
  lr: number;
  /** Undefined: AdamW's own default (optimizer.ts). */
  weightDecay: number | undefined;
  numLabels: number;
  stepsPerEpoch: number;
  mainSteps: number;
  evalEvery: number;
  trainBiases: boolean;
  pooling: "cls" | "mean" | undefined;
  /** LoRA baseline: rank and scale (method = lora). */
  lora: { rank: number; alpha: number } | undefined;
  /** Adapters learned inside the gates (method = gates with adapterRank). */
  adapters: { rank: number; alpha: number } | undefined;
}

export const TRAIN_DEFAULTS = {
  method: "gates",
  gateMethod: "finegates",
  seed: 1,
  batchSize: 16,
  targetSparsity: 0.4,
  lambda: 50,
  lr: 1e-3,
  epochs: 3,
  loraRank: 8,
} as const;

export function resolveTrainConfig(opts: TrainOptions): TrainConfig {
  const batchSize = opts.batchSize ?? TRAIN_DEFAULTS.batchSize;
  if (opts.train.ids.length < batchSize)
    throw new Error(
      `the training split has ${opts.train.ids.length} examples, fewer than one batch of ${batchSize}`,
    );
  if (opts.validation.ids.length === 0) throw new Error("the validation split is empty");
  const method = opts.method ?? TRAIN_DEFAULTS.method;
  const stepsPerEpoch = Math.floor(opts.train.ids.length / batchSize);
  const loraRank = opts.loraRank ?? TRAIN_DEFAULTS.loraRank;
  return {
    method,
    gateMethod: opts.gates ?? TRAIN_DEFAULTS.gateMethod,
    seed: opts.seed ?? TRAIN_DEFAULTS.seed,
    batchSize,
    targetSparsity: opts.targetSparsity ?? TRAIN_DEFAULTS.targetSparsity,
    lambda: opts.lambda ?? TRAIN_DEFAULTS.lambda,
    lr: opts.lr ?? TRAIN_DEFAULTS.lr,
    weightDecay: opts.weightDecay,
    numLabels: opts.task.labels.length,
    stepsPerEpoch,
    mainSteps: opts.steps ?? (opts.epochs ?? TRAIN_DEFAULTS.epochs) * stepsPerEpoch,
    evalEvery: opts.evalEvery ?? stepsPerEpoch,
    trainBiases: !!opts.trainBiases,
    pooling: opts.pooling,
    lora: method === "lora" ? { rank: loraRank, alpha: opts.loraAlpha ?? 2 * loraRank } : undefined,
    adapters:
      method === "gates" && opts.adapterRank
        ? { rank: opts.adapterRank, alpha: opts.loraAlpha ?? 2 * opts.adapterRank }
        : undefined,
  };
}
