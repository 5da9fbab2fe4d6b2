/**
 * Masked-language-model pretraining with Sluice's own engine: the MLM training graph (autodiff) on
 * onnxruntime-node, AdamW in Node (no weight decay on LayerNorm gains and biases, as BERT), linear warmup then
 * linear decay, global gradient-norm clipping. Reproducible like the task trainer: batch order and masks come
 * from Rngs seeded by (seed, purpose, epoch or step), so a resumed run continues exactly where it stopped.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import type { Graph } from "../../core/onnx/graph";
import { epochBatches, sequentialBatches } from "../train/data";
import { type ProgressSink, stderrProgress, streamRng } from "../train/loop";
import { AdamW, type AdamWState } from "../train/optimizer";
import { createSession } from "../train/session";
import { type IdSequences, sequenceAt, sequenceCount } from "./corpus-ids";
import {
  buildMlmGraphs,
  MLM_LABELS,
  MLM_LOSS,
  MLM_POSITIONS,
  MLM_PREDICTIONS,
  type MlmGraphs,
} from "./graphs";
import { BERT_MASKING, type MaskedBatch, type MaskingOptions, maskBatch } from "./masking";

export interface PretrainOptions {
  base: Graph;
  train: IdSequences;
  validation: IdSequences;
  /** Token ids from the tokenizer (never assumed). */
  padId: number;
  maskId: number;
  specialIds: number[];
  vocabSize: number;
  steps: number;
  batchSize?: number;
  lr?: number;
  /** Linear warmup steps (default 6% of steps), then linear decay to 0. */
  warmup?: number;
  weightDecay?: number;
  /** Global gradient-norm clip (default 1; 0 = off). */
  clip?: number;
  seed?: number;
  /** Validation every N steps (default steps/10) on the first `evalSequences` validation segments. */
  evalEvery?: number;
  evalSequences?: number;
  threads?: number;
  checkpointDir?: string;
  resume?: boolean;
  /** Stop after this many steps in this process (to test resume); the checkpoint is written first. */
  stopAfter?: number;
  progress?: ProgressSink | null;
}

export interface PretrainStepPoint {
  step: number;
  lr: number;
  loss: number;
  /** Accuracy of the predictions at the selected (masked) positions of this batch. */
  accuracy: number;
  masked: number;
}

export interface PretrainEvalPoint {
  step: number;
  loss: number;
  accuracy: number;
  masked: number;
}

export interface PretrainResult {
  /** Every trained tensor (encoder and MLM head) by initializer name. */
  weights: Map<string, Float32Array>;
  steps: number;
  curve: PretrainStepPoint[];
  evals: PretrainEvalPoint[];
  config: PretrainConfig;
  /** Wall time of the training steps and evaluations over all (resumed) processes. */
  wallSeconds: number;
  trainableParams: number;
  interrupted: boolean;
}

export interface PretrainConfig {
  steps: number;
  batchSize: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  seed: number;
  evalEvery: number;
  evalSequences: number;
  masking: typeof BERT_MASKING;
  trainSequences: number;
}

interface PretrainState {
  format: "sluice-pretrain-state/1";
  config: PretrainConfig;
  step: number;
  wallSeconds: number;
  params: Record<string, string>;
  optimizer: AdamWState;
  curve: PretrainStepPoint[];
  evals: PretrainEvalPoint[];
}

export const PRETRAIN_STATE_FILE = "pretrain-state.json";
const STREAM = { batches: 10, masks: 11, evalMasks: 12 } as const;

/** BERT's schedule: linear warmup to `lr`, then linear decay to 0 at the last step. `step` counts from 0. */
export function learningRate(step: number, c: Pick<PretrainConfig, "lr" | "warmup" | "steps">): number {
  if (step < c.warmup) return (c.lr * (step + 1)) / c.warmup;
  return (c.lr * Math.max(0, c.steps - step)) / Math.max(1, c.steps - c.warmup);
}

/** No decay on LayerNorm gains/shifts and on biases (BERT, and HF's run_mlm recipe). */
export const noDecay = (name: string) => name.includes("LayerNorm") || name.endsWith(".bias");

const f32ToB64 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function b64ToF32Into(s: string, into: Float32Array, name: string) {
  const buf = Buffer.from(s, "base64");
  if (buf.byteLength !== into.byteLength) throw new Error(`checkpoint tensor ${name} has the wrong size`);
  new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(buf);
}
function writeJsonAtomic(file: string, value: unknown) {
  writeFileSync(`${file}.tmp`, JSON.stringify(value));
  renameSync(`${file}.tmp`, file);
}

