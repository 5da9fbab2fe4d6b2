/**
 * Gates with low-rank adapters inside them (the FineGates paper's LoRA-augmented variant): the layer is
 * Diag(r)(W + s·AB)Diag(c), export merges s·AB into W and prunes. The exported model must compute what the
 * training engine's own (unmerged) evaluation graph computes, and must remove what training reported.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeModel } from "../../src/core/onnx/codec";
import { exportPrunedModel } from "../../src/trainer-node/export/export";
import { feedsFor } from "../../src/trainer-node/export/run";
import { tensorFromJson } from "../../src/trainer-node/gates/checkpoint";
import { makeBatch } from "../../src/trainer-node/train/data";
import { buildTrainGraphs, loraB } from "../../src/trainer-node/train/graphs";
import { trainGates } from "../../src/trainer-node/train/loop";
import { TrainerSession } from "../../src/trainer-node/train/session";
import { signalTask, signalTrainOptions, smallEncoder } from "./train-fixtures";

const base = smallEncoder();

describe("gates with adapters", () => {
  it("trains adapters inside the gates, and export merges them into a smaller model equal to the unmerged one", async () => {
    const opts = {
      ...signalTrainOptions(base, 1e-2),
      method: "gates" as const,
      gates: "hardconcrete" as const,
      targetSparsity: 0.3,
      adapterRank: 4,
      steps: 150,
      recoverySteps: 30,
      evalEvery: 50,
    };
    const withAdapters = await trainGates(opts);
    const ckpt = withAdapters.checkpoint;
    expect(ckpt.adapters).toEqual({ rank: 4, alpha: 8 });

    // The adapters learned something (B starts at zero), and they are what the extra trainable parameters are.
    const graphs = buildTrainGraphs(base, {
      numLabels: 2,
      method: "gates",
      pooling: "mean",
      trainBiases: true,
      adapterRank: 4,
    });
    const b = tensorFromJson(ckpt.params[loraB(graphs.layers[0].node)]).data as Float32Array;
    expect(b.some((x) => Math.abs(x) > 1e-3)).toBe(true);
    const plain = await trainGates({ ...opts, adapterRank: undefined });
    const adapterParams = graphs.layers.reduce((s, l) => s + 4 * (l.inFeatures + l.outFeatures), 0);
    expect(withAdapters.trainableParams - plain.trainableParams).toBe(adapterParams);

    // Export merges, prunes and removes exactly what training reported.
    const { graph, report } = await exportPrunedModel(base, ckpt);
    expect(report.removedFraction).toBeCloseTo(withAdapters.removedFraction, 12);
    expect(Math.abs(report.removedFraction - 0.3)).toBeLessThanOrEqual(0.02);

    // The pruned, merged model against the training engine's evaluation graph (adapters as separate MatMuls).
    const params = new Map(
      [...graphs.trainable.keys()].map((n) => [n, tensorFromJson(ckpt.params[n]).data as Float32Array]),
    );
    const engine = await TrainerSession.create(graphs, params, { threads: 1 });
    const evalGates = ckpt.layers.map((l) => ({
      node: l.node,
      row: Float32Array.from(l.rowGate),
      col: Float32Array.from(l.colGate),
    }));
    const split = signalTask(32, 9);
    const batch = makeBatch(split, [...split.ids.keys()]);
    const expected = await engine.logits(batch, evalGates);
    await engine.release();
    const exported = await ort.InferenceSession.create(encodeModel(graph));
    const out = await exported.run(
      feedsFor(graph, {
        inputIds: batch.inputIds,
        attentionMask: batch.attentionMask,
        batch: batch.batch,
        seqLen: batch.seq,
      }),
    );
    const got = out.logits.data as Float32Array;
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - expected[i]));
    expect(maxDiff).toBeLessThan(1e-4);
    // And the adapters matter: the same gates without the merge give different logits.
    const { adapters: _a, ...unmerged } = ckpt;
    const params2 = Object.fromEntries(Object.entries(ckpt.params).filter(([k]) => !k.includes("::lora_")));
    const { graph: noMerge } = await exportPrunedModel(base, { ...unmerged, params: params2 });
    const other = await (await ort.InferenceSession.create(encodeModel(noMerge))).run(
      feedsFor(noMerge, {
        inputIds: batch.inputIds,
        attentionMask: batch.attentionMask,
        batch: batch.batch,
        seqLen: batch.seq,
      }),
    );
    const diff = (other.logits.data as Float32Array).reduce(
      (m, x, i) => Math.max(m, Math.abs(x - expected[i])),
      0,
    );
    expect(diff).toBeGreaterThan(1e-3);
  });

  it("rejects a checkpoint whose adapter does not fit its layer", async () => {
    const r = await trainGates({
      ...signalTrainOptions(base, 1e-2),
      method: "gates",
      gates: "hardconcrete",
      targetSparsity: 0.2,
      adapterRank: 2,
      steps: 10,
      recoverySteps: 2,
    });
    const bad = { ...r.checkpoint, adapters: { rank: 3, alpha: 6 } };
    await expect(exportPrunedModel(base, bad)).rejects.toThrow(/do not fit/);
  });
});
