/**
 * `sluice train`: learns gates (or a LoRA / head-only baseline) on a frozen ONNX encoder for a task, writes the
 * checkpoint, the training curve and, through export, the pruned model.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { decodeModel } from "../../core/onnx/codec";
import { encodeText } from "../../core/tokenizer";
import { type Command, UsageError } from "../cli";
import { resolveTask } from "../data/tasks";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../data/tokenizer-file";
import type { Example } from "../data/types";
import { vocabSizeOf } from "../export/run";
import { GATE_METHODS, type GateMethodName } from "../gates/finegates";
import { DEFAULT_ADAPTER_GATE_METHOD, DEFAULT_GATE_METHOD } from "../gates/methods";
import type { TokenizedSplit } from "../train/data";
import { CURVE_FILE, GATES_FILE, trainGates } from "../train/loop";
import { isPositiveInt, numberFlag, parseFlags, requireFlag } from "./options";

const USAGE = `usage: sluice train --base model.onnx (--task <name> | --data <file.jsonl>) --out <dir> [options]
  --target-sparsity 0.4      fraction of gated-layer weights to remove
  --method gates|lora|head   gates (default), LoRA baseline, or head only
  --gates ${GATE_METHODS.join("|")}   gate method (default ${DEFAULT_GATE_METHOD}, chosen by npm run bench:sparsity;
                             with --adapter-rank ${DEFAULT_ADAPTER_GATE_METHOD}, chosen by npm run bench:quality)
  --lambda 50  --lr 1e-3  --weight-decay 0.01
  --epochs N | --steps N     length of the main phase (default 3 epochs)
  --batch 16  --seq 128  --seed 1  --eval-every N  --patience N  --recovery-steps 100
  --rank 8  --alpha 16       LoRA rank and scale
  --adapter-rank N           gates only: also learn rank-N adapters inside the gates (merged by export)
  --pooling cls|mean         pooling of the added classification head (default cls)
  --train-biases             also train the biases of the gated layers
  --include p1,p2 --exclude p3   gated layer name patterns (substring or /regex/)
  --tokenizer file.json      default: tokenizer.json beside the model, else models/tokenizer.json
  --device cpu|cuda  --threads N  --resume  --no-export`;

function parse(argv: string[]) {
  return parseFlags(
    {
      args: argv,
      options: {
        base: { type: "string" },
        task: { type: "string" },
        data: { type: "string" },
        out: { type: "string" },
        "target-sparsity": { type: "string", default: "0.4" },
        method: { type: "string", default: "gates" },
        gates: { type: "string" },
        lambda: { type: "string", default: "50" },
        lr: { type: "string", default: "1e-3" },
        "weight-decay": { type: "string" },
        epochs: { type: "string" },
        steps: { type: "string" },
        batch: { type: "string", default: "16" },
        seq: { type: "string", default: "128" },
        seed: { type: "string", default: "1" },
        "eval-every": { type: "string" },
        patience: { type: "string" },
        "recovery-steps": { type: "string" },
        rank: { type: "string", default: "8" },
        "adapter-rank": { type: "string" },
        alpha: { type: "string" },
        pooling: { type: "string", default: "cls" },
        "train-biases": { type: "boolean", default: false },
        include: { type: "string" },
        exclude: { type: "string" },
        tokenizer: { type: "string" },
        device: { type: "string", default: "cpu" },
        threads: { type: "string" },
        resume: { type: "boolean", default: false },
        "no-export": { type: "boolean", default: false },
      },
    },
    USAGE,
  ).values;
}

function tokenize(examples: Example[], file: string, seq: number, padId: number): TokenizedSplit {
  const tok = loadTokenizerFile(file);
  return {
    ids: examples.map((e) => encodeText(tok, e.text, seq)),
    labels: examples.map((e) => e.label),
    padId,
  };
}

export const command: Command = {
  summary: "learn gates (or a LoRA/head baseline) on a frozen ONNX encoder and export the pruned model",
  async run(argv) {
    const v = parse(argv);
    requireFlag(v.base, "--base", USAGE);
    requireFlag(v.out, "--out", USAGE);
    if (!v.task && !v.data) throw new UsageError(`give --task <name> or --data <file.jsonl>\n${USAGE}`);
    if (v.steps && v.epochs) throw new UsageError("give --steps or --epochs, not both");
    if (!["gates", "lora", "head"].includes(v.method))
      throw new UsageError(`--method must be gates, lora or head, got '${v.method}'`);
    if (v["adapter-rank"] !== undefined && v.method !== "gates")
      throw new UsageError("--adapter-rank adds adapters inside the gates: it needs --method gates");
    // With adapters the default gate method is the one bench:quality chose for gates + LoRA.
    v.gates ??= v["adapter-rank"] !== undefined ? DEFAULT_ADAPTER_GATE_METHOD : DEFAULT_GATE_METHOD;
    if (!(GATE_METHODS as readonly string[]).includes(v.gates))
      throw new UsageError(`--gates must be one of ${GATE_METHODS.join(", ")}, got '${v.gates}'`);
    if (v.device !== "cpu" && v.device !== "cuda")
      throw new UsageError(`--device must be cpu or cuda, got '${v.device}'`);
    if (v.pooling !== "cls" && v.pooling !== "mean")
      throw new UsageError(`--pooling must be cls or mean, got '${v.pooling}'`);
    const target = numberFlag(v, "target-sparsity", (x) => x >= 0 && x < 1, "a fraction in [0, 1)")!;
    const seq = numberFlag(v, "seq", (x) => Number.isInteger(x) && x >= 2, "an integer ≥ 2")!;
    if (!existsSync(v.base)) throw new Error(`--base: no such file ${v.base}`);

    const bytes = readFileSync(v.base);
    const base = decodeModel(bytes);
    const baseInfo = {
      name: path.basename(v.base).replace(/\.onnx$/, ""),
      sha256: createHash("sha256").update(bytes).digest("hex"),
    };
    const task = resolveTask({ task: v.data ? undefined : v.task, data: v.data });
    const taskName = v.task ?? task.name;
    const besideModel = path.join(path.dirname(v.base), "tokenizer.json");
    const tokenizerFile = v.tokenizer ?? (existsSync(besideModel) ? besideModel : DEFAULT_TOKENIZER_PATH);
    const tok = loadTokenizerFile(tokenizerFile);
    const modelVocab = vocabSizeOf(base);
    if (tok.vocabSize > modelVocab)
      throw new Error(
        `tokenizer ${tokenizerFile} has ${tok.vocabSize} tokens, the model's embedding only ${modelVocab}`,
      );
    const padId = tok.ids["[PAD]"];
    const train = tokenize(task.splits.train, tokenizerFile, seq, padId);
    const validation = tokenize(task.splits.validation, tokenizerFile, seq, padId);
    const split = (s: string) =>
      s
        .split(",")
        .map((p) => p.trim())
        .filter(Boolean);

    mkdirSync(v.out, { recursive: true });
    const result = await trainGates({
      base,
      baseInfo,
      task: { name: taskName, labels: task.labels },
      train,
      validation,
      method: v.method as "gates" | "lora" | "head",
      gates: v.gates as GateMethodName,
      targetSparsity: target,
      lambda: numberFlag(v, "lambda", (x) => x >= 0, "≥ 0"),
      lr: numberFlag(v, "lr", (x) => x > 0, "> 0"),
      weightDecay: numberFlag(v, "weight-decay", (x) => x >= 0, "≥ 0"),
      steps: numberFlag(v, "steps", isPositiveInt, "a positive integer"),
      epochs: numberFlag(v, "epochs", isPositiveInt, "a positive integer"),
      batchSize: numberFlag(v, "batch", isPositiveInt, "a positive integer"),
      seed: numberFlag(v, "seed", Number.isInteger, "an integer"),
      evalEvery: numberFlag(v, "eval-every", isPositiveInt, "a positive integer"),
      patience: numberFlag(v, "patience", isPositiveInt, "a positive integer"),
      recoverySteps: numberFlag(v, "recovery-steps", (x) => Number.isInteger(x) && x >= 0, "an integer ≥ 0"),
      loraRank: numberFlag(v, "rank", isPositiveInt, "a positive integer"),
      loraAlpha: numberFlag(v, "alpha", (x) => x > 0, "> 0"),
      adapterRank: numberFlag(v, "adapter-rank", isPositiveInt, "a positive integer"),
      pooling: v.pooling,
      trainBiases: v["train-biases"],
      selector: {
        include: v.include ? split(v.include) : undefined,
        exclude: v.exclude ? split(v.exclude) : undefined,
      },
      device: v.device,
      threads: numberFlag(v, "threads", isPositiveInt, "a positive integer"),
      checkpointDir: v.out,
      resume: v.resume,
    });
    for (const note of result.notes) console.error(`note: ${note}`);
    console.log(
      `trained ${result.steps} steps: validation accuracy ${result.accuracy.toFixed(4)}, ` +
        `${(100 * result.removedFraction).toFixed(2)}% of gated weights removed (${result.removalCounting}), ` +
        `${result.trainableParams} trainable parameters`,
    );
    console.log(`wrote ${path.join(v.out, GATES_FILE)} and ${path.join(v.out, CURVE_FILE)}`);

    if (v.method === "gates" && Math.abs(result.removedFraction - target) > 0.02) {
      console.error(
        `sluice train: asked for ${(100 * target).toFixed(1)}% sparsity, reached ${(100 * result.removedFraction).toFixed(2)}% ` +
          `removed with --gates ${v.gates}` +
          (v.gates === "finegates"
            ? " (plain FineGates does not control the removed fraction; try --gates hardconcrete or finegates-binarized)"
            : ""),
      );
      return 1;
    }
    if (v["no-export"] || v.method !== "gates") {
      if (v.method !== "gates")
        console.log(`export of ${v.method} checkpoints is not supported; checkpoint only`);
      return 0;
    }
    // Export through `sluice export` itself: pruned model, equivalence check, test-split accuracy, latency,
    // manifest.json (one code path for both commands).
    const exportCommand = (await import("./export")).command;
    const exported = await exportCommand.run([
      "--base",
      v.base,
      "--gates",
      path.join(v.out, GATES_FILE),
      "--out",
      v.out,
      "--eval",
      v.data ?? taskName,
      "--tokenizer",
      tokenizerFile,
      "--max-len",
      String(seq),
      "--target",
      String(target),
      "--name",
      taskName.toLowerCase().replace(/[^a-z0-9._-]/g, "-"),
    ]);
    if (exported !== 0) return exported;
    // The promise is about what export removed: check the manifest's figure too (training counts removals with
    // export's planner when it understands the model, but falls back to layer-local counting when it does not).
    const manifest = JSON.parse(readFileSync(path.join(v.out, "manifest.json"), "utf8"));
    const removed = Number(manifest.sparsity?.removed);
    if (!(Math.abs(removed - target) <= 0.02)) {
      console.error(
        `sluice train: asked for ${(100 * target).toFixed(1)}% sparsity, export removed ${(100 * removed).toFixed(2)}% ` +
          `of the gated weights with --gates ${v.gates}`,
      );
      return 1;
    }
    return 0;
  },
};