/** Runs the MLM graphs: parameter feeds wrap the arrays AdamW updates, so a step is one session.run. */
class MlmSession {
  private readonly paramFeeds: Record<string, ort.Tensor> = {};
  private constructor(
    private readonly graphs: MlmGraphs,
    private readonly training: ort.InferenceSession,
    private readonly forward: ort.InferenceSession,
    params: Map<string, Float32Array>,
  ) {
    for (const [name, data] of params)
      this.paramFeeds[name] = new ort.Tensor("float32", data, graphs.trainable.get(name)!.dims);
  }

  static async create(graphs: MlmGraphs, params: Map<string, Float32Array>, threads?: number) {
    const training = await createSession(graphs.training, { threads });
    const forward = await createSession(graphs.forward, { threads });
    return new MlmSession(graphs, training, forward, params);
  }

  private feeds(b: MaskedBatch): Record<string, ort.Tensor> {
    const dims = [b.batch, b.seq];
    return {
      ...this.paramFeeds,
      input_ids: new ort.Tensor("int64", b.inputIds, dims),
      attention_mask: new ort.Tensor("int64", b.attentionMask, dims),
      [MLM_POSITIONS]: new ort.Tensor("int64", b.positions, [b.positions.length]),
      [MLM_LABELS]: new ort.Tensor("int64", b.labels, [b.labels.length]),
    };
  }

  async step(b: MaskedBatch) {
    const out = await this.training.run(this.feeds(b));
    const grads = new Map<string, Float32Array>();
    for (const [name, output] of this.graphs.gradOutputs) grads.set(name, out[output].data as Float32Array);
    return { ...summarise(out, b), grads };
  }

  async evaluate(b: MaskedBatch) {
    return summarise(await this.forward.run(this.feeds(b)), b);
  }

  async release() {
    await this.training.release();
    await this.forward.release();
  }
}

function summarise(out: ort.InferenceSession.ReturnType, b: MaskedBatch) {
  const predictions = out[MLM_PREDICTIONS].data as BigInt64Array;
  let correct = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === b.labels[i]) correct++;
  return { loss: (out[MLM_LOSS].data as Float32Array)[0], correct, masked: b.labels.length };
}

