/**
 * `sluice export --base model.onnx --gates <checkpoint.json> --out <dir>`: builds the physically pruned model
 * from a gate checkpoint, verifies it against the gated model, measures its accuracy and latency, and writes a
 * trainer output directory (model.onnx, tokenizer.json, manifest.json, export-report.json).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { checkTokenizerFitsModel, loadTokenizerFile } from "../data/tokenizer-file";
import { DEFAULT_GRAPH_OPTIMIZATION, GRAPH_OPTIMIZATIONS, type GraphOptimization } from "../export/optimize";
import { checkEvalInput, exportVariant, loadEvalSet } from "../export/pipeline";
import type { ResidualPolicy } from "../export/plan";
import {
  DEFAULT_QUANT_OP_FORM,
  type Precision,
  QUANT_OP_FORMS,
  type QuantizeOptions,
  type QuantOpForm,
} from "../export/quantize";
import { HEAD_LAYOUTS, type HeadLayout } from "../export/surgery";
import type { EvalSet } from "../export/variant";
import { GateCheckpoint } from "../gates/checkpoint";
import { resolveSequenceLength } from "../import/limits";
import { loadUserModel } from "../import/load";
import { type Command, UsageError } from "./command";
import { parseFlags, positiveIntFlag } from "./options";
import { withCleanOutput } from "./output-dir";

/** The --optimize line of export's and quantize's usage. */
export const OPTIMIZE_USAGE = `  --optimize <o>            edge: apply onnxruntime's session-time fusions now, kept only if onnxruntime-web's
                            wasm build runs them with the same predictions; none: write the unfused graph
                            (default: ${DEFAULT_GRAPH_OPTIMIZATION})`;

const USAGE = `usage: sluice export --base <model.onnx> --gates <checkpoint.json> --out <dir> [options]
  --eval <task|file.jsonl>  evaluation data: a built-in task (spam, sentiment, genre) or a JSONL file
                            (default: the checkpoint's task, when it is a built-in one)
  --split <name>            split of the evaluation data (default: test)
  --text-field F  --text-pair-field G   fields of a JSONL --eval file holding the text and the second text of a
                            pair (default: the fields the checkpoint was trained on)
  --tokenizer <file>        tokenizer.json (default: tokenizer.json next to --base)
  --max-len <n>             tokens per text (default: 128)
  --name <model>            registry model name (default: the checkpoint's task)
  --target <x>              requested sparsity recorded in the manifest (default: from the checkpoint)
  --runs <n>                timed latency runs per configuration in onnxruntime-node (default: 20); the
                            onnxruntime-web wasm figure (batch 1) takes at least 15
  --residual <policy>       closed residual-stream features: auto (cheaper of the two, default),
                            gather (fewest parameters) or zeros (kept as zero rows/columns)
  --heads <layout>          uneven kept heads: grouped (one attention chain per group of equal-size heads,
                            default) or padded (zero dims up to the layer's largest head: one chain per layer)
  --precision <p>           fp32 (default) or int8: linear-layer weights int8 per output channel, dynamic
                            activations (embeddings, attention products, LayerNorm and the head stay fp32)
  --op-form <f>             int8 op form: standard (MatMulInteger, default; fastest in onnxruntime-web) or
                            contrib (com.microsoft.DynamicQuantizeMatMul)
  --int8-embeddings         int8 also stores the embedding tables in int8 (Gather + DequantizeLinear)
${OPTIMIZE_USAGE}
  --logits-output NAME  --hidden-output NAME   as given to sluice train`;

function parse(argv: string[]) {
  return parseFlags(
    {
      args: argv,
      options: {
        base: { type: "string" },
        gates: { type: "string" },
        out: { type: "string" },
        eval: { type: "string" },
        split: { type: "string", default: "test" },
        "text-field": { type: "string" },
        "text-pair-field": { type: "string" },
        tokenizer: { type: "string" },
        "max-len": { type: "string", default: "128" },
        name: { type: "string" },
        target: { type: "string" },
        runs: { type: "string", default: "20" },
        residual: { type: "string", default: "auto" },
        heads: { type: "string", default: "grouped" },
        precision: { type: "string", default: "fp32" },
        "op-form": { type: "string" },
        "int8-embeddings": { type: "boolean", default: false },
        optimize: { type: "string" },
        "logits-output": { type: "string" },
        "hidden-output": { type: "string" },
      },
    },
    USAGE,
  ).values;
}

/** --precision, --op-form and --int8-embeddings, checked (shared with `sluice quantize`, which implies int8). */
export function precisionFlags(o: { precision?: string; "op-form"?: string; "int8-embeddings"?: boolean }): {
  precision: Precision;
  quantize: QuantizeOptions;
} {
  const precision = (o.precision ?? "int8") as Precision;
  if (precision !== "fp32" && precision !== "int8")
    throw new UsageError(`--precision must be fp32 or int8, got '${o.precision}'`);
  const form = (o["op-form"] ?? DEFAULT_QUANT_OP_FORM) as QuantOpForm;
  if (!QUANT_OP_FORMS.includes(form))
    throw new UsageError(`--op-form must be ${QUANT_OP_FORMS.join(" or ")}, got '${o["op-form"]}'`);
  if (precision === "fp32" && (o["op-form"] !== undefined || o["int8-embeddings"]))
    throw new UsageError(
      `--${o["op-form"] !== undefined ? "op-form" : "int8-embeddings"} needs --precision int8`,
    );
  return { precision, quantize: { form, embeddings: o["int8-embeddings"] ?? false } };
}

