/**
 * `sluice quantize <variant dir> --out <dir>`: the int8 twin of an exported fp32 variant (same sparsity, same
 * head, linear-layer weights int8 per output channel, dynamic activations; export/quantize.ts), evaluated on the
 * same split as the fp32 variant so its per-example evidence pairs with it, timed against it, and written as a
 * variant directory of its own (model.onnx, tokenizer.json, manifest.json with precision "int8",
 * export-report.json). `sluice export --precision int8` does the same in one step from a checkpoint.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  MANIFEST_SCHEMA_VERSION,
  type Manifest,
  manifestGraphOptimization,
  parseManifest,
} from "../../core/manifest";
import { decodeModel, encodeModel } from "../../core/onnx/codec";
import type { Graph } from "../../core/onnx/graph";
import { edgeFigures } from "../export/edge-latency";
import { GELU_FORMS, type GeluForm, tanhGelu } from "../export/gelu";
import { compareLatency } from "../export/latency";
import { DEFAULT_GRAPH_OPTIMIZATION, type GraphOptimization, optimizeForEdge } from "../export/optimize";
import { checkEvalInput, loadEvalSet, logOptimization, measureEdgePair } from "../export/pipeline";
import { precisionOf, quantizeGraph } from "../export/quantize";
import { fixedSequenceOf } from "../export/run";
import { type EvalSet, evaluateVariant, quantizationRecord, sha256Hex } from "../export/variant";
import { type Command, UsageError } from "./command";
import { OPTIMIZE_USAGE, optimizeFlag, precisionFlags } from "./export";
import { parseFlags, positiveIntFlag } from "./options";
import { withCleanOutput } from "./output-dir";
import { readVariantDir } from "./variant-dir";

const USAGE = `usage: sluice quantize <variant dir> --out <dir> [options]
  <variant dir>             an fp32 variant written by sluice export / sluice train (manifest.json, model.onnx)
  --out <dir>               where the int8 variant is written (not the input directory)
  --op-form <f>             standard (MatMulInteger, default; fastest in onnxruntime-web) or contrib
                            (com.microsoft.DynamicQuantizeMatMul)
  --int8-embeddings         also store the embedding tables in int8 (Gather + DequantizeLinear)
  --eval <task|file.jsonl>  evaluation data (default: the task of the variant's manifest evalSet)
  --split <name>            its split (default: the manifest evalSet's split)
  --max-len <n>             tokens per text (default: 128, or the model's position limit if shorter)
  --runs <n>                timed latency runs in onnxruntime-node (default: 20) and in onnxruntime-web wasm
                            (at least 15)
  --gelu <form>             erf (exact, default) or tanh: the fused GELUs become com.microsoft FastGelu (the
                            tanh form, within 4.8e-4 of erf per activation; cheaper in onnxruntime-web).
                            Needs --optimize edge; judged by the variant's accuracy and predictions changed
  --contrib-fusions         also fuse residual Add + LayerNorm into SkipLayerNormalization and each attention
                            chain into MultiHeadAttention (checked in onnxruntime-web like --optimize edge)
  --pack-qkv                pack the int8 linears that read one activation (each attention block's Q, K and V)
                            into one DynamicQuantizeMatMul + Split (exact; checked like --contrib-fusions)
${OPTIMIZE_USAGE}`;

interface Source {
  dir: string;
  manifest: Manifest;
  graph: Graph;
  tokenizerFile: string;
}

/** The variant directory, checked: a parseable manifest whose artifact is there with the recorded sha256. */
async function loadSource(dir: string): Promise<Source> {
  const { manifest, bytes } = await readVariantDir(dir, USAGE);
  const graph = decodeModel(bytes);
  if (manifest.precision === "int8" || precisionOf(graph) === "int8")
    throw new UsageError(`<variant dir>: ${dir} is already int8 (quantize its fp32 source instead)`);
  const tokenizerFile = path.join(dir, manifest.tokenizer?.file ?? "tokenizer.json");
  if (!existsSync(tokenizerFile))
    throw new UsageError(
      `<variant dir>: ${tokenizerFile} does not exist (the eval data is tokenized with it)`,
    );
  return { dir, manifest, graph, tokenizerFile };
}

