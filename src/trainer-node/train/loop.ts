/**
 * The training loop: gates (FineGates and variants), LoRA or head-only, all through one engine (training graph
 * on onnxruntime-node, AdamW in Node). Reproducible by construction: every random draw comes from an Rng seeded
 * by (seed, purpose, step or epoch), so a run resumed from a checkpoint continues exactly as the uninterrupted
 * run would have.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Graph } from "../../core/onnx/graph";
import { Rng } from "../../core/random";
import type { DataFields } from "../data/fields";
import { CHECKPOINT_FORMAT, type GateCheckpoint, prepareTaskGraph, tensorToJson } from "../gates/checkpoint";
import {
  closedGateFraction,
  createGateMethod,
  type GateLayerShape,
  type GateMethod,
  type GateMethodName,
  type LayerGateValues,
  LayerLocalRemoval,
  type RemovalModel,
} from "../gates/finegates";
import type { HardConcreteOptions } from "../gates/hardconcrete";
import type { LayerSelector } from "../import/linears";
import { resolveTrainConfig, type TrainConfig } from "./config";
import { epochBatches, makeBatch, sequentialBatches, type TokenizedSplit } from "./data";
import { buildTrainGraphs, loraA, type TrainGraphs, type TrainMethod } from "./graphs";
import { AdamW, type AdamWState } from "./optimizer";
import { exportRemovalModel } from "./removal";
import { type Device, TrainerSession } from "./session";

export interface TrainOptions {
  base: Graph;
  baseInfo?: { name: string; sha256: string };
  /** `fields`: the data fields the examples came from; with `textPair`, the splits are pairs (tokenizeSplit). */
  task: { name: string; labels: string[]; fields?: DataFields };
  train: TokenizedSplit;
  validation: TokenizedSplit;
  method?: TrainMethod;
  /** Gate method when method = gates. */
  gates?: GateMethodName;
  targetSparsity?: number;
  lambda?: number;
  lr?: number;
  weightDecay?: number;
  /** Length of the main phase: steps, or epochs over the training split (default 3 epochs). */
  steps?: number;
  epochs?: number;
  batchSize?: number;
  seed?: number;
  /** Evaluate every N steps (default: once per epoch, and at the end). */
  evalEvery?: number;
  /** Stop when validation accuracy has not improved for this many evaluations (default: off). */
  patience?: number;
  trainBiases?: boolean;
  loraRank?: number;
  loraAlpha?: number;
  /** Gates only: rank of low-rank adapters learned inside the gates (graphs.ts); export merges them. */
  adapterRank?: number;
  recoverySteps?: number;
  /** Method-specific gate settings (e.g. hardconcrete's lagrangianLr, warmupFraction, initLogAlpha). */
  gateOptions?: Partial<HardConcreteOptions>;
  selector?: LayerSelector;
  pooling?: "cls" | "mean";
  device?: Device;
  threads?: number;
  /** Directory for checkpoints (written at every evaluation and at the end). */
  checkpointDir?: string;
  /** Continue from checkpointDir's trainer state. */
  resume?: boolean;
  /** Stop after this many steps in this process (to test resume); the checkpoint is written first. */
  stopAfter?: number;
  /** Called at every evaluation with the evaluation gates (the sparsity study records their histogram). */
  onEvaluate?: (point: CurvePoint, evalGates: LayerGateValues[] | undefined) => void;
  /** Progress output (default: stderr); pass null for silence. */
  progress?: ProgressSink | null;
}

export interface CurvePoint {
  step: number;
  phase: "main" | "recovery";
  loss: number;
  taskLoss: number;
  sparsityLoss: number;
  /** Validation accuracy at this point (evaluation gates), when an evaluation ran. */
  accuracy?: number;
  valLoss?: number;
  closedGates: number;
  /** Fraction of gated-layer weights export would remove (at evaluation points). */
  removedFraction?: number;
}

