/**
 * `sluice train`: learns gates (or a LoRA / head-only baseline) on a frozen ONNX encoder for a task, writes the
 * checkpoint, the training curve and, through export, the pruned model.
 */
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { resolveTask } from "../data/tasks";
import { checkTokenizerFitsModel, loadTokenizerFile } from "../data/tokenizer-file";
import { exportVariant, loadEvalSet } from "../export/pipeline";
import { GATE_METHODS, type GateMethodName } from "../gates/finegates";
import { resolveSequenceLength } from "../import/limits";
import { loadUserModel } from "../import/load";
import { headPlan } from "../import/report";
import { TRAIN_DEFAULTS as D, defaultGateMethod } from "../train/config";
import { tokenizeSplit } from "../train/data";
import { CURVE_FILE, GATES_FILE, trainGates } from "../train/loop";
import { ADAMW_DEFAULTS } from "../train/optimizer";
import { type Command, UsageError } from "./command";
import { isPositiveInt, numberFlag, parseFlags, requireFlag } from "./options";
import { withCleanOutput } from "./output-dir";

// Defaults quoted here come from the train config (train/config.ts): the flags themselves have none.
const USAGE = `usage: sluice train --base model.onnx (--task <name> | --data <file.jsonl>) --out <dir> [options]
  --target-sparsity ${D.targetSparsity}      fraction of gated-layer weights to remove
  --method gates|lora|head   gates (default), LoRA baseline, or head only
  --gates ${GATE_METHODS.join("|")}   gate method (default ${defaultGateMethod(undefined)}, chosen by npm run bench:sparsity;
                             with --adapter-rank ${defaultGateMethod(1)}, chosen by npm run bench:quality)
  --lambda ${D.lambda}  --lr ${D.lr.toExponential()}  --weight-decay ${ADAMW_DEFAULTS.weightDecay}
  --epochs N | --steps N     length of the main phase (default ${D.epochs} epochs)
  --batch ${D.batchSize}  --seq ${D.seqLen}  --seed ${D.seed}  --eval-every N  --patience N  --recovery-steps ${D.recoverySteps}
  --rank ${D.loraRank}  --alpha ${2 * D.loraRank}       LoRA rank and scale (alpha defaults to 2 × rank)
  --adapter-rank N           gates only: also learn rank-N adapters inside the gates (merged by export)
  --pooling cls|mean         pooling of the added classification head (default ${D.pooling})
  --train-biases             also train the biases of the gated layers
  --include p1,p2 --exclude p3   gated layer name patterns (substring or /regex/)
  --text-field F  --text-pair-field G   --data fields holding the text and, for a sentence-pair task, the
                             second text (default: text, or the first of text/text_pair, sentence1/sentence2,
                             premise/hypothesis, question/sentence the first row has)
  --tokenizer file.json      the model's own tokenizer (default: tokenizer.json beside the model; required)
  --logits-output NAME       the model output holding classification logits, when several qualify
  --hidden-output NAME       the value holding the encoder's hidden states, overriding detection
  --name NAME                registry model name in the manifest (default: the task's name)
  --device cpu|cuda  --threads N  --resume  --no-export`;

function parse(argv: string[]) {
  return parseFlags(
    {
      args: argv,
      options: {
        base: { type: "string" },
        name: { type: "string" },
        task: { type: "string" },
        data: { type: "string" },
        out: { type: "string" },
        "target-sparsity": { type: "string" },
        method: { type: "string" },
        gates: { type: "string" },
        lambda: { type: "string" },
        lr: { type: "string" },
        "weight-decay": { type: "string" },
        epochs: { type: "string" },
        steps: { type: "string" },
        batch: { type: "string" },
        seq: { type: "string" },
        seed: { type: "string" },
        "eval-every": { type: "string" },
        patience: { type: "string" },
        "recovery-steps": { type: "string" },
        rank: { type: "string" },
        "adapter-rank": { type: "string" },
        alpha: { type: "string" },
        pooling: { type: "string" },
        "train-biases": { type: "boolean", default: false },
        include: { type: "string" },
        exclude: { type: "string" },
        "text-field": { type: "string" },
        "text-pair-field": { type: "string" },
        tokenizer: { type: "string" },
        "logits-output": { type: "string" },
        "hidden-output": { type: "string" },
        device: { type: "string", default: "cpu" },
        threads: { type: "string" },
        resume: { type: "boolean", default: false },
        "no-export": { type: "boolean", default: false },
      },
    },
    USAGE,
  ).values;
}