/** Scales the gradients in place so their global L2 norm is at most `maxNorm`; returns the norm before. */
export function clipGradients(grads: Map<string, Float32Array>, maxNorm: number): number {
  let sq = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / norm;
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] *= s;
  }
  return norm;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "-";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.round(s)}s`;
}

export async function pretrain(opts: PretrainOptions): Promise<PretrainResult> {
  const nTrain = sequenceCount(opts.train);
  const batchSize = opts.batchSize ?? 32;
  if (nTrain < batchSize)
    throw new Error(`the corpus has ${nTrain} training segments, fewer than one batch of ${batchSize}`);
  if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new Error("steps must be a positive integer");
  const config: PretrainConfig = {
    steps: opts.steps,
    batchSize,
    lr: opts.lr ?? 5e-4,
    warmup: opts.warmup ?? Math.max(1, Math.round(0.06 * opts.steps)),
    weightDecay: opts.weightDecay ?? 0.01,
    clip: opts.clip ?? 1,
    seed: opts.seed ?? 1,
    evalEvery: opts.evalEvery ?? Math.max(1, Math.round(opts.steps / 10)),
    evalSequences: Math.min(opts.evalSequences ?? 512, sequenceCount(opts.validation)),
    masking: BERT_MASKING,
    trainSequences: nTrain,
  };
  const masking: MaskingOptions = {
    ...BERT_MASKING,
    maskId: opts.maskId,
    specialIds: opts.specialIds,
    vocabSize: opts.vocabSize,
  };

  const graphs = buildMlmGraphs(opts.base);
  const params = new Map<string, Float32Array>();
  for (const [name, t] of graphs.trainable) params.set(name, Float32Array.from(t.data as Float32Array));
  const optimizer = new AdamW(params, { lr: config.lr, weightDecay: config.weightDecay }, (name) =>
    noDecay(name) ? 0 : undefined,
  );
  const trainableParams = [...params.values()].reduce((s, a) => s + a.length, 0);

  let step = 0;
  let wallBefore = 0;
  let curve: PretrainStepPoint[] = [];
  let evals: PretrainEvalPoint[] = [];
  const dir = opts.checkpointDir;
  if (opts.resume) {
    if (!dir) throw new Error("--resume needs a checkpoint directory");
    const state = JSON.parse(readFileSync(path.join(dir, PRETRAIN_STATE_FILE), "utf8")) as PretrainState;
    if (JSON.stringify(state.config) !== JSON.stringify(config))
      throw new Error(
        `the checkpoint in ${dir} was made with different settings: ${JSON.stringify(state.config)}`,
      );
    for (const [name, p] of params) {
      if (!(name in state.params)) throw new Error(`checkpoint has no tensor ${name}`);
      b64ToF32Into(state.params[name], p, name);
    }
    optimizer.load(state.optimizer);
    ({ step, curve, evals } = state);
    wallBefore = state.wallSeconds;
  }

  const session = await MlmSession.create(graphs, params, opts.threads);
  const started = performance.now();
  const wall = () => wallBefore + (performance.now() - started) / 1000;
  const save = () => {
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    const state: PretrainState = {
      format: "sluice-pretrain-state/1",
      config,
      step,
      wallSeconds: wall(),
      params: Object.fromEntries([...params].map(([k, v]) => [k, f32ToB64(v)])),
      optimizer: optimizer.state(),
      curve,
      evals,
    };
    writeJsonAtomic(path.join(dir, PRETRAIN_STATE_FILE), state);
  };

  // Fixed masks for validation (same corruption at every evaluation), so points are comparable.
  const evaluate = async (): Promise<PretrainEvalPoint> => {
    let lossSum = 0;
    let correct = 0;
    let masked = 0;
    for (const [i, idx] of sequentialBatches(config.evalSequences, batchSize).entries()) {
      const rows = idx.map((k) => sequenceAt(opts.validation, k));
      const b = maskBatch(rows, opts.padId, masking, streamRng(config.seed, STREAM.evalMasks, i));
      const r = await session.evaluate(b);
      lossSum += r.loss * r.masked;
      correct += r.correct;
      masked += r.masked;
    }
    return { step, loss: lossSum / masked, accuracy: correct / masked, masked };
  };

  const progress = opts.progress === null ? undefined : (opts.progress ?? stderrProgress(() => config.steps));
  const stepsPerEpoch = Math.floor(nTrain / batchSize);
  let order: { epoch: number; batches: number[][] } | undefined;
  let startedHere = 0;
  let tokensHere = 0;
  let emaLoss: number | undefined;
  let emaAcc: number | undefined;
  let interrupted = false;
  if (step === 0 && evals.length === 0) evals.push(await evaluate());
  while (step < config.steps) {
    if (opts.stopAfter !== undefined && startedHere >= opts.stopAfter) {
      interrupted = true;
      break;
    }
    const epoch = Math.floor(step / stepsPerEpoch);
    if (order?.epoch !== epoch)
      order = {
        epoch,
        batches: epochBatches(nTrain, batchSize, streamRng(config.seed, STREAM.batches, epoch)),
      };
    const rows = order.batches[step % stepsPerEpoch].map((k) => sequenceAt(opts.train, k));
    const b = maskBatch(rows, opts.padId, masking, streamRng(config.seed, STREAM.masks, step));
    const r = await session.step(b);
    if (!Number.isFinite(r.loss))
      throw new Error(`the loss became ${r.loss} at step ${step + 1}; lower --lr`);
    clipGradients(r.grads, config.clip);
    const lr = learningRate(step, config);
    optimizer.update(r.grads, lr);
    step++;
    startedHere++;
    for (const row of rows) tokensHere += row.length;
    const accuracy = r.correct / r.masked;
    curve.push({ step, lr, loss: r.loss, accuracy, masked: r.masked });
    emaLoss = emaLoss === undefined ? r.loss : 0.95 * emaLoss + 0.05 * r.loss;
    emaAcc = emaAcc === undefined ? accuracy : 0.95 * emaAcc + 0.05 * accuracy;
    if (step % config.evalEvery === 0 || step === config.steps) {
      evals.push(await evaluate());
      save();
    }
    const last = evals.at(-1);
    const elapsed = (performance.now() - started) / 1000;
    progress?.update(
      `step ${step}/${config.steps} loss ${emaLoss.toFixed(4)} acc ${emaAcc.toFixed(3)} ` +
        `val ${last ? `${last.loss.toFixed(3)}/${last.accuracy.toFixed(3)}@${last.step}` : "-"} ` +
        `${Math.round(tokensHere / elapsed)} tok/s ` +
        `ETA ${formatDuration(((config.steps - step) * elapsed) / startedHere)}`,
    );
  }
  if (interrupted) save();
  const last = evals.at(-1);
  progress?.done(
    `${interrupted ? "interrupted" : "done"} after ${step} steps in ${formatDuration(wall())}` +
      (last
        ? `: validation MLM loss ${last.loss.toFixed(4)}, masked-token accuracy ${last.accuracy.toFixed(4)}`
        : ""),
  );
  await session.release();
  return {
    weights: params,
    steps: step,
    curve,
    evals,
    config,
    wallSeconds: wall(),
    trainableParams,
    interrupted,
  };
}