export interface TrainResult {
  /** The run's resolved settings (config.ts). */
  config: TrainConfig;
  checkpoint: GateCheckpoint;
  curve: CurvePoint[];
  steps: number;
  accuracy: number;
  /** Fraction of gated-layer weights export removes (counted by export's planner when it understands the model). */
  removedFraction: number;
  removalCounting: string;
  closedGates: number;
  trainableParams: number;
  notes: string[];
  stoppedEarly: boolean;
  interrupted: boolean;
}

export interface ProgressSink {
  update(line: string): void;
  done(line: string): void;
}

/** A progress line on stderr: rewritten in place on a TTY, printed every ~5% otherwise. */
export function stderrProgress(total: () => number): ProgressSink {
  const tty = process.stderr.isTTY;
  let lastPrinted = -1;
  return {
    update(line) {
      if (tty) process.stderr.write(`\r\x1b[2K${line}`);
      else {
        const step = Number(/step (\d+)/.exec(line)?.[1] ?? 0);
        const every = Math.max(1, Math.floor(total() / 20));
        if (step - lastPrinted >= every || step === total()) {
          lastPrinted = step;
          process.stderr.write(`${line}\n`);
        }
      }
    },
    done(line) {
      process.stderr.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
  };
}

/** Independent seeded streams: (seed, purpose, index) -> Rng. */
export function streamRng(seed: number, purpose: number, index: number): Rng {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(purpose + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) ^ Math.imul(index + 1, 0x846ca68b);
  h = Math.imul(h ^ (h >>> 15), 0x27d4eb2d);
  return new Rng((h ^ (h >>> 16)) >>> 0);
}
const STREAM = { init: 0, batches: 1, noise: 2 } as const;

interface TrainerState {
  format: "sluice-trainer-state/1";
  config: Record<string, unknown>;
  step: number;
  phase: "main" | "recovery";
  mainEnd: number;
  recoveryEnd: number;
  params: Record<string, string>;
  optimizer: AdamWState;
  methodState: Record<string, unknown>;
  curve: CurvePoint[];
  best: { accuracy: number; sinceImproved: number };
  notes: string[];
}

const f32ToB64 = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function b64ToF32Into(s: string, into: Float32Array, name: string) {
  const buf = Buffer.from(s, "base64");
  if (buf.byteLength !== into.byteLength) throw new Error(`trainer state for ${name} has the wrong size`);
  new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(buf);
}

function writeJsonAtomic(file: string, value: unknown) {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(value));
  renameSync(tmp, file);
}

export const GATES_FILE = "gates.json";
export const STATE_FILE = "trainer-state.json";
export const CURVE_FILE = "curve.json";

/** Kaiming-uniform(a=√5) as torch initialises Linear (and PEFT initialises LoRA A): U(−1/√in, 1/√in). */
function initLora(graphs: TrainGraphs, params: Map<string, Float32Array>, rng: Rng) {
  for (const l of graphs.layers) {
    const a = params.get(loraA(l.node));
    if (!a) continue;
    const bound = 1 / Math.sqrt(l.inFeatures);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
  }
}

/** Export's own removal count when its analysis understands the model, else layer-local counting. */
function removalModelFor(
  base: Graph,
  numLabels: number,
  pooling: "cls" | "mean",
  shapes: GateLayerShape[],
): RemovalModel & { kind: string } {
  if (shapes.length === 0) return { kind: "none", removedFraction: () => 0 };
  try {
    const model = exportRemovalModel(prepareTaskGraph(base, numLabels, pooling).graph);
    model.removedFraction(
      shapes.map((s) => ({
        node: s.node,
        row: new Float32Array(s.rows).fill(1),
        col: new Float32Array(s.cols).fill(1),
      })),
    );
    return model;
  } catch {
    const local = new LayerLocalRemoval(shapes);
    return { kind: "layer-local", removedFraction: (g) => local.removedFraction(g) };
  }
}

