/**
 * Builds the graphs training runs: the task graph with its trainable tensors turned into graph inputs, gates
 * (or LoRA adapters) inserted on the selected linear layers, a cross-entropy loss on one-hot labels, and the
 * training graph the autodiff pass derives from it (extra outputs: gradients w.r.t. gates and trainable
 * tensors). Also the forward-only evaluation graph (logits) with the same inputs.
 */
import type { Graph } from "../../core/onnx/graph";
import { type Tensor, tensor } from "../../core/onnx/tensor";
import { buildTrainingGraphWithInfo } from "../autodiff/backward";
import {
  HEAD_BIAS,
  HEAD_WEIGHT,
  loraA,
  loraB,
  prepareTaskGraph,
  type TaskHeadSpec,
} from "../gates/checkpoint";
import { colGateInput, insertGates, rowGateInput } from "../gates/insert";
import type { LayerSelector, LinearLayer } from "../import/linears";
import { selectGatedLayers } from "../import/recognize";
import { usesOf } from "../import/shared-weights";

export type TrainMethod = "gates" | "lora" | "head";

export interface TrainGraphOptions {
  numLabels: number;
  method: TrainMethod;
  pooling?: "cls" | "mean";
  selector?: LayerSelector;
  /** Train the biases of the selected linear layers too. */
  trainBiases?: boolean;
  /** LoRA rank and scale (y += (x A) B · alpha / rank). */
  loraRank?: number;
  loraAlpha?: number;
  /**
   * Gates only: also learn rank-`adapterRank` adapters INSIDE the gates, W -> Diag(r)(W + s·AB)Diag(c) (the
   * FineGates paper's low-rank-augmented variant). Export merges s·AB into W, then prunes as usual. Scale
   * s = loraAlpha / adapterRank.
   */
  adapterRank?: number;
}

export interface TrainGraphs {
  head: TaskHeadSpec;
  layers: LinearLayer[];
  /** Forward graph with loss (for gradient checks and the training graph). */
  forward: Graph;
  training: Graph;
  eval: Graph;
  /** Trainable tensors fed as graph inputs, with their initial values (head, biases, LoRA A/B). */
  trainable: Map<string, Tensor>;
  /** Gate input names in layer order ([row, col] per layer); empty unless method = gates. */
  gateInputs: string[];
  /** Graph-input name -> training-graph output holding d(loss)/d(input). */
  gradOutputs: Map<string, string>;
  lossOutput: string;
}

export const LABELS_INPUT = "sluice_labels_onehot";
export const LOSS_OUTPUT = "sluice_loss";
export { loraA, loraB };

/** Moves an initializer to a graph input of the same name; returns its value. */
function liftToInput(g: Graph, name: string): Tensor {
  const t = g.initializers.get(name);
  if (!t) throw new Error(`trainable tensor ${name} is not an initializer of the task graph`);
  g.initializers.delete(name);
  g.addInput(name, "float32", [...t.dims]);
  return t;
}

/**
 * y += (x A) B · alpha/rank after each layer (after its bias). A, B become graph inputs. With `insideGates` (the
 * graph already has gates, insert.ts) the adapter reads the column-gated input and adds before the row gate, so
 * the layer is exactly Diag(r)(W + s·AB)Diag(c) and export can merge s·AB into W.
 */
export function insertLora(
  g: Graph,
  layers: LinearLayer[],
  rank: number,
  alpha: number,
  opts: { insideGates?: boolean } = {},
): void {
  const producers = g.producers();
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const node = (name: string) => {
    const n = byName.get(name);
    if (!n) throw new Error(`no node ${name} for the adapter`);
    return n;
  };
  const scale = g.constFloat(alpha / rank, "/sluice_lora/scale");
  for (const l of layers) {
    // A shared weight's adapter is tied like its gates: one A, B read at every use, merged once by export.
    const a = g.addInput(loraA(l.node), "float32", [l.inFeatures, rank]);
    const b = g.addInput(loraB(l.node), "float32", [rank, l.outFeatures]);
    for (const use of usesOf(l)) {
      const x = opts.insideGates ? node(use.node).inputs[0] : use.input;
      const y = opts.insideGates ? node(`${use.node}/row_gate`).inputs[0] : use.output;
      const xa = g.op("MatMul", [x, a], {}, { name: `${use.node}/lora_A` });
      const xab = g.op("MatMul", [xa, b], {}, { name: `${use.node}/lora_B` });
      const delta = g.op("Mul", [xab, scale], {}, { name: `${use.node}/lora_scale` });
      const base = g.uniqueName(`${y}_base`);
      const producer = producers.get(y);
      if (!producer) throw new Error(`no producer for ${y}`);
      producer.outputs = producer.outputs.map((o) => (o === y ? base : o));
      g.op("Add", [base, delta], {}, { name: `${use.node}/lora_add`, output: y });
    }
  }
  g.toposort();
}

