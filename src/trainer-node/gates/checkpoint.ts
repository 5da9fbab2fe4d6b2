/**
 * What training produces and export consumes: evaluation gates per layer plus the trained tensors (task head,
 * biases). With the base model it determines the pruned model completely; it is small enough to commit.
 */
import { z } from "zod";
import type { Graph } from "../../core/onnx/graph";
import { float } from "../../core/onnx/graph";
import { type Tensor, tensor } from "../../core/onnx/tensor";
import { findLinearLayers } from "../import/linears";

export const CHECKPOINT_FORMAT = "sluice-gates/1";

const TensorJson = z.object({ dims: z.array(z.number().int().nonnegative()), data: z.array(z.number()) });

export const TaskHeadSpec = z.discriminatedUnion("kind", [
  /** The base model already outputs `logits` with one column per label. */
  z.object({ kind: z.literal("model") }),
  /** A linear classifier added on the first token (`cls`) or the masked mean (`mean`) of `last_hidden_state`. */
  z.object({
    kind: z.literal("linear"),
    pooling: z.enum(["cls", "mean"]),
    hidden: z.number().int().positive(),
  }),
]);
export type TaskHeadSpec = z.infer<typeof TaskHeadSpec>;

export const GateCheckpoint = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  base: z.object({ name: z.string(), sha256: z.string() }),
  task: z.object({
    name: z.string(),
    labels: z.array(z.string()).min(2),
    /**
     * The data fields the examples were read from (data/fields.ts), when the task came from a data file;
     * `textPair` set means the run was trained on sentence pairs, which export evaluates and records too.
     */
    fields: z.object({ text: z.string(), textPair: z.string().optional() }).optional(),
  }),
  head: TaskHeadSpec,
  /** Gate method (finegates, finegates-binarized, hardconcrete, ...) and its settings, for the manifest. */
  method: z.string(),
  settings: z.record(z.string(), z.unknown()).default({}),
  /**
   * Low-rank adapters learned inside the gates (`<layer>::lora_A` [in, rank] and `<layer>::lora_B` [rank, out] in
   * `params`): the layer is Diag(r)(W + alpha/rank · AB)Diag(c), and export merges the product into W.
   */
  adapters: z.object({ rank: z.number().int().positive(), alpha: z.number().positive() }).optional(),
  seed: z.number().int(),
  step: z.number().int().nonnegative(),
  /**
   * Evaluation gates in [0, 1]: exactly 0 means the row/column is removed by export. A weight shared by several
   * linears (ALBERT) has one entry, named by its first use, with `uses` listing every linear it gates (tied).
   */
  layers: z.array(
    z.object({
      node: z.string(),
      rowGate: z.array(z.number()),
      colGate: z.array(z.number()),
      uses: z.array(z.string()).optional(),
    }),
  ),
  /** Trained tensors that replace (or add) initializers of the task graph. */
  params: z.record(z.string(), TensorJson).default({}),
});
export type GateCheckpoint = z.infer<typeof GateCheckpoint>;

export function tensorToJson(t: Tensor): z.infer<typeof TensorJson> {
  return { dims: [...t.dims], data: Array.from(t.data as Float32Array) };
}

export function tensorFromJson(j: z.infer<typeof TensorJson>): Tensor {
  return tensor("float32", j.dims, Float32Array.from(j.data));
}

export const HEAD_WEIGHT = "sluice_head.classifier.weight";
export const HEAD_BIAS = "sluice_head.classifier.bias";

/**
 * Turns a base encoder into the task graph the gates are trained on: keeps the model's own `logits` when
 * they have one column per label, otherwise adds a linear classifier on `last_hidden_state` (initialised
 * to zero: the head starts neutral and is learned). Deterministic, so export re-applies it to the base.
 */
export function prepareTaskGraph(
  base: Graph,
  numLabels: number,
  pooling: "cls" | "mean" = "cls",
): { graph: Graph; head: TaskHeadSpec } {
  const g = base.clone();
  const logits = g.outputs.find((o) => o.name === "logits");
  if (logits && logits.shape?.at(-1) === numLabels) {
    g.outputs = [logits];
    return { graph: g.cleanup(), head: { kind: "model" } };
  }
  const hiddenOut = g.outputs.find((o) => o.name === "last_hidden_state");
  const hidden = hiddenOut?.shape?.at(-1);
  if (!hiddenOut || typeof hidden !== "number") {
    throw new Error(
      "base model has neither `logits` with one column per label nor `last_hidden_state` [batch, seq, hidden]",
    );
  }
  // The model's own head (of another width) goes first: its `logits` would clash with the new head's.
  g.outputs = [hiddenOut];
  g.cleanup();
  let pooled: string;
  if (pooling === "cls") {
    pooled = g.op(
      "Gather",
      ["last_hidden_state", g.constant(tensor("int64", [], [0]), "/sluice_head/cls_index")],
      { axis: 1 },
      { name: "/sluice_head/Gather" },
    );
  } else {
    const m = g.op(
      "Cast",
      [
        g.op(
          "Unsqueeze",
          ["attention_mask", g.constInts([2], "/sluice_head/axes")],
          {},
          { name: "/sluice_head/Unsqueeze" },
        ),
      ],
      { to: 1 },
      { name: "/sluice_head/Cast" },
    );
    const sum = g.op(
      "ReduceSum",
      [
        g.op("Mul", ["last_hidden_state", m], {}, { name: "/sluice_head/Mul" }),
        g.constInts([1], "/sluice_head/axis1"),
      ],
      { keepdims: 0 },
      { name: "/sluice_head/ReduceSum" },
    );
    const count = g.op(
      "ReduceSum",
      [m, g.constInts([1], "/sluice_head/axis1b")],
      { keepdims: 0 },
      { name: "/sluice_head/ReduceSum_1" },
    );
    pooled = g.op("Div", [sum, count], {}, { name: "/sluice_head/Div" });
  }
  g.addInitializer(HEAD_WEIGHT, tensor("float32", [numLabels, hidden]));
  g.addInitializer(HEAD_BIAS, tensor("float32", [numLabels]));
  g.op(
    "Gemm",
    [pooled, HEAD_WEIGHT, HEAD_BIAS],
    { alpha: float(1), beta: float(1), transB: 1 },
    { name: "/sluice_head/classifier/Gemm", output: "logits" },
  );
  g.outputs = [{ name: "logits", dtype: "float32", shape: ["batch", numLabels] }];
  g.cleanup();
  return { graph: g, head: { kind: "linear", pooling, hidden } };
}

