import type { Manifest } from "../../src/core/manifest";

const hex = (c: string) => c.repeat(64);

/** A valid manifest for tests; callers mutate the copy they get. */
export function exampleManifest(): Manifest {
  return {
    schemaVersion: 1,
    model: { name: "spam", task: "spam" },
    base: { name: "sluice-base-mini", sha256: hex("a") },
    artifact: { file: "model.onnx", sha256: hex("b"), bytes: 1234 },
    io: {
      inputs: [
        { name: "input_ids", datatype: "INT64", shape: [-1, -1] },
        { name: "attention_mask", datatype: "INT64", shape: [-1, -1] },
      ],
      outputs: [{ name: "logits", datatype: "FP32", shape: [-1, 2] }],
    },
    labels: ["ham", "spam"],
    sparsity: {
      target: 0.4,
      removed: 0.4,
      params: 600,
      baseParams: 1000,
      flopsPerToken: 1200,
      baseFlopsPerToken: 2000,
    },
    metrics: { accuracy: 0.97, others: {}, evalSet: { name: "spam/test", sha256: hex("c"), size: 600 } },
    latency: {
      p50Ms: 3.1,
      p95Ms: 4.2,
      batch: 1,
      seqLen: 128,
      runtime: "onnxruntime-node 1.30.0 cpu 1 thread",
    },
    training: {
      method: "finegates",
      hyperparameters: { lambda: 50 },
      seed: 1,
      steps: 100,
      trainableParams: 5000,
      createdAt: "2026-11-29T00:00:00.000Z",
    },
  };
}
