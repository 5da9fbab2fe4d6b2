/**
 * Trainer step times on the reference encoder (4 layers, d 256, 4 heads, FFN 1024), side by side in one run:
 * the plain forward, the gated forward, a FineGates training step (sample gates, training graph on ORT, chain
 * rule + regulariser, AdamW), a LoRA (rank 8) step and a head-only step; effective GFLOP/s from the MatMul/Gemm
 * FLOPs of each graph (shapes inferred statically), and the CPU's measured matmul peak through the same runtime
 * for context. Medians of interleaved runs; prints a table and writes bench-results/train.json.
 *
 *   npm run bench:train -- [--batch 16] [--seq 64] [--runs 15] [--threads 2] [--profile]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { buildEncoder, REFERENCE_ENCODER } from "../src/core/models/encoder";
import { Graph } from "../src/core/onnx";
import { inferShapes } from "../src/core/onnx/shape-inference";
import { tensor } from "../src/core/onnx/tensor";
import { Rng } from "../src/core/random";
import { FineGates } from "../src/trainer-node/gates/finegates";
import { buildTrainGraphs, type TrainGraphs } from "../src/trainer-node/train/graphs";
import { AdamW } from "../src/trainer-node/train/optimizer";
import { type Batch, createSession, TrainerSession } from "../src/trainer-node/train/session";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    batch: { type: "string", default: "16" },
    seq: { type: "string", default: "64" },
    runs: { type: "string", default: "15" },
    threads: { type: "string", default: "2" },
    profile: { type: "boolean", default: false },
  },
});
const [B, S, runs, threads] = [args.batch, args.seq, args.runs, args.threads].map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** 2·M·K·N summed over MatMul/Gemm nodes whose shapes are static once batch and sequence are fixed. */
function matmulFlops(g: Graph): number {
  const c = g.clone();
  for (const i of c.inputs) i.shape = i.shape?.map((d) => (d === "batch" ? B : d === "sequence" ? S : d));
  const shapes = inferShapes(c);
  let flops = 0;
  for (const n of c.nodes) {
    if (n.op !== "MatMul" && n.op !== "Gemm") continue;
    const a = shapes.get(n.inputs[0])?.shape;
    const y = shapes.get(n.outputs[0])?.shape;
    if (!a || !y || ![...a, ...y].every((d) => typeof d === "number"))
      throw new Error(`shape of ${n.name} is not static`);
    const transA = n.op === "Gemm" && n.attrs.transA?.value === 1;
    const k = (transA ? a.at(-2) : a.at(-1)) as number;
    flops += 2 * k * (y as number[]).reduce((p, d) => p * d, 1);
  }
  return flops;
}

function syntheticBatch(vocab: number): Batch {
  const rng = new Rng(7);
  return {
    batch: B,
    seq: S,
    inputIds: BigInt64Array.from({ length: B * S }, () => BigInt(1 + rng.int(vocab - 1))),
    attentionMask: new BigInt64Array(B * S).fill(1n),
    labels: Int32Array.from({ length: B }, (_, i) => i % 2),
  };
}

const initialParams = (g: TrainGraphs) =>
  new Map([...g.trainable].map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));

/** A big square-ish MatMul through ORT with the same thread count: the practical peak of this CPU. */
async function matmulPeak(): Promise<{ gflops: number; ms: number; shape: string }> {
  const [m, k, n] = [1024, 1024, 1024];
  const g = new Graph({ name: "peak", opset: 17 });
  g.addInput("a", "float32", [m, k]);
  g.addInitializer("w", tensor("float32", [k, n], new Rng(1).normalArray(k * n)));
  g.op("MatMul", ["a", "w"], {}, { output: "y" });
  g.addOutput("y", "float32", [m, n]);
  const s = await createSession(g, { threads });
  const feeds = { a: new ort.Tensor("float32", new Rng(2).normalArray(m * k), [m, k]) };
  const times: number[] = [];
  for (let r = 0; r < runs + 3; r++) {
    const t = performance.now();
    await s.run(feeds);
    if (r >= 3) times.push(performance.now() - t);
  }
  await s.release();
  const ms = median(times);
  return { gflops: (2 * m * k * n) / (ms * 1e6), ms, shape: `${m}x${k} · ${k}x${n}` };
}