/** Model tensors, gate method, optimizer and the record checkpoints store: everything a run starts from. */
interface RunSetup {
  graphs: TrainGraphs;
  /** Trainable model tensors (head, biases, adapters), updated in place by the optimizer. */
  params: Map<string, Float32Array>;
  gates: GateMethod | undefined;
  removal: RemovalModel & { kind: string };
  /** Model tensors and gate logits: what the optimizer updates and the trainer state saves. */
  all: Map<string, Float32Array>;
  optimizer: AdamW;
  /** The settings a checkpoint records and a resume must match. */
  record: Record<string, unknown>;
}

function setUpRun(opts: TrainOptions, cfg: TrainConfig): RunSetup {
  const graphs = buildTrainGraphs(opts.base, {
    numLabels: cfg.numLabels,
    method: cfg.method,
    pooling: cfg.pooling,
    selector: opts.selector,
    trainBiases: cfg.trainBiases,
    loraRank: cfg.lora?.rank,
    loraAlpha: (cfg.lora ?? cfg.adapters)?.alpha,
    adapterRank: cfg.adapters?.rank,
  });
  const initRng = streamRng(cfg.seed, STREAM.init, 0);
  const params = new Map<string, Float32Array>();
  for (const [name, t] of graphs.trainable) params.set(name, Float32Array.from(t.data as Float32Array));
  initLora(graphs, params, initRng);
  const shapes = graphs.layers.map((l) => ({ node: l.node, rows: l.outFeatures, cols: l.inFeatures }));
  const removal = removalModelFor(opts.base, cfg.numLabels, cfg.pooling, shapes);
  const gates: GateMethod | undefined =
    cfg.method === "gates"
      ? createGateMethod(
          cfg.gateMethod,
          shapes,
          {
            ...opts.gateOptions,
            targetSparsity: cfg.targetSparsity,
            lambda: cfg.lambda,
            recoverySteps: cfg.recoverySteps,
            removal,
            mainSteps: cfg.mainSteps,
          },
          initRng,
        )
      : undefined;
  // One optimizer over everything trainable: model tensors and gate logits.
  const all = new Map<string, Float32Array>([...params, ...(gates?.params ?? [])]);
  const optimizer = new AdamW(all, { lr: cfg.lr, weightDecay: cfg.weightDecay });
  const record = {
    method: cfg.method,
    gates: cfg.method === "gates" ? cfg.gateMethod : undefined,
    gateSettings: gates?.settings(),
    seed: cfg.seed,
    batchSize: cfg.batchSize,
    lr: cfg.lr,
    weightDecay: optimizer.options.weightDecay,
    mainSteps: cfg.mainSteps,
    trainBiases: cfg.trainBiases,
    loraRank: cfg.lora?.rank,
    adapters: cfg.adapters,
    train: opts.train.ids.length,
    task: opts.task.name,
    // Undefined (left out of the record) for single-text runs, so their checkpoints resume as before.
    textPair: cfg.input.fields?.textPair,
  };
  return { graphs, params, gates, removal, all, optimizer, record };
}

/** Where a run stands: what the trainer state saves and a resume restores. */
interface Progress {
  step: number;
  phase: "main" | "recovery";
  mainEnd: number;
  recoveryEnd: number;
  curve: CurvePoint[];
  best: { accuracy: number; sinceImproved: number };
  notes: string[];
}

function restoreState(dir: string | undefined, setup: RunSetup, progress: Progress): void {
  if (!dir) throw new Error("--resume needs a checkpoint directory");
  const state = JSON.parse(readFileSync(path.join(dir, STATE_FILE), "utf8")) as TrainerState;
  if (JSON.stringify(state.config) !== JSON.stringify(setup.record))
    throw new Error(
      `the checkpoint in ${dir} was trained with different settings: ${JSON.stringify(state.config)}`,
    );
  for (const [name, p] of setup.all) {
    if (!(name in state.params)) throw new Error(`checkpoint has no tensor ${name}`);
    b64ToF32Into(state.params[name], p, name);
  }
  setup.optimizer.load(state.optimizer);
  setup.gates?.loadState(state.methodState);
  const { step, phase, mainEnd, recoveryEnd, curve, best, notes } = state;
  Object.assign(progress, { step, phase, mainEnd, recoveryEnd, curve, best, notes });
}