const ADAPTER_A = "::lora_A";
const ADAPTER_B = "::lora_B";
/** Names of a layer's LoRA tensors, as graph inputs in training and as keys of a checkpoint's `params`. */
export const loraA = (layer: string) => `${layer}${ADAPTER_A}`;
export const loraB = (layer: string) => `${layer}${ADAPTER_B}`;

/**
 * W += alpha/rank · A·B for every adapter pair in the checkpoint, in float64 then rounded once to float32 (the
 * training graph rounds (xA)B instead, so merged and unmerged logits differ by float32 noise only). A new tensor
 * replaces the weight: the base graph's tensors may be shared with its clones.
 */
function mergeAdapters(graph: Graph, ckpt: GateCheckpoint): void {
  const names = Object.keys(ckpt.params).filter((n) => n.endsWith(ADAPTER_A) || n.endsWith(ADAPTER_B));
  if (names.length === 0) return;
  if (!ckpt.adapters) throw new Error("checkpoint has adapter tensors but no `adapters` settings");
  const scale = ckpt.adapters.alpha / ckpt.adapters.rank;
  const layers = new Map(findLinearLayers(graph).map((l) => [l.node, l]));
  for (const aName of names.filter((n) => n.endsWith(ADAPTER_A))) {
    const node = aName.slice(0, -ADAPTER_A.length);
    const layer = layers.get(node);
    const bJson = ckpt.params[loraB(node)];
    if (!layer)
      throw new Error(`checkpoint has an adapter for ${node}, which is not a linear layer of the model`);
    if (!bJson) throw new Error(`checkpoint has ${aName} but no ${loraB(node)}`);
    const a = tensorFromJson(ckpt.params[aName]);
    const b = tensorFromJson(bJson);
    const [inF, outF, r] = [layer.inFeatures, layer.outFeatures, ckpt.adapters.rank];
    if (a.dims.join() !== `${inF},${r}` || b.dims.join() !== `${r},${outF}`)
      throw new Error(
        `adapter of ${node}: A [${a.dims}] and B [${b.dims}] do not fit a [${inF}, ${outF}] layer`,
      );
    const w = graph.initializers.get(layer.weight)!;
    // A weight shared by linears only (ALBERT) trained one tied adapter for all of them: merged once, exactly.
    const others = graph.nodes.filter(
      (n) => n.inputs.includes(layer.weight) && !(layers.has(n.name) && n.inputs[1] === layer.weight),
    );
    if (others.length > 0)
      throw new Error(
        `cannot merge an adapter into ${layer.weight}: ${others[0].name} (${others[0].op}) reads it too`,
      );
    const A = a.data as Float32Array;
    const B = b.data as Float32Array;
    const W = Float32Array.from(w.data as Float32Array);
    for (let i = 0; i < inF; i++)
      for (let j = 0; j < outF; j++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += A[i * r + k] * B[k * outF + j];
        // Weight layout: [in, out] (MatMul, Gemm transB=0) or [out, in] (Gemm transB=1).
        W[layer.weightTransposed ? j * inF + i : i * outF + j] += scale * d;
      }
    graph.initializers.set(layer.weight, tensor("float32", [...w.dims], W));
  }
}

/**
 * Re-creates the task graph recorded in a checkpoint and loads its trained tensors (adapters merged into their
 * layers' weights).
 */
export function applyCheckpointParams(base: Graph, ckpt: GateCheckpoint): Graph {
  const { graph } =
    ckpt.head.kind === "model"
      ? { graph: base.clone() }
      : prepareTaskGraph(base, ckpt.task.labels.length, ckpt.head.pooling);
  mergeAdapters(graph, ckpt);
  for (const [name, t] of Object.entries(ckpt.params)) {
    if (name.endsWith(ADAPTER_A) || name.endsWith(ADAPTER_B)) continue;
    const existing = graph.initializers.get(name);
    if (existing && existing.dims.join() !== t.dims.join()) {
      throw new Error(`checkpoint tensor ${name} has dims [${t.dims}], the model's has [${existing.dims}]`);
    }
    graph.initializers.set(name, tensorFromJson(t));
  }
  return graph;
}