export const command: Command = {
  summary: "write the int8 twin of an exported variant (per-channel int8 weights, evaluated and timed)",
  async run(argv) {
    const { values: o, positionals } = parseFlags(
      {
        args: argv,
        allowPositionals: true,
        options: {
          out: { type: "string" },
          "op-form": { type: "string" },
          "int8-embeddings": { type: "boolean", default: false },
          eval: { type: "string" },
          split: { type: "string" },
          "max-len": { type: "string", default: "128" },
          runs: { type: "string", default: "20" },
          optimize: { type: "string" },
          gelu: { type: "string", default: "erf" },
          "contrib-fusions": { type: "boolean", default: false },
          "pack-qkv": { type: "boolean", default: false },
        },
      },
      USAGE,
    );
    if (positionals.length !== 1) throw new UsageError(`expected exactly one <variant dir>\n${USAGE}`);
    if (!o.out) throw new UsageError(`--out is required\n${USAGE}`);
    if (path.resolve(o.out) === path.resolve(positionals[0]))
      throw new UsageError("--out must not be the input variant directory (the fp32 variant is kept)");
    const { quantize } = precisionFlags({ ...o, precision: "int8" });
    const runs = positiveIntFlag(o, "runs");
    const optimize = optimizeFlag(o) ?? DEFAULT_GRAPH_OPTIMIZATION;
    const gelu = o.gelu as GeluForm;
    if (!GELU_FORMS.includes(gelu))
      throw new UsageError(`--gelu must be ${GELU_FORMS.join(" or ")}, got '${o.gelu}'`);
    // Both act on the fused graph: with --optimize none there is nothing for them to rewrite.
    for (const [flag, on] of [
      ["--gelu tanh", gelu === "tanh"],
      ["--contrib-fusions", o["contrib-fusions"]],
      ["--pack-qkv", o["pack-qkv"]],
    ] as const)
      if (on && optimize === "none")
        throw new UsageError(`${flag} needs --optimize edge (got --optimize none)`);
    const edge = { gelu, contrib: o["contrib-fusions"] ?? false, pack: o["pack-qkv"] ?? false };
    const src = await loadSource(positionals[0]);
    const [task, split] = src.manifest.metrics.evalSet.name.split("/");
    const fixed = fixedSequenceOf(src.graph);
    const maxLen = Math.min(
      positiveIntFlag(o, "max-len"),
      src.manifest.maxSequenceLength ?? Number.POSITIVE_INFINITY,
    );
    let evalSet: EvalSet;
    try {
      evalSet = await loadEvalSet({
        source: o.eval ?? task,
        split: o.split ?? split ?? "test",
        tokenizerFile: src.tokenizerFile,
        maxLen,
        labels: src.manifest.labels,
        fixedSeqLen: fixed,
        fields: {
          textField: src.manifest.input?.fields?.text,
          textPairField: src.manifest.input?.fields?.textPair,
        },
      });
      checkEvalInput(evalSet, src.manifest.input?.fields, `the variant in ${src.dir}`);
    } catch (err) {
      throw new UsageError(`--eval: ${(err as Error).message}`);
    }
    if (evalSet.sha256 && evalSet.sha256 !== src.manifest.metrics.evalSet.sha256)
      console.error(
        `note: ${evalSet.name} is not the split the fp32 variant was evaluated on; their evidence will not pair`,
      );
    const manifest = await withCleanOutput(o.out, () =>
      writeInt8Variant(src, o.out!, evalSet, quantize, runs, optimize, edge),
    );
    console.log(
      `${o.out}: ${manifest.model.name} int8 (${quantize.form}), accuracy ${(100 * manifest.metrics.accuracy).toFixed(2)}% ` +
        `(fp32 ${(100 * src.manifest.metrics.accuracy).toFixed(2)}%, ${manifest.metrics.others.predictionsChangedVsFp32} of ` +
        `${manifest.metrics.evalSet.size} predictions changed), ${manifest.artifact.bytes} bytes ` +
        `(fp32 ${src.manifest.artifact.bytes}), p50 ${manifest.latency.p50Ms.toFixed(2)} ms (batch 1 x ${manifest.latency.seqLen})` +
        (manifest.latency.edge ? `, edge p50 ${manifest.latency.edge.p50Ms.toFixed(2)} ms` : ""),
    );
    return 0;
  },
};