/** Validation accuracy and mean cross-entropy with the evaluation gates. */
async function evaluate(
  session: TrainerSession,
  split: TokenizedSplit,
  cfg: TrainConfig,
  evalGates: LayerGateValues[] | undefined,
): Promise<{ accuracy: number; valLoss: number }> {
  const k = cfg.numLabels;
  let correct = 0;
  let lossSum = 0;
  for (const idx of sequentialBatches(split.ids.length, Math.max(cfg.batchSize, 32))) {
    const batch = makeBatch(split, idx);
    const logits = await session.logits(batch, evalGates);
    for (let b = 0; b < batch.batch; b++) {
      const row = logits.subarray(b * k, (b + 1) * k);
      let arg = 0;
      let max = -Infinity;
      for (let j = 0; j < k; j++) if (row[j] > max) [max, arg] = [row[j], j];
      if (arg === batch.labels[b]) correct++;
      let z = 0;
      for (let j = 0; j < k; j++) z += Math.exp(row[j] - max);
      lossSum += -(row[batch.labels[b]] - max - Math.log(z));
    }
  }
  const n = split.ids.length;
  return { accuracy: correct / n, valLoss: lossSum / n };
}

function gateCheckpoint(
  opts: TrainOptions,
  cfg: TrainConfig,
  setup: RunSetup,
  step: number,
  evalGates?: LayerGateValues[],
): GateCheckpoint {
  const { graphs, gates, params } = setup;
  return {
    format: CHECKPOINT_FORMAT,
    base: opts.baseInfo ?? { name: opts.base.name, sha256: "" },
    task: {
      name: opts.task.name,
      labels: opts.task.labels,
      ...(cfg.input.fields ? { fields: cfg.input.fields } : {}),
    },
    head: graphs.head,
    method: cfg.method === "gates" ? cfg.gateMethod : cfg.method,
    settings: {
      ...(gates?.settings() ?? {}),
      lr: cfg.lr,
      batchSize: cfg.batchSize,
      trainBiases: cfg.trainBiases,
      ...(cfg.lora ? { rank: cfg.lora.rank, alpha: cfg.lora.alpha } : {}),
    },
    // LoRA adapters sit after the layer (y = xW + b + s·xAB), so export merges them into W exactly as well.
    ...((cfg.adapters ?? cfg.lora) ? { adapters: cfg.adapters ?? cfg.lora } : {}),
    seed: cfg.seed,
    step,
    layers: (evalGates ?? []).map((g) => {
      const uses = graphs.layers.find((l) => l.node === g.node)?.uses;
      return {
        node: g.node,
        rowGate: Array.from(g.row),
        colGate: Array.from(g.col),
        // A shared weight's tied gate: which linears it gates (export re-derives and checks them).
        ...(uses ? { uses: uses.map((u) => u.node) } : {}),
      };
    }),
    params: Object.fromEntries(
      [...params].map(([name, data]) => [
        name,
        tensorToJson({ dtype: "float32", dims: graphs.trainable.get(name)!.dims, data }),
      ]),
    ),
  };
}

