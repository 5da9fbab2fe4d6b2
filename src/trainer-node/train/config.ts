/**
 * A run's settings, resolved once: every default the trainer applies is here, so the CLI passes only what the
 * user gave and the loop reads one typed object (also what checkpoints record and resume compares).
 */
import type { DataFields } from "../data/fields";
import type { GateMethodName } from "../gates/finegates";
import { DEFAULT_ADAPTER_GATE_METHOD, DEFAULT_GATE_METHOD } from "../gates/methods";
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
  pooling: "cls" | "mean";
  /** Recovery steps after the main phase, for gate methods that ask for one (undefined: not a gates run). */
  recoverySteps: number;
  /** LoRA baseline: rank and scale (method = lora). */
  lora: { rank: number; alpha: number } | undefined;
  /** Adapters learned inside the gates (method = gates with adapterRank). */
  adapters: { rank: number; alpha: number } | undefined;
  /** What one example is: a sentence pair when the task's fields name a second text (token type ids fed). */
  input: { textPairs: boolean; fields: DataFields | undefined };
}

/**
 * Every default of a training run. The gate method's default is not here: it depends on whether adapters train
 * inside the gates, and gates/methods.ts records which benchmark chose each (`defaultGateMethod`).
 */
export const TRAIN_DEFAULTS = {
  method: "gates",
  seed: 1,
  batchSize: 16,
  targetSparsity: 0.4,
  lambda: 50,
  lr: 1e-3,
  epochs: 3,
  loraRank: 8,
  pooling: "cls",
  recoverySteps: 100,
  /** Tokens per example when the caller tokenizes (the CLI's --seq). */
  seqLen: 128,
} as const;

/** The gate method a run uses when none is named: with adapters, the one bench:quality chose for them. */
export function defaultGateMethod(adapterRank: number | undefined): GateMethodName {
  return adapterRank ? DEFAULT_ADAPTER_GATE_METHOD : DEFAULT_GATE_METHOD;
}

export function resolveTrainConfig(opts: TrainOptions): TrainConfig {
  const batchSize = opts.batchSize ?? TRAIN_DEFAULTS.batchSize;
  if (opts.train.ids.length < batchSize)
    throw new Error(
      `the training split has ${opts.train.ids.length} examples, fewer than one batch of ${batchSize}`,
    );
  if (opts.validation.ids.length === 0) throw new Error("the validation split is empty");
  const method = opts.method ?? TRAIN_DEFAULTS.method;
  if (opts.adapterRank && method !== "gates")
    throw new Error("adapterRank adds adapters inside the gates: it needs method gates");
  const fields = opts.task.fields;
  const textPairs = fields?.textPair !== undefined;
  for (const [name, split] of [
    ["training", opts.train],
    ["validation", opts.validation],
  ] as const)
    if (textPairs !== (split.typeIds !== undefined))
      throw new Error(
        textPairs
          ? `the task reads sentence pairs (${fields?.text}, ${fields?.textPair}) but the ${name} split was tokenized as single texts`
          : `the ${name} split was tokenized as sentence pairs but the task names no second text field`,
      );
  const stepsPerEpoch = Math.floor(opts.train.ids.length / batchSize);
  const loraRank = opts.loraRank ?? TRAIN_DEFAULTS.loraRank;
  return {
    method,
    gateMethod: opts.gates ?? defaultGateMethod(opts.adapterRank),
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
    pooling: opts.pooling ?? TRAIN_DEFAULTS.pooling,
    recoverySteps: opts.recoverySteps ?? TRAIN_DEFAULTS.recoverySteps,
    lora: method === "lora" ? { rank: loraRank, alpha: opts.loraAlpha ?? 2 * loraRank } : undefined,
    adapters:
      method === "gates" && opts.adapterRank
        ? { rank: opts.adapterRank, alpha: opts.loraAlpha ?? 2 * opts.adapterRank }
        : undefined,
    input: { textPairs, fields },
  };
}
