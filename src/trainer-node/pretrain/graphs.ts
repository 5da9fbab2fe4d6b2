/**
 * The graphs masked-language-model pretraining runs, derived from a BERT-style encoder with Hugging Face's MLM
 * head (`BertForMaskedLM` as exported: transform dense + GELU + LayerNorm, decoder tied to the word embeddings,
 * output `mlm_logits`).
 *
 * Only ~15% of tokens carry a label, and the vocabulary projection is the largest matrix product of a small
 * model, so the head runs on the selected positions alone: the final hidden states are flattened to
 * [batch·seq, hidden] and Gathered at `mlm_positions` [N] before the head, giving logits [N, vocab]. Every
 * float weight becomes a graph input so one session serves all steps while AdamW updates the arrays in Node.
 */
import type { Graph } from "../../core/onnx/graph";
import type { Tensor } from "../../core/onnx/tensor";
import { buildTrainingGraphWithInfo, promoteInitializers } from "../autodiff/backward";

export const MLM_POSITIONS = "mlm_positions";
export const MLM_LABELS = "mlm_labels";
export const MLM_LOSS = "mlm_loss";
export const MLM_PREDICTIONS = "mlm_predictions";
/** The first node of the MLM head, as the exporter names it; its first input is the encoder's output. */
export const MLM_HEAD_ENTRY = "/cls/predictions/transform/dense/MatMul";
const MLM_HEAD_PREFIX = "cls.predictions.";

export interface MlmGraphs {
  /** Forward graph: loss and predictions at the selected positions (evaluation). */
  forward: Graph;
  /** Forward + backward: loss, predictions, then grad:<name> per trainable tensor. */
  training: Graph;
  /** Trainable tensors (every float initializer of rank ≥ 1) and their initial values. */
  trainable: Map<string, Tensor>;
  gradOutputs: Map<string, string>;
  hidden: number;
}

/** The node feeding the MLM head and the hidden size, or a clear error when the model has no MLM head. */
export function findMlmHead(base: Graph): { hiddenState: string; hidden: number } {
  const entry = base.nodes.find((n) => n.name === MLM_HEAD_ENTRY);
  const weight = entry && base.initializers.get(entry.inputs[1]);
  if (!entry || !weight)
    throw new Error(
      `the model has no masked-language-model head (no node ${MLM_HEAD_ENTRY}); ` +
        "create one with `sluice base init` (it writes the BertForMaskedLM layout)",
    );
  return { hiddenState: entry.inputs[0], hidden: weight.dims[0] };
}

/** Tensors trained in pretraining: all float weights (rank ≥ 1; rank-0 floats are exporter constants). */
export function trainableTensorNames(g: Graph): string[] {
  return [...g.initializers]
    .filter(([, t]) => t.dtype === "float32" && t.dims.length >= 1)
    .map(([name]) => name);
}

export function buildMlmGraphs(base: Graph): MlmGraphs {
  const { hiddenState, hidden } = findMlmHead(base);
  const g = base.clone();
  const positions = g.addInput(MLM_POSITIONS, "int64", ["masked"]);
  const labels = g.addInput(MLM_LABELS, "int64", ["masked"]);
  const flat = g.op(
    "Reshape",
    [hiddenState, g.constInts([-1, hidden], "/sluice_mlm/flat_shape")],
    {},
    {
      name: "/sluice_mlm/Reshape",
    },
  );
  const selected = g.op("Gather", [flat, positions], { axis: 0 }, { name: "/sluice_mlm/Gather" });
  const entry = g.nodes.find((n) => n.name === MLM_HEAD_ENTRY)!;
  entry.inputs[0] = selected;
  g.op(
    "SoftmaxCrossEntropyLoss",
    ["mlm_logits", labels],
    { reduction: "mean" },
    {
      name: "/sluice_mlm/SoftmaxCrossEntropyLoss",
      output: MLM_LOSS,
    },
  );
  g.op(
    "ArgMax",
    ["mlm_logits"],
    { axis: 1, keepdims: 0 },
    {
      name: "/sluice_mlm/ArgMax",
      output: MLM_PREDICTIONS,
    },
  );
  g.outputs = [
    { name: MLM_LOSS, dtype: "float32", shape: [] },
    { name: MLM_PREDICTIONS, dtype: "int64", shape: ["masked"] },
  ];
  g.toposort();
  const trainable = promoteInitializers(g, trainableTensorNames(g));
  const built = buildTrainingGraphWithInfo(g, {
    loss: MLM_LOSS,
    wrt: [...trainable.keys()],
    keepOutputs: [MLM_PREDICTIONS],
  });
  return { forward: g, training: built.graph, trainable, gradOutputs: built.gradients, hidden };
}

/**
 * The pretrained encoder without its MLM head, as `BertModel` exports it: output `last_hidden_state`
 * [batch, sequence, hidden], the trained weights as initializers. The trainer adds its classifier to this.
 */
export function encoderWithoutHead(base: Graph, weights: ReadonlyMap<string, Float32Array>): Graph {
  const { hiddenState, hidden } = findMlmHead(base);
  const g = base.clone();
  g.outputs = [];
  g.op("Identity", [hiddenState], {}, { name: "/Identity_out", output: "last_hidden_state" });
  g.addOutput("last_hidden_state", "float32", ["batch", "sequence", hidden]);
  g.cleanup();
  for (const [name, t] of g.initializers) {
    const w = weights.get(name);
    if (!w) continue;
    if (w.length !== t.data.length) throw new Error(`trained tensor ${name} has the wrong size`);
    g.initializers.set(name, { ...t, data: Float32Array.from(w) });
  }
  for (const name of g.initializers.keys())
    if (name.startsWith(MLM_HEAD_PREFIX)) throw new Error(`MLM head tensor ${name} left in the encoder`);
  return g;
}