function saveCheckpoint(
  opts: TrainOptions,
  cfg: TrainConfig,
  setup: RunSetup,
  progress: Progress,
  evalGates?: LayerGateValues[],
): void {
  const dir = opts.checkpointDir;
  if (!dir) return;
  const { gates, optimizer, record: config } = setup;
  const { step, phase, mainEnd, recoveryEnd, curve, best, notes } = progress;
  mkdirSync(dir, { recursive: true });
  writeJsonAtomic(
    path.join(dir, GATES_FILE),
    gateCheckpoint(opts, cfg, setup, step, evalGates ?? gates?.evalGates()),
  );
  const state: TrainerState = {
    format: "sluice-trainer-state/1",
    config,
    step,
    phase,
    mainEnd,
    recoveryEnd,
    params: Object.fromEntries([...setup.all].map(([k, v]) => [k, f32ToB64(v)])),
    optimizer: optimizer.state(),
    methodState: gates?.saveState() ?? {},
    curve,
    best,
    notes,
  };
  writeJsonAtomic(path.join(dir, STATE_FILE), state);
  writeJsonAtomic(path.join(dir, CURVE_FILE), { config, curve, notes });
}

/** Fraction of gates closed now (cheap: no removal accounting), for every curve point. */
function closedNow(setup: RunSetup): number {
  const g = setup.gates?.evalGates();
  return g ? closedGateFraction(g) : 0;
}

function sparsityOf(setup: RunSetup): { closedGates: number; removedFraction: number } {
  const g = setup.gates?.evalGates();
  return g
    ? { closedGates: closedGateFraction(g), removedFraction: setup.removal.removedFraction(g) }
    : { closedGates: 0, removedFraction: 0 };
}

/** Ends the main phase (early stop or its last step): notes, and the method's recovery phase if it asks. */
function endMainPhase(setup: RunSetup, progress: Progress, point: CurvePoint): void {
  const before = sparsityOf(setup);
  progress.notes.push(
    `main phase ended at step ${progress.step}: ${(100 * before.closedGates).toFixed(2)}% of gates closed, ` +
      `${(100 * before.removedFraction).toFixed(2)}% of gated weights removed` +
      (point.accuracy !== undefined ? `, validation accuracy ${point.accuracy.toFixed(4)}` : ""),
  );
  const end = setup.gates?.endOfTraining?.() ?? { recoverySteps: 0 };
  if (end.note) progress.notes.push(end.note);
  if (end.recoverySteps > 0) {
    progress.phase = "recovery";
    progress.recoveryEnd = progress.step + end.recoverySteps;
  }
}

function progressLine(
  progress: Progress,
  total: number,
  point: CurvePoint,
  lastEval: CurvePoint | undefined,
) {
  return (
    `step ${progress.step}/${total}${progress.phase === "recovery" ? " (recovery)" : ""} loss ${point.loss.toFixed(4)} ` +
    `task ${point.taskLoss.toFixed(4)} sparsity ${point.sparsityLoss.toFixed(4)} ` +
    `acc ${lastEval?.accuracy?.toFixed(3) ?? "-"} closed ${(100 * point.closedGates).toFixed(1)}% ` +
    `removed ${lastEval?.removedFraction !== undefined ? `${(100 * lastEval.removedFraction).toFixed(1)}%` : "-"}`
  );
}

