/**
 * `sluice export --base model.onnx --gates <checkpoint.json> --out <dir>`: builds the physically pruned model
 * from a gate checkpoint, verifies it against the gated model, measures its accuracy and latency, and writes a
 * trainer output directory (model.onnx, tokenizer.json, manifest.json, export-report.json).
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { decodeModel, encodeModel } from "../../core/onnx/codec";
import { encodeBatch, loadTokenizer } from "../../core/tokenizer";
import { type Command, UsageError } from "../cli";
import { loadDataFile, loadTask } from "../data/tasks";
import { exportPrunedModel } from "../export/export";
import { compareOnGrid } from "../export/latency";
import type { ResidualPolicy } from "../export/plan";
import type { TokenBatch } from "../export/run";
import { type EvalSet, writeVariant } from "../export/variant";
import { GateCheckpoint } from "../gates/checkpoint";
import { parseFlags, positiveIntFlag } from "./options";

const USAGE = `usage: sluice export --base <model.onnx> --gates <checkpoint.json> --out <dir> [options]
  --eval <task|file.jsonl>  evaluation data: a built-in task (spam, sentiment, genre) or a JSONL file
                            (default: the checkpoint's task, when it is a built-in one)
  --split <name>            split of the evaluation data (default: test)
  --tokenizer <file>        tokenizer.json (default: tokenizer.json next to --base)
  --max-len <n>             tokens per text (default: 128)
  --name <model>            registry model name (default: the checkpoint's task)
  --target <x>              requested sparsity recorded in the manifest (default: from the checkpoint)
  --runs <n>                timed latency runs per configuration (default: 20)
  --residual <policy>       closed residual-stream features: auto (cheaper of the two, default),
                            gather (fewest parameters) or zeros (kept as zero rows/columns)`;

const BATCH = 32;

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
        tokenizer: { type: "string" },
        "max-len": { type: "string", default: "128" },
        name: { type: "string" },
        target: { type: "string" },
        runs: { type: "string", default: "20" },
        residual: { type: "string", default: "auto" },
      },
    },
    USAGE,
  ).values;
}

/** Tokenizes a task split into batches, with labels mapped onto the checkpoint's label order. */
async function loadEvalSet(
  source: string,
  split: string,
  tokenizerFile: string,
  maxLen: number,
  labels: string[],
): Promise<EvalSet> {
  const dataset = source.endsWith(".jsonl") ? loadDataFile(source) : loadTask(source);
  const examples = dataset.splits[split];
  if (!examples?.length)
    throw new UsageError(
      `--split: '${dataset.name}' has no '${split}' split (has ${Object.keys(dataset.splits)})`,
    );
  const tok = loadTokenizer(await readFile(tokenizerFile, "utf8"));
  const batches: TokenBatch[] = [];
  const mapped: number[] = [];
  for (const ex of examples) {
    const name = dataset.labels[ex.label];
    const idx = labels.indexOf(name);
    if (idx < 0)
      throw new Error(`eval label '${name}' is not one of the checkpoint's labels (${labels.join(", ")})`);
    mapped.push(idx);
  }
  for (let i = 0; i < examples.length; i += BATCH)
    batches.push(
      encodeBatch(
        tok,
        examples.slice(i, i + BATCH).map((e) => e.text),
        maxLen,
      ),
    );
  return {
    name: `${dataset.name}/${split}`,
    batches,
    labels: mapped,
    sha256: dataset.fingerprints[split],
  };
}

export const command: Command = {
  summary: "build the physically pruned ONNX model from a gate checkpoint (verified, measured)",
  async run(argv) {
    const o = parse(argv);
    if (!o.base || !o.gates || !o.out)
      throw new UsageError(`--base, --gates and --out are required\n${USAGE}`);
    const baseBytes = new Uint8Array(await readFile(o.base));
    const ckptJson = JSON.parse(await readFile(o.gates, "utf8"));
    const parsed = GateCheckpoint.safeParse(ckptJson);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UsageError(`--gates: ${o.gates}: ${issue.path.join(".") || "checkpoint"}: ${issue.message}`);
    }
    const ckpt = parsed.data;
    const baseSha = createHash("sha256").update(baseBytes).digest("hex");
    if (ckpt.base.sha256 !== baseSha)
      throw new UsageError(
        `--base: ${o.base} (sha256 ${baseSha.slice(0, 12)}…) is not the model these gates were trained on (${ckpt.base.name}, sha256 ${ckpt.base.sha256.slice(0, 12)}…)`,
      );
    const source = o.eval ?? ckpt.task.name;
    const tokenizerFile = o.tokenizer ?? path.join(path.dirname(o.base), "tokenizer.json");
    if (!existsSync(tokenizerFile))
      throw new UsageError(`--tokenizer: ${tokenizerFile} does not exist (the eval data must be tokenized)`);
    const maxLen = positiveIntFlag(o, "max-len");
    const evalSet = await loadEvalSet(source, o.split, tokenizerFile, maxLen, ckpt.task.labels);
    const target = o.target === undefined ? undefined : Number(o.target);
    if (target !== undefined && !(target >= 0 && target <= 1))
      throw new UsageError(`--target must be a number in [0, 1], got '${o.target}'`);

    const residual = o.residual as ResidualPolicy;
    if (!["auto", "gather", "zeros"].includes(residual))
      throw new UsageError(`--residual must be auto, gather or zeros, got '${o.residual}'`);
    const base = decodeModel(baseBytes);
    console.error(`exporting ${ckpt.layers.length} gated layers of ${ckpt.base.name} ...`);
    const { graph, report } = await exportPrunedModel(base, ckpt, { batches: evalSet.batches, residual });
    console.error(
      `removed ${(100 * report.removedFraction).toFixed(1)}% of gated-layer weights; parameters ` +
        `${report.params.before} -> ${report.params.after}; equivalent to the gated model on ` +
        `${evalSet.labels.length} ${evalSet.name} examples (max |diff| ${report.equivalence.maxAbsDiff.toExponential(1)})`,
    );
    console.error("measuring latency (dense vs pruned, interleaved) ...");
    const grid = await compareOnGrid(baseBytes, encodeModel(graph), { runs: positiveIntFlag(o, "runs") });
    for (const l of grid)
      console.error(
        `  batch ${l.batch} x ${l.seqLen}, ${l.threads} thread(s): ${l.dense.p50Ms.toFixed(2)} -> ${l.pruned.p50Ms.toFixed(2)} ms (${l.speedup.toFixed(2)}x)`,
      );
    const serving = grid.find((l) => l.batch === 1 && l.threads === 1) ?? grid[0];
    const manifest = await writeVariant(o.out, {
      modelName: (o.name ?? ckpt.task.name).toLowerCase(),
      graph,
      report,
      ckpt,
      base: { name: ckpt.base.name, sha256: baseSha },
      target,
      tokenizerFile,
      evalSet,
      latency: serving.pruned,
      latencyGrid: grid,
    });
    console.log(
      `${o.out}: ${manifest.model.name} (${manifest.model.task}), accuracy ${(100 * manifest.metrics.accuracy).toFixed(2)}% ` +
        `on ${manifest.metrics.evalSet.name}, sparsity ${manifest.sparsity.removed.toFixed(3)}, ` +
        `p50 ${manifest.latency.p50Ms.toFixed(2)} ms (batch 1 x ${manifest.latency.seqLen})`,
    );
    return 0;
  },
};