async function writeInt8Variant(
  src: Source,
  out: string,
  evalSet: EvalSet,
  quantize: ReturnType<typeof precisionFlags>["quantize"],
  runs: number,
  optimize: GraphOptimization,
  edge: { gelu: GeluForm; contrib: boolean; pack: boolean },
): Promise<Manifest> {
  // An edge-optimized source quantizes as it is (quantizeGraph reads its MatMul/Gemm, contrib ops pass through);
  // the int8 graph is then fused again.
  const quantized = quantizeGraph(src.graph, quantize);
  const { report } = quantized;
  const optimized = await optimizeForEdge(
    quantized.graph,
    evalSet.batches,
    optimize,
    undefined,
    undefined,
    edge.contrib,
    edge.pack,
  );
  logOptimization(optimized.report, (line) => console.error(line));
  const graph = optimized.graph;
  // After the fusion check (the tanh form is not meant to pass its 1e-4): judged below by accuracy and the
  // predictions changed against the fp32 variant, like the int8 weights themselves.
  const tanhGelus = edge.gelu === "tanh" ? tanhGelu(graph) : 0;
  if (edge.gelu === "tanh")
    console.error(
      tanhGelus > 0
        ? `gelu: ${tanhGelus} fused erf GELUs written as FastGelu (tanh form)`
        : "gelu: no fused GELU to rewrite (the graph was not fused, or has none); erf kept",
    );
  const model = encodeModel(graph);
  const { metrics } = await evaluateVariant(graph, evalSet, { fp32Graph: src.graph });
  // Timed beside its fp32 source (interleaved) at the fp32 manifest's serving shape, one thread.
  const fp32Bytes = encodeModel(src.graph);
  const latency = await compareLatency(
    { fp32: fp32Bytes, int8: model },
    { batch: src.manifest.latency.batch, seq: src.manifest.latency.seqLen, threads: 1, runs },
  );
  // And in the runtime that serves it, beside the fp32 source as the gateway runs each.
  const edgeLatency = await measureEdgePair(
    {
      dense: {
        bytes: fp32Bytes,
        graph: src.graph,
        fusedAtExport: manifestGraphOptimization(src.manifest) === "edge",
      },
      pruned: { bytes: model, graph, fusedAtExport: optimized.report.applied },
    },
    { batch: src.manifest.latency.batch, seq: src.manifest.latency.seqLen, runs },
    "fp32",
    "int8",
    (line) => console.error(line),
  );
  const tokenizerBytes = await readFile(src.tokenizerFile);
  const manifest = parseManifest({
    ...src.manifest,
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    precision: "int8",
    graphOptimization: optimized.report.applied ? "edge" : "none",
    artifact: { file: "model.onnx", sha256: sha256Hex(model), bytes: model.byteLength },
    tokenizer: { file: "tokenizer.json", sha256: sha256Hex(tokenizerBytes) },
    metrics: {
      ...metrics,
      others: { ...src.manifest.metrics.others, ...metrics.others },
    },
    latency: {
      p50Ms: latency.int8.p50Ms,
      p95Ms: latency.int8.p95Ms,
      batch: latency.int8.batch,
      seqLen: latency.int8.seqLen,
      runtime: latency.int8.runtime,
      ...(edgeLatency ? { edge: edgeFigures(edgeLatency.pruned) } : {}),
    },
    training: {
      ...src.manifest.training,
      hyperparameters: {
        ...src.manifest.training.hyperparameters,
        quantization: {
          ...quantizationRecord(report),
          gelu: tanhGelus > 0 ? "tanh" : "erf",
          contribFusions: optimized.report.contrib?.applied ?? false,
          ...(edge.pack ? { packedQkv: optimized.report.pack?.applied ?? false } : {}),
          fromSha256: src.manifest.artifact.sha256,
        },
      },
      createdAt: new Date().toISOString(),
    },
  });
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, "model.onnx"), model);
  await writeFile(path.join(out, "tokenizer.json"), tokenizerBytes);
  await writeFile(path.join(out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(
    path.join(out, "export-report.json"),
    `${JSON.stringify({ quantization: report, optimization: optimized.report, gelu: { form: tanhGelus > 0 ? "tanh" : "erf", rewritten: tanhGelus }, accuracy: metrics.accuracy, latency, ...(edgeLatency ? { edgeLatency: { reference: edgeLatency.dense, variant: edgeLatency.pruned, ms: edgeLatency.ms } } : {}) }, null, 2)}\n`,
  );
  return manifest;
}
