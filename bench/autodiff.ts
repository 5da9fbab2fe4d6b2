/**
 * Forward vs forward+backward time of autodiff training graphs on the reference encoder, run by
 * onnxruntime-node (CPU). Three gradient sets: gates only (a row gate vector multiplied into every linear
 * layer's output, weights frozen: the FineGates case), the classifier head only, and every float weight.
 * Medians of interleaved runs; prints a table and writes bench-results/autodiff.json.
 *
 *   npm run bench:autodiff -- [--batch 16] [--seq 64] [--runs 20] [--threads 2]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { buildEncoder, REFERENCE_ENCODER } from "../src/core/models/encoder";
import { encodeModel, type Graph } from "../src/core/onnx";
import { Rng } from "../src/core/random";
import { buildTrainingGraph, promoteInitializers } from "../src/trainer-node/autodiff/backward";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    batch: { type: "string", default: "16" },
    seq: { type: "string", default: "64" },
    runs: { type: "string", default: "20" },
    threads: { type: "string", default: "2" },
  },
});
const [batch, seq, runs, threads] = [args.batch, args.seq, args.runs, args.threads].map(Number);

/** Multiplies every 2-D-weight MatMul/Gemm output by a gate vector graph input (weights stay frozen). */
function withRowGates(g: Graph): { graph: Graph; gates: Map<string, number> } {
  const gates = new Map<string, number>();
  const gated = g.clone();
  const nodes = [...gated.nodes];
  for (const n of nodes) {
    if (n.op !== "MatMul" && n.op !== "Gemm") continue;
    const w = gated.initializers.get(n.inputs[1]);
    if (w?.dims.length !== 2) continue;
    const width = n.op === "Gemm" && n.attrs.transB?.value === 1 ? w.dims[0] : w.dims[1];
    const gate = gated.addInput(`gate:${n.name}`, "float32", [width]);
    const out = n.outputs[0];
    const raw = `${out}/ungated`;
    n.outputs[0] = raw;
    gated.addNode("Mul", [raw, gate], {}, { outputs: [out], name: `${n.name}/gate` });
    gates.set(gate, width);
  }
  gated.toposort();
  return { graph: gated, gates };
}

/** Mean cross-entropy against fixed labels: LogSoftmax + one-hot Mul + ReduceSum + Neg + ReduceMean. */
function withLoss(g: Graph, numLabels: number): Graph {
  const out = g.clone();
  const onehot = out.addInput("labels_onehot", "float32", ["batch", numLabels]);
  const lsm = out.op("LogSoftmax", ["logits"], { axis: -1 });
  const picked = out.op("ReduceSum", [out.op("Mul", [lsm, onehot]), out.constInts([1])], { keepdims: 0 });
  out.op("ReduceMean", [out.op("Neg", [picked])], { keepdims: 0 }, { output: "loss" });
  out.outputs = [{ name: "loss", dtype: "float32", shape: [] }];
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const cfg = REFERENCE_ENCODER;
  const rng = new Rng(1);
  const base = buildEncoder(cfg);
  const { graph: gated, gates } = withRowGates(base);
  const lossGraph = withLoss(gated, cfg.numLabels);

  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from({ length: batch * seq }, () => BigInt(1 + rng.int(cfg.vocabSize - 1))),
      [batch, seq],
    ),
    attention_mask: new ort.Tensor("int64", new BigInt64Array(batch * seq).fill(1n), [batch, seq]),
    labels_onehot: new ort.Tensor(
      "float32",
      Float32Array.from({ length: batch * cfg.numLabels }, (_, i) => (i % cfg.numLabels === 0 ? 1 : 0)),
      [batch, cfg.numLabels],
    ),
  };
  for (const [name, width] of gates)
    feeds[name] = new ort.Tensor("float32", new Float32Array(width).fill(0.9), [width]);

  const head = [...lossGraph.initializers.keys()].filter((n) => /classifier\.(weight|bias)$/.test(n));
  const allWeights = lossGraph.clone();
  const weightNames = [...allWeights.initializers]
    .filter(([, t]) => t.dtype === "float32" && t.dims.length >= 1 && t.data.length > 1)
    .map(([n]) => n);
  const weightValues = promoteInitializers(allWeights, weightNames);
  const weightFeeds = Object.fromEntries(
    [...weightValues].map(([n, t]) => [n, new ort.Tensor("float32", t.data as Float32Array, t.dims)]),
  );

  const t0 = performance.now();
  const graphs: [string, Graph, Record<string, ort.Tensor>][] = [
    ["forward (loss only)", lossGraph, feeds],
    [
      "fwd+bwd: gates only (frozen weights)",
      buildTrainingGraph(lossGraph, { loss: "loss", wrt: [...gates.keys()] }),
      feeds,
    ],
    ["fwd+bwd: classifier head only", buildTrainingGraph(lossGraph, { loss: "loss", wrt: head }), feeds],
    [
      "fwd+bwd: all weights + gates",
      buildTrainingGraph(allWeights, { loss: "loss", wrt: [...weightNames, ...gates.keys()] }),
      { ...feeds, ...weightFeeds },
    ],
  ];
  const buildMs = performance.now() - t0;

  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1 };
  const sessions = await Promise.all(
    graphs.map(([, g]) => ort.InferenceSession.create(encodeModel(g), options)),
  );
  const times: number[][] = graphs.map(() => []);
  for (let r = 0; r < runs + 3; r++)
    for (const [i, s] of sessions.entries()) {
      const start = performance.now();
      await s.run(graphs[i][2]);
      if (r >= 3) times[i].push(performance.now() - start); // 3 warm-up rounds
    }
  const fwd = median(times[0]);
  const rows = graphs.map(([name, g], i) => ({
    graph: name,
    nodes: g.nodes.length,
    medianMs: Number(median(times[i]).toFixed(2)),
    ratioToForward: Number((median(times[i]) / fwd).toFixed(2)),
  }));
  console.log(
    `reference encoder ${cfg.layers}L d${cfg.hidden} h${cfg.heads} ffn${cfg.ffn} vocab ${cfg.vocabSize}; ` +
      `batch ${batch} x seq ${seq}; onnxruntime-node ${ort.env.versions.node ?? ""} CPU, ${threads} threads; ` +
      `${runs} interleaved runs; training graphs built in ${buildMs.toFixed(0)} ms`,
  );
  console.table(rows);
  mkdirSync("bench-results", { recursive: true });
  const file = "bench-results/autodiff.json";
  writeFileSync(
    file,
    JSON.stringify(
      { encoder: cfg, batch, seq, threads, runs, buildMs, rows, at: new Date().toISOString() },
      null,
      2,
    ),
  );
  console.log(`wrote ${file}`);
  updateBenchmarksPage();
}

await main();
