/**
 * What training produces and export consumes: evaluation gates per layer plus the trained tensors (task head,
 * biases). With the base model it determines the pruned model completely; it is small enough to commit.
 */
import { z } from "zod";
import type { Graph } from "../../core/onnx/graph";
import { float } from "../../core/onnx/graph";
import { type Tensor, tensor } from "../../core/onnx/tensor";

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
  task: z.object({ name: z.string(), labels: z.array(z.string()).min(2) }),
  head: TaskHeadSpec,
  /** Gate method (finegates, finegates-binarized, hardconcrete, ...) and its settings, for the manifest. */
  method: z.string(),
  settings: z.record(z.string(), z.unknown()).default({}),
  seed: z.number().int(),
  step: z.number().int().nonnegative(),
  /** Evaluation gates in [0, 1]: exactly 0 means the row/column is removed by export. */
  layers: z.array(z.object({ node: z.string(), rowGate: z.array(z.number()), colGate: z.array(z.number()) })),
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
  if (logits && logits.shape?.at(-1) === numLabels) return { graph: g, head: { kind: "model" } };
  const hiddenOut = g.outputs.find((o) => o.name === "last_hidden_state");
  const hidden = hiddenOut?.shape?.at(-1);
  if (!hiddenOut || typeof hidden !== "number") {
    throw new Error(
      "base model has neither `logits` with one column per label nor `last_hidden_state` [batch, seq, hidden]",
    );
  }
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

/** Re-creates the task graph recorded in a checkpoint and loads its trained tensors. */
export function applyCheckpointParams(base: Graph, ckpt: GateCheckpoint): Graph {
  const { graph } =
    ckpt.head.kind === "model"
      ? { graph: base.clone() }
      : prepareTaskGraph(base, ckpt.task.labels.length, ckpt.head.pooling);
  for (const [name, t] of Object.entries(ckpt.params)) {
    const existing = graph.initializers.get(name);
    if (existing && existing.dims.join() !== t.dims.join()) {
      throw new Error(`checkpoint tensor ${name} has dims [${t.dims}], the model's has [${existing.dims}]`);
    }
    graph.initializers.set(name, tensorFromJson(t));
  }
  return graph;
}