export const command: Command = {
  summary: "learn gates (or a LoRA/head baseline) on a frozen ONNX encoder and export the pruned model",
  async run(argv) {
    const v = parse(argv);
    requireFlag(v.base, "--base", USAGE);
    requireFlag(v.out, "--out", USAGE);
    if (!v.task && !v.data) throw new UsageError(`give --task <name> or --data <file.jsonl>\n${USAGE}`);
    if (v.steps && v.epochs) throw new UsageError("give --steps or --epochs, not both");
    if (v.method !== undefined && !["gates", "lora", "head"].includes(v.method))
      throw new UsageError(`--method must be gates, lora or head, got '${v.method}'`);
    if (v["adapter-rank"] !== undefined && (v.method ?? D.method) !== "gates")
      throw new UsageError("--adapter-rank adds adapters inside the gates: it needs --method gates");
    if (v.gates !== undefined && !(GATE_METHODS as readonly string[]).includes(v.gates))
      throw new UsageError(`--gates must be one of ${GATE_METHODS.join(", ")}, got '${v.gates}'`);
    if (v.device !== "cpu" && v.device !== "cuda")
      throw new UsageError(`--device must be cpu or cuda, got '${v.device}'`);
    if (v.pooling !== undefined && v.pooling !== "cls" && v.pooling !== "mean")
      throw new UsageError(`--pooling must be cls or mean, got '${v.pooling}'`);
    const targetSparsity = numberFlag(v, "target-sparsity", (x) => x >= 0 && x < 1, "a fraction in [0, 1)");
    const seq = numberFlag(v, "seq", (x) => Number.isInteger(x) && x >= 2, "an integer ≥ 2");
    const model = loadUserModel(v.base, {
      logitsOutput: v["logits-output"],
      hiddenOutput: v["hidden-output"],
    });
    const fieldFlags = { textField: v["text-field"], textPairField: v["text-pair-field"] };
    let task: ReturnType<typeof resolveTask>;
    try {
      task = resolveTask({ task: v.data ? undefined : v.task, data: v.data, fields: fieldFlags });
    } catch (err) {
      // A field flag without --data, or a row lacking a named field: the message names the flag or field.
      if (v["text-field"] !== undefined || v["text-pair-field"] !== undefined)
        throw new UsageError((err as Error).message);
      throw err;
    }
    const textPairs = task.pairFields !== undefined;
    const taskName = v.task ?? task.name;
    // The model's own tokenizer, always: given, or beside the model. Never a silent substitute.
    const besideModel = path.join(path.dirname(v.base), "tokenizer.json");
    const tokenizerFile = v.tokenizer ?? (existsSync(besideModel) ? besideModel : undefined);
    if (!tokenizerFile)
      throw new UsageError(
        `--tokenizer: no tokenizer for ${v.base}: pass the model's own tokenizer.json with --tokenizer, put it beside the model, ` +
          "or build one from the model's vocab.txt with `sluice tokenizer from-vocab vocab.txt --out tokenizer.json`",
      );
    if (!existsSync(tokenizerFile)) throw new UsageError(`--tokenizer: no such file ${tokenizerFile}`);
    const tok = loadTokenizerFile(tokenizerFile);
    try {
      checkTokenizerFitsModel(tok, model.report.vocabSize, tokenizerFile);
    } catch (err) {
      throw new UsageError(`--tokenizer: ${(err as Error).message}`);
    }
    const fixedSeq = model.report.fixedSequenceLength;
    const { seqLen, note: seqNote } = await resolveSequenceLength(
      model,
      seq ?? D.seqLen,
      seq !== undefined,
      "--seq",
    );
    if (seqNote) console.error(`note: ${seqNote}`);
    if (textPairs && !tok.pairTemplate)
      throw new UsageError(
        `--tokenizer: ${tokenizerFile} has no pair template (post_processor TemplateProcessing 'pair', BertProcessing or RobertaProcessing), so it cannot encode the sentence pairs of ${v.data}`,
      );
    if (textPairs)
      console.error(
        `${task.name}: sentence pairs (${task.pairFields?.text}, ${task.pairFields?.textPair}), ` +
          (model.graph.inputs.some((i) => i.name === "token_type_ids")
            ? "token type ids from the tokenizer's pair template"
            : "the model takes no token type ids"),
      );
    const tokenizeOpts = { seq: seqLen, pairs: textPairs, padTo: fixedSeq };
    const train = tokenizeSplit(tok, task.splits.train, tokenizeOpts);
    const validation = tokenizeSplit(tok, task.splits.validation, tokenizeOpts);
    console.error(`${model.name}: ${headPlan(model, task.labels.length).reason}`);
    const split = (s: string) =>
      s
        .split(",")
        .map((p) => p.trim())
        .filter(Boolean);

    const out = v.out;
    return withCleanOutput(out, async () => {
      mkdirSync(out, { recursive: true });
      const result = await trainGates({
        base: model.graph,
        baseInfo: { name: model.name, sha256: model.sha256 },
        task: { name: taskName, labels: task.labels, fields: task.fields },
        train,
        validation,
        method: v.method as "gates" | "lora" | "head" | undefined,
        gates: v.gates as GateMethodName | undefined,
        targetSparsity,
        lambda: numberFlag(v, "lambda", (x) => x >= 0, "≥ 0"),
        lr: numberFlag(v, "lr", (x) => x > 0, "> 0"),
        weightDecay: numberFlag(v, "weight-decay", (x) => x >= 0, "≥ 0"),
        steps: numberFlag(v, "steps", isPositiveInt, "a positive integer"),
        epochs: numberFlag(v, "epochs", isPositiveInt, "a positive integer"),
        batchSize: numberFlag(v, "batch", isPositiveInt, "a positive integer"),
        seed: numberFlag(v, "seed", Number.isInteger, "an integer"),
        evalEvery: numberFlag(v, "eval-every", isPositiveInt, "a positive integer"),
        patience: numberFlag(v, "patience", isPositiveInt, "a positive integer"),
        recoverySteps: numberFlag(
          v,
          "recovery-steps",
          (x) => Number.isInteger(x) && x >= 0,
          "an integer ≥ 0",
        ),
        loraRank: numberFlag(v, "rank", isPositiveInt, "a positive integer"),
        loraAlpha: numberFlag(v, "alpha", (x) => x > 0, "> 0"),
        adapterRank: numberFlag(v, "adapter-rank", isPositiveInt, "a positive integer"),
        pooling: v.pooling as "cls" | "mean" | undefined,
        trainBiases: v["train-biases"],
        selector: {
          include: v.include ? split(v.include) : undefined,
          exclude: v.exclude ? split(v.exclude) : undefined,
        },
        device: v.device as "cpu" | "cuda",
        threads: numberFlag(v, "threads", isPositiveInt, "a positive integer"),
        checkpointDir: out,
        resume: v.resume,
      });
      for (const note of result.notes) console.error(`note: ${note}`);
      // What the run actually used (defaults included): the checks and export below read it, not the flags.
      const cfg = result.config;
      const target = cfg.targetSparsity;
      console.log(
        `trained ${result.steps} steps: validation accuracy ${result.accuracy.toFixed(4)}, ` +
          `${(100 * result.removedFraction).toFixed(2)}% of gated weights removed (${result.removalCounting}), ` +
          `${result.trainableParams} trainable parameters`,
      );
      console.log(`wrote ${path.join(out, GATES_FILE)} and ${path.join(out, CURVE_FILE)}`);

      const sparsityMiss = (removed: number, what: string) =>
        `sluice train: asked for ${(100 * target).toFixed(1)}% sparsity, ${what} ${(100 * removed).toFixed(2)}% ` +
        `of the gated weights with --gates ${cfg.gateMethod}` +
        (cfg.gateMethod === "finegates"
          ? " (plain FineGates does not control the removed fraction; try --gates hardconcrete or finegates-binarized)"
          : "");
      if (cfg.method === "gates" && Math.abs(result.removedFraction - target) > 0.02) {
        console.error(sparsityMiss(result.removedFraction, "reached"));
        return 1;
      }
      if (v["no-export"]) return 0;
      // Export in-process through the library function `sluice export` uses (one code path for both).
      const evalSet = await loadEvalSet({
        source: v.data ?? taskName,
        split: "test",
        tokenizerFile,
        maxLen: seqLen,
        labels: task.labels,
        fixedSeqLen: fixedSeq,
        fields: fieldFlags,
      });
      const manifest = await exportVariant({
        model,
        ckpt: result.checkpoint,
        outDir: out,
        evalSet,
        tokenizerFile,
        name: (v.name ?? taskName).toLowerCase().replace(/[^a-z0-9._-]/g, "-"),
        target: cfg.method === "gates" ? target : 0,
      });
      console.log(
        `${out}: ${manifest.model.name} (${manifest.model.task}), accuracy ${(100 * manifest.metrics.accuracy).toFixed(2)}% ` +
          `on ${manifest.metrics.evalSet.name}, sparsity ${manifest.sparsity.removed.toFixed(3)}`,
      );
      // The promise is about what export removed: check the manifest's figure too.
      if (cfg.method === "gates" && !(Math.abs(manifest.sparsity.removed - target) <= 0.02)) {
        console.error(sparsityMiss(manifest.sparsity.removed, "export removed"));
        return 1;
      }
      return 0;
    });
  },
};