async function main() {
  const cfg = { ...REFERENCE_ENCODER, head: "none" as const };
  const base = buildEncoder(cfg);
  const batch = syntheticBatch(cfg.vocabSize);
  const t0 = performance.now();
  const gatesG = buildTrainGraphs(base, { numLabels: 2, method: "gates" });
  const loraG = buildTrainGraphs(base, { numLabels: 2, method: "lora", loraRank: 8 });
  const headG = buildTrainGraphs(base, { numLabels: 2, method: "head" });
  const buildMs = performance.now() - t0;

  if (args.profile) mkdirSync("bench-results", { recursive: true });
  const opts = { threads, profile: args.profile, profilePrefix: "bench-results/train-profile" };
  const plain = await createSession(base, opts);
  const plainFeeds = {
    input_ids: new ort.Tensor("int64", batch.inputIds, [B, S]),
    attention_mask: new ort.Tensor("int64", batch.attentionMask, [B, S]),
  };
  const gp = initialParams(gatesG);
  const gs = await TrainerSession.create(gatesG, gp, opts);
  const shapes = gatesG.layers.map((l) => ({ node: l.node, rows: l.outFeatures, cols: l.inFeatures }));
  const method = new FineGates(shapes, { targetSparsity: 0.4, lambda: 50 }, new Rng(1));
  const gateOpt = new AdamW(new Map([...gp, ...method.params]));
  const gateGrads = new Map<string, Float32Array>(
    [...method.params].map(([k, v]) => [k, new Float32Array(v.length)]),
  );
  const lp = initialParams(loraG);
  const ls = await TrainerSession.create(loraG, lp, opts);
  const loraOpt = new AdamW(lp);
  const hp = initialParams(headG);
  const hs = await TrainerSession.create(headG, hp, opts);
  const headOpt = new AdamW(hp);

  let warmingUp = true;
  const ortMs: number[] = [];
  const nodeMs: number[] = [];
  const cases: [string, () => Promise<void>][] = [
    [
      "forward (base model)",
      async () => {
        await plain.run(plainFeeds);
      },
    ],
    [
      "forward (gated, evaluation gates)",
      async () => {
        await gs.logits(batch, method.evalGates());
      },
    ],
    [
      "gate training step (finegates)",
      async () => {
        const a = performance.now();
        const sampled = method.sample(new Rng(gateOpt.step));
        const b = performance.now();
        const out = await gs.step(batch, sampled);
        const c = performance.now();
        for (const [k, g] of out.paramGrads) gateGrads.set(k, g);
        method.backward(out.gateGrads, gateGrads);
        gateOpt.update(gateGrads);
        if (!warmingUp) {
          nodeMs.push(b - a + performance.now() - c);
          ortMs.push(c - b);
        }
      },
    ],
    [
      "LoRA step (rank 8)",
      async () => {
        const out = await ls.step(batch);
        loraOpt.update(out.paramGrads);
      },
    ],
    [
      "head-only step",
      async () => {
        const out = await hs.step(batch);
        headOpt.update(out.paramGrads);
      },
    ],
  ];
  const times: number[][] = cases.map(() => []);
  for (let r = 0; r < runs + 3; r++) {
    warmingUp = r < 3;
    for (const [i, [, run]] of cases.entries()) {
      const t = performance.now();
      await run();
      if (r >= 3) times[i].push(performance.now() - t);
    }
  }
  const peak = await matmulPeak();

  const fwdFlops = matmulFlops(base);
  const flops = [
    fwdFlops,
    matmulFlops(gatesG.eval),
    matmulFlops(gatesG.training),
    matmulFlops(loraG.training),
    matmulFlops(headG.training),
  ];
  const graphsOf = [base, gatesG.eval, gatesG.training, loraG.training, headG.training];
  const fwd = median(times[0]);
  const rows = cases.map(([name], i) => {
    const ms = median(times[i]);
    return {
      case: name,
      nodes: graphsOf[i].nodes.length,
      medianMs: Number(ms.toFixed(1)),
      xForward: Number((ms / fwd).toFixed(2)),
      gflop: Number((flops[i] / 1e9).toFixed(2)),
      gflopPerS: Number((flops[i] / (ms * 1e6)).toFixed(1)),
    };
  });
  const gateStep = rows[2].medianMs;
  console.log(
    `reference encoder ${cfg.layers}L d${cfg.hidden} h${cfg.heads} ffn${cfg.ffn}; batch ${B} x seq ${S}; ` +
      `onnxruntime-node ${ort.env.versions.node ?? ""} CPU, ${threads} threads (${os.availableParallelism()} cores, ` +
      `load average ${os.loadavg()[0].toFixed(1)}); ${runs} interleaved runs; graphs built in ${buildMs.toFixed(0)} ms`,
  );
  console.table(rows);
  console.log(
    `gate step: ORT ${median(ortMs).toFixed(1)} ms + Node (sample, chain rule, regulariser, AdamW) ${median(nodeMs).toFixed(1)} ms`,
  );
  console.log(`matmul peak (${peak.shape}, ${threads} threads): ${peak.gflops.toFixed(1)} GFLOP/s`);
  console.log(`target: gate step < 250 ms → ${gateStep < 250 ? "met" : "NOT met"} (${gateStep} ms)`);

  if (args.profile) {
    // ORT writes one trace per session (prefix set in createSession) when profiling ends.
    plain.endProfiling();
    (gs as unknown as { training: ort.InferenceSession }).training.endProfiling();
    console.log("profiles: bench-results/train-profile_*.json (chrome://tracing format)");
  }
  mkdirSync("bench-results", { recursive: true });
  const file = "bench-results/train.json";
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        encoder: cfg,
        batch: B,
        seq: S,
        threads,
        runs,
        loadAverage: os.loadavg()[0],
        buildMs,
        rows,
        gateStepBreakdownMs: { ort: median(ortMs), node: median(nodeMs) },
        matmulPeak: peak,
        targetGateStepMs: 250,
        at: new Date().toISOString(),
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${file}`);
  updateBenchmarksPage();
  await Promise.all([plain.release(), gs.release(), ls.release(), hs.release()]);
}

await main();