/** loss = −mean_b Σ_k y_bk · log_softmax(logits)_bk, written with ops the autodiff differentiates. */
function addCrossEntropy(g: Graph, numLabels: number): void {
  g.addInput(LABELS_INPUT, "float32", ["batch", numLabels]);
  const logp = g.op("LogSoftmax", ["logits"], { axis: -1 }, { name: "/sluice_loss/LogSoftmax" });
  const picked = g.op("Mul", [logp, LABELS_INPUT], {}, { name: "/sluice_loss/Mul" });
  // ReduceMean over all batch·K elements, times K = mean over the batch of the per-example sum.
  const mean = g.op("ReduceMean", [picked], { keepdims: 0 }, { name: "/sluice_loss/ReduceMean" });
  const scaled = g.op(
    "Mul",
    [mean, g.constFloat(numLabels, "/sluice_loss/K")],
    {},
    { name: "/sluice_loss/MulK" },
  );
  g.op("Neg", [scaled], {}, { name: "/sluice_loss/Neg", output: LOSS_OUTPUT });
  g.outputs.push({ name: LOSS_OUTPUT, dtype: "float32", shape: [] });
}

export function buildTrainGraphs(base: Graph, opts: TrainGraphOptions): TrainGraphs {
  const { graph: task, head } = prepareTaskGraph(base, opts.numLabels, opts.pooling ?? "cls");
  const g = task;
  const layers = opts.method === "head" ? [] : selectGatedLayers(g, opts.selector);
  const trainable = new Map<string, Tensor>();

  // The head: our added classifier, or the model's own last linear producing `logits`.
  const headTensors = head.kind === "linear" ? [HEAD_WEIGHT, HEAD_BIAS] : modelHeadTensors(g);
  for (const name of headTensors) trainable.set(name, liftToInput(g, name));
  if (opts.trainBiases && opts.method !== "head")
    for (const l of layers)
      if (l.bias && !trainable.has(l.bias)) trainable.set(l.bias, liftToInput(g, l.bias));

  const gateInputs: string[] = [];
  // Standard LoRA init: A small random (seeded by the loop, see initLora), B = 0 so training starts at the base.
  const addLoraTensors = (rank: number) => {
    for (const l of layers) {
      trainable.set(loraA(l.node), tensor("float32", [l.inFeatures, rank]));
      trainable.set(loraB(l.node), tensor("float32", [rank, l.outFeatures]));
    }
  };
  if (opts.method === "gates") {
    insertGates(g, layers);
    for (const l of layers) gateInputs.push(rowGateInput(l.node), colGateInput(l.node));
    if (opts.adapterRank) {
      insertLora(g, layers, opts.adapterRank, opts.loraAlpha ?? 2 * opts.adapterRank, { insideGates: true });
      addLoraTensors(opts.adapterRank);
    }
  } else if (opts.method === "lora") {
    const rank = opts.loraRank ?? 8;
    insertLora(g, layers, rank, opts.loraAlpha ?? 2 * rank);
    addLoraTensors(rank);
  }

  const evalGraph = g.clone();
  evalGraph.outputs = [{ name: "logits", dtype: "float32", shape: ["batch", opts.numLabels] }];
  evalGraph.cleanup();

  const forward = g.clone();
  forward.outputs = [{ name: "logits", dtype: "float32", shape: ["batch", opts.numLabels] }];
  addCrossEntropy(forward, opts.numLabels);

  const wrt = [...gateInputs, ...trainable.keys()];
  const built = buildTrainingGraphWithInfo(forward, {
    loss: LOSS_OUTPUT,
    wrt,
    keepOutputs: [LOSS_OUTPUT, "logits"],
  });
  return {
    head,
    layers,
    forward,
    training: built.graph,
    eval: evalGraph,
    trainable,
    gateInputs,
    gradOutputs: built.gradients,
    lossOutput: LOSS_OUTPUT,
  };
}

/** The initializers of the linear layer producing a model's own `logits` (weight and bias). */
function modelHeadTensors(g: Graph): string[] {
  const producers = g.producers();
  let node = producers.get("logits");
  while (node?.op === "Identity") node = producers.get(node.inputs[0]);
  const isInit = (n: string | undefined): n is string => !!n && g.initializers.has(n);
  if (node?.op === "Gemm" || node?.op === "MatMul") return node.inputs.slice(1).filter(isInit);
  if (node?.op === "Add") {
    const bias = node.inputs.find(isInit);
    const mm = producers.get(node.inputs.find((i) => !isInit(i)) ?? "");
    if (bias && mm?.op === "MatMul" && isInit(mm.inputs[1])) return [mm.inputs[1], bias];
  }
  throw new Error("cannot find the linear layer that produces the model's logits");
}
