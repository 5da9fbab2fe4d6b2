/**
 * Runs the training and evaluation graphs on onnxruntime-node. Sessions are created once and reused; the feeds
 * for trainable tensors wrap the very Float32Arrays the optimizer updates, and gate feeds are pre-allocated and
 * refilled each step, so a step costs one `session.run` plus small copies.
 */
import * as ort from "onnxruntime-node";
import { encodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { intFeed } from "../export/run";
import type { LayerGateValues } from "../gates/finegates";
import { colGateInput, rowGateInput } from "../gates/insert";
import { LABELS_INPUT, type TrainGraphs } from "./graphs";

export type Device = "cpu" | "cuda";

export interface SessionOptions {
  device?: Device;
  threads?: number;
  /** ORT profiling (writes a JSON trace in the working directory), for the bench. */
  profile?: boolean;
  profilePrefix?: string;
}

/** A tokenized mini-batch: row-major [batch, seq] ids and mask, integer labels. */
export interface Batch {
  batch: number;
  seq: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  /** Token type (segment) ids of sentence pairs; absent: all 0. */
  tokenTypeIds?: BigInt64Array;
  labels: Int32Array;
}

export async function createSession(graph: Graph, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const device = opts.device ?? "cpu";
  try {
    return await ort.InferenceSession.create(encodeModel(graph), {
      executionProviders: [device === "cuda" ? "cuda" : "cpu"],
      intraOpNumThreads: opts.threads ?? 0,
      interOpNumThreads: 1,
      graphOptimizationLevel: "all",
      // No arena: it keeps the backward pass's peak activations (~0.8 GB at BERT-base, batch 8 × 128)
      // reserved for the whole run; bench:import measured the step no slower without it.
      enableCpuMemArena: false,
      enableProfiling: opts.profile ?? false,
      profileFilePrefix: opts.profilePrefix,
    });
  } catch (err) {
    if (device === "cuda")
      throw new Error(
        `could not start onnxruntime's CUDA provider (${err instanceof Error ? err.message : err}); ` +
          "install it with ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install (see README)",
      );
    throw err;
  }
}

export interface StepResult {
  loss: number;
  logits: Float32Array;
  /** d(task loss)/d(gate) per gated layer (gates method only). */
  gateGrads: LayerGateValues[];
  /** d(task loss)/d(trainable tensor). */
  paramGrads: Map<string, Float32Array>;
}

export class TrainerSession {
  private readonly gateFeeds = new Map<string, Float32Array>();
  private readonly paramFeeds: Record<string, ort.Tensor> = {};

  /** Created at the first evaluation: until then its copy of the frozen weights would only add to the peak. */
  private evaluation: ort.InferenceSession | undefined;

  private constructor(
    readonly graphs: TrainGraphs,
    private readonly training: ort.InferenceSession,
    private readonly sessionOptions: SessionOptions,
    /** Trainable tensors, by reference (the optimizer updates them in place). */
    readonly params: Map<string, Float32Array>,
  ) {
    for (const [name, data] of params) {
      const dims = graphs.trainable.get(name)!.dims;
      this.paramFeeds[name] = new ort.Tensor("float32", data, dims);
    }
    for (const l of graphs.layers) {
      if (!graphs.gateInputs.length) break;
      this.gateFeeds.set(rowGateInput(l.node), new Float32Array(l.outFeatures));
      this.gateFeeds.set(colGateInput(l.node), new Float32Array(l.inFeatures));
    }
  }

  static async create(
    graphs: TrainGraphs,
    params: Map<string, Float32Array>,
    opts: SessionOptions = {},
  ): Promise<TrainerSession> {
    const training = await createSession(graphs.training, opts);
    return new TrainerSession(graphs, training, opts, params);
  }

  private feeds(batch: Batch, gates: readonly LayerGateValues[] | undefined, withLabels: boolean) {
    const dims = [batch.batch, batch.seq];
    const f: Record<string, ort.Tensor> = { ...this.paramFeeds };
    // Only the token inputs the model has, each in the dtype it declares (export/run.ts intFeed).
    const tokens: Record<string, BigInt64Array> = {
      input_ids: batch.inputIds,
      attention_mask: batch.attentionMask,
      token_type_ids: batch.tokenTypeIds ?? new BigInt64Array(batch.batch * batch.seq),
    };
    for (const input of this.graphs.eval.inputs)
      if (tokens[input.name]) f[input.name] = intFeed(input, tokens[input.name], dims);
    if (this.graphs.gateInputs.length) {
      if (!gates) throw new Error("gate values are required for a gated graph");
      for (const [i, l] of this.graphs.layers.entries()) {
        const row = this.gateFeeds.get(rowGateInput(l.node))!;
        const col = this.gateFeeds.get(colGateInput(l.node))!;
        row.set(gates[i].row);
        col.set(gates[i].col);
        f[rowGateInput(l.node)] = new ort.Tensor("float32", row, [row.length]);
        f[colGateInput(l.node)] = new ort.Tensor("float32", col, [col.length]);
      }
    }
    if (withLabels) {
      const k = this.numLabels;
      const onehot = new Float32Array(batch.batch * k);
      for (let b = 0; b < batch.batch; b++) onehot[b * k + batch.labels[b]] = 1;
      f[LABELS_INPUT] = new ort.Tensor("float32", onehot, [batch.batch, k]);
    }
    return f;
  }

  get numLabels(): number {
    const shape = this.graphs.eval.outputs[0].shape;
    return shape?.[1] as number;
  }

  /** Forward + backward on one batch. */
  async step(batch: Batch, gates?: readonly LayerGateValues[]): Promise<StepResult> {
    const out = await this.training.run(this.feeds(batch, gates, true));
    const grad = (input: string) => out[this.graphs.gradOutputs.get(input)!].data as Float32Array;
    const gateGrads = this.graphs.gateInputs.length
      ? this.graphs.layers.map((l) => ({
          node: l.node,
          row: grad(rowGateInput(l.node)),
          col: grad(colGateInput(l.node)),
        }))
      : [];
    const paramGrads = new Map<string, Float32Array>();
    for (const name of this.params.keys()) paramGrads.set(name, grad(name));
    return {
      loss: (out[this.graphs.lossOutput].data as Float32Array)[0],
      logits: out.logits.data as Float32Array,
      gateGrads,
      paramGrads,
    };
  }

  /** Logits of the evaluation graph. */
  async logits(batch: Batch, gates?: readonly LayerGateValues[]): Promise<Float32Array> {
    this.evaluation ??= await createSession(this.graphs.eval, this.sessionOptions);
    const out = await this.evaluation.run(this.feeds(batch, gates, false));
    return out.logits.data as Float32Array;
  }

  /** The training graph's loss alone (for finite-difference checks). */
  async loss(batch: Batch, gates?: readonly LayerGateValues[]): Promise<number> {
    return (await this.step(batch, gates)).loss;
  }

  async release(): Promise<void> {
    await this.training.release();
    await this.evaluation?.release();
  }
}