/** --optimize, checked; undefined when not given (the export pipeline applies its default). */
export function optimizeFlag(o: { optimize?: string }): GraphOptimization | undefined {
  if (o.optimize === undefined) return undefined;
  if (!GRAPH_OPTIMIZATIONS.includes(o.optimize as GraphOptimization))
    throw new UsageError(`--optimize must be ${GRAPH_OPTIMIZATIONS.join(" or ")}, got '${o.optimize}'`);
  return o.optimize as GraphOptimization;
}

export const command: Command = {
  summary: "build the physically pruned ONNX model from a gate checkpoint (verified, measured)",
  async run(argv) {
    const o = parse(argv);
    if (!o.base || !o.gates || !o.out)
      throw new UsageError(`--base, --gates and --out are required\n${USAGE}`);
    const ckptJson = JSON.parse(await readFile(o.gates, "utf8"));
    const parsed = GateCheckpoint.safeParse(ckptJson);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UsageError(`--gates: ${o.gates}: ${issue.path.join(".") || "checkpoint"}: ${issue.message}`);
    }
    const ckpt = parsed.data;
    const model = loadUserModel(o.base, {
      logitsOutput: o["logits-output"],
      hiddenOutput: o["hidden-output"],
    });
    if (ckpt.base.sha256 !== model.sha256)
      throw new UsageError(
        `--base: ${o.base} (sha256 ${model.sha256.slice(0, 12)}…) is not the model these gates were trained on (${ckpt.base.name}, sha256 ${ckpt.base.sha256.slice(0, 12)}…)`,
      );
    const tokenizerFile = o.tokenizer ?? path.join(path.dirname(o.base), "tokenizer.json");
    if (!existsSync(tokenizerFile))
      throw new UsageError(
        `--tokenizer: ${tokenizerFile} does not exist (the eval data is tokenized with the model's own tokenizer)`,
      );
    checkTokenizerFitsModel(loadTokenizerFile(tokenizerFile), model.report.vocabSize, tokenizerFile);
    const target = o.target === undefined ? undefined : Number(o.target);
    if (target !== undefined && !(target >= 0 && target <= 1))
      throw new UsageError(`--target must be a number in [0, 1], got '${o.target}'`);
    const residual = o.residual as ResidualPolicy;
    if (!["auto", "gather", "zeros"].includes(residual))
      throw new UsageError(`--residual must be auto, gather or zeros, got '${o.residual}'`);
    const heads = o.heads as HeadLayout;
    if (!HEAD_LAYOUTS.includes(heads))
      throw new UsageError(`--heads must be ${HEAD_LAYOUTS.join(" or ")}, got '${o.heads}'`);
    const { precision, quantize } = precisionFlags(o);
    const optimize = optimizeFlag(o);
    const { seqLen, note } = await resolveSequenceLength(
      model,
      positiveIntFlag(o, "max-len")!,
      o["max-len"] !== "128",
      "--max-len",
    );
    if (note) console.error(`note: ${note}`);
    let evalSet: EvalSet;
    try {
      evalSet = await loadEvalSet({
        source: o.eval ?? ckpt.task.name,
        split: o.split,
        tokenizerFile,
        maxLen: seqLen,
        labels: ckpt.task.labels,
        fixedSeqLen: model.report.fixedSequenceLength,
        // The fields training read, unless named again here (another file of the same task).
        fields:
          o["text-field"] !== undefined || o["text-pair-field"] !== undefined
            ? { textField: o["text-field"], textPairField: o["text-pair-field"] }
            : { textField: ckpt.task.fields?.text, textPairField: ckpt.task.fields?.textPair },
      });
      checkEvalInput(evalSet, ckpt.task.fields, `--gates ${o.gates}`);
    } catch (err) {
      throw new UsageError(`--eval: ${(err as Error).message}`);
    }
    const manifest = await withCleanOutput(o.out, () =>
      exportVariant({
        model,
        ckpt,
        outDir: o.out!,
        evalSet,
        tokenizerFile,
        name: o.name ?? ckpt.task.name,
        target,
        runs: positiveIntFlag(o, "runs"),
        residual,
        heads,
        precision,
        quantize,
        optimize,
      }),
    );
    console.log(
      `${o.out}: ${manifest.model.name} (${manifest.model.task}), accuracy ${(100 * manifest.metrics.accuracy).toFixed(2)}% ` +
        `on ${manifest.metrics.evalSet.name}, sparsity ${manifest.sparsity.removed.toFixed(3)}, ` +
        `${manifest.precision}, graph optimisation ${manifest.graphOptimization}, p50 ${manifest.latency.p50Ms.toFixed(2)} ms (batch 1 x ${manifest.latency.seqLen})` +
        (manifest.latency.edge ? `, edge p50 ${manifest.latency.edge.p50Ms.toFixed(2)} ms` : ""),
    );
    return 0;
  },
};