export async function trainGates(opts: TrainOptions): Promise<TrainResult> {
  const cfg = resolveTrainConfig(opts);
  const setup = setUpRun(opts, cfg);
  const { gates, optimizer } = setup;
  const progress: Progress = {
    step: 0,
    phase: "main",
    mainEnd: cfg.mainSteps,
    recoveryEnd: cfg.mainSteps,
    curve: [],
    best: { accuracy: -1, sinceImproved: 0 },
    notes: [],
  };
  if (opts.resume) restoreState(opts.checkpointDir, setup, progress);

  const session = await TrainerSession.create(setup.graphs, setup.params, {
    device: opts.device,
    threads: opts.threads,
  });
  const total = () => (progress.phase === "main" ? progress.mainEnd : progress.recoveryEnd);
  const sink = opts.progress === null ? undefined : (opts.progress ?? stderrProgress(total));
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of gates?.params ?? []) grads.set(name, new Float32Array(p.length));

  let stoppedEarly = false;
  let interrupted = false;
  let lastEval = progress.curve.findLast((c) => c.accuracy !== undefined);
  let startedHere = 0;
  let epochOrder: { epoch: number; batches: number[][] } | undefined;
  while (progress.step < total()) {
    if (opts.stopAfter !== undefined && startedHere >= opts.stopAfter) {
      interrupted = true;
      break;
    }
    const epoch = Math.floor(progress.step / cfg.stepsPerEpoch);
    if (epochOrder?.epoch !== epoch)
      epochOrder = {
        epoch,
        batches: epochBatches(
          opts.train.ids.length,
          cfg.batchSize,
          streamRng(cfg.seed, STREAM.batches, epoch),
        ),
      };
    const batch = makeBatch(opts.train, epochOrder.batches[progress.step % cfg.stepsPerEpoch]);
    const sampled = gates?.sample(streamRng(cfg.seed, STREAM.noise, progress.step));
    const out = await session.step(batch, sampled);
    for (const [name, g] of out.paramGrads) grads.set(name, g);
    const { sparsityLoss, penalty } = gates?.backward(out.gateGrads, grads) ?? {
      sparsityLoss: 0,
      penalty: 0,
    };
    optimizer.update(grads);
    progress.step++;
    startedHere++;
    const step = progress.step;

    const point: CurvePoint = {
      step,
      phase: progress.phase,
      loss: out.loss + penalty,
      taskLoss: out.loss,
      sparsityLoss,
      closedGates: closedNow(setup),
    };
    if (step % cfg.evalEvery === 0 || step === total()) {
      point.removedFraction = sparsityOf(setup).removedFraction;
      const e = await evaluate(session, opts.validation, cfg, gates?.evalGates());
      point.accuracy = e.accuracy;
      point.valLoss = e.valLoss;
      if (e.accuracy > progress.best.accuracy) progress.best = { accuracy: e.accuracy, sinceImproved: 0 };
      else progress.best.sinceImproved++;
      opts.onEvaluate?.(point, gates?.evalGates());
    }
    progress.curve.push(point);
    if (point.accuracy !== undefined) lastEval = point;
    sink?.update(progressLine(progress, total(), point, lastEval));
    if (
      progress.phase === "main" &&
      opts.patience !== undefined &&
      progress.best.sinceImproved >= opts.patience &&
      step < progress.mainEnd
    ) {
      progress.notes.push(
        `early stop at step ${step}: no accuracy improvement in ${opts.patience} evaluations`,
      );
      stoppedEarly = true;
      progress.mainEnd = step;
    }
    if (progress.phase === "main" && step === progress.mainEnd) endMainPhase(setup, progress, point);
    if (point.accuracy !== undefined || step === total()) saveCheckpoint(opts, cfg, setup, progress);
  }
  if (interrupted) saveCheckpoint(opts, cfg, setup, progress);

  const lastAccuracy = progress.curve.at(-1)?.accuracy;
  const finalEval =
    lastAccuracy !== undefined && !interrupted
      ? { accuracy: lastAccuracy }
      : await evaluate(session, opts.validation, cfg, gates?.evalGates());
  const evalGates = gates?.evalGates();
  const { closedGates, removedFraction } = sparsityOf(setup);
  const checkpoint = gateCheckpoint(opts, cfg, setup, progress.step, evalGates);
  sink?.done(
    `${interrupted ? "interrupted" : "done"} after ${progress.step} steps: accuracy ${finalEval.accuracy.toFixed(3)}, closed gates ${(100 * closedGates).toFixed(1)}%, removed ${(100 * removedFraction).toFixed(1)}% of gated weights`,
  );
  await session.release();
  return {
    config: cfg,
    checkpoint,
    curve: progress.curve,
    steps: progress.step,
    accuracy: finalEval.accuracy,
    removedFraction,
    removalCounting: setup.removal.kind,
    closedGates,
    trainableParams: [...setup.all.values()].reduce((s, a) => s + a.length, 0),
    notes: progress.notes,
    stoppedEarly,
    interrupted,
  };
}
