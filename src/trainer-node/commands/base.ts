/**
 * `sluice base init`: writes a freshly initialised BERT-style encoder with Hugging Face's masked-LM head
 * (the `BertForMaskedLM` export layout), sized by flags, vocabulary size from the tokenizer; the starting
 * point of `sluice pretrain`. A `<name>.json` beside it records the architecture for the pretraining recipe.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { buildEncoder, type EncoderConfig, type EncoderLayout } from "../../core/models/encoder";
import { encodeModel } from "../../core/onnx/codec";
import { DEFAULT_TOKENIZER_PATH, loadTokenizerFile } from "../data/tokenizer-file";
import { type Command, UsageError } from "./command";
import { parseFlags, positiveIntFlag, requireFlag } from "./options";

const LAYOUTS: EncoderLayout[] = ["bert", "distilbert", "roberta", "bert-preln"];

const USAGE = `usage: sluice base init --out <file.onnx> [options]
  --layers 4  --hidden 128  --heads 4  --ffn 512  --max-pos 128
  --layout ${LAYOUTS.join("|")}   (default bert)
  --head mlm|none            masked-LM head (default, for sluice pretrain) or bare encoder
  --seed 1  --init-std 0.02  --tokenizer file.json (default models/tokenizer.json)`;

export interface BaseInitArchitecture {
  layout: EncoderLayout;
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
  maxPositions: number;
  vocabSize: number;
  head: "mlm" | "none";
  seed: number;
  initStd: number;
  tokenizerSha256: string;
}

/** Sidecar file of an init model: `base-init.onnx` -> `base-init.json`. */
export const architectureFileOf = (onnxFile: string) => onnxFile.replace(/\.onnx$/, "") + ".json";

function parse(argv: string[]) {
  return parseFlags(
    {
      args: argv,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        layers: { type: "string", default: "4" },
        hidden: { type: "string", default: "128" },
        heads: { type: "string", default: "4" },
        ffn: { type: "string", default: "512" },
        "max-pos": { type: "string", default: "128" },
        layout: { type: "string", default: "bert" },
        head: { type: "string", default: "mlm" },
        seed: { type: "string", default: "1" },
        "init-std": { type: "string", default: "0.02" },
        tokenizer: { type: "string" },
      },
    },
    USAGE,
  );
}

export const command: Command = {
  summary: "base init: write a fresh BERT-style encoder (HF layout, MLM head) to pretrain",
  async run(argv) {
    const { values: v, positionals } = parse(argv);
    if (positionals[0] !== "init" || positionals.length !== 1)
      throw new UsageError(`the only subcommand is 'init'\n${USAGE}`);
    requireFlag(v.out, "--out", USAGE);
    if (!(LAYOUTS as string[]).includes(v.layout))
      throw new UsageError(`--layout must be one of ${LAYOUTS.join(", ")}, got '${v.layout}'`);
    if (v.head !== "mlm" && v.head !== "none")
      throw new UsageError(`--head must be mlm or none, got '${v.head}'`);
    const initStd = Number(v["init-std"]);
    if (!(initStd > 0)) throw new UsageError(`--init-std must be a positive number, got '${v["init-std"]}'`);
    const hidden = positiveIntFlag(v, "hidden");
    const heads = positiveIntFlag(v, "heads");
    if (hidden % heads !== 0) throw new UsageError(`--hidden ${hidden} is not divisible by --heads ${heads}`);
    const tokenizerFile = v.tokenizer ?? DEFAULT_TOKENIZER_PATH;
    const tok = loadTokenizerFile(tokenizerFile);
    const config: Partial<EncoderConfig> = {
      layout: v.layout as EncoderLayout,
      layers: positiveIntFlag(v, "layers"),
      hidden,
      heads,
      ffn: positiveIntFlag(v, "ffn"),
      maxPositions: positiveIntFlag(v, "max-pos"),
      vocabSize: tok.vocabSize,
      head: v.head,
      padTokenId: tok.specialIds.pad,
      seed: Number(v.seed),
      initStd,
    };
    if (!Number.isInteger(config.seed)) throw new UsageError(`--seed must be an integer, got '${v.seed}'`);
    const graph = buildEncoder(config);
    const bytes = encodeModel(graph);
    mkdirSync(path.dirname(path.resolve(v.out)), { recursive: true });
    writeFileSync(v.out, bytes);
    const arch: BaseInitArchitecture = {
      layout: config.layout!,
      layers: config.layers!,
      hidden,
      heads,
      ffn: config.ffn!,
      maxPositions: config.maxPositions!,
      vocabSize: tok.vocabSize,
      head: v.head,
      seed: config.seed!,
      initStd,
      tokenizerSha256: createHash("sha256").update(readFileSync(tokenizerFile)).digest("hex"),
    };
    writeFileSync(architectureFileOf(v.out), `${JSON.stringify(arch, null, 2)}\n`);
    const params = graph.parameterCount((_, t) => t.dtype === "float32" && t.dims.length > 0);
    console.log(
      `wrote ${v.out}: ${arch.layout}, ${arch.layers} layers, d=${hidden}, ${heads} heads, FFN ${arch.ffn}, ` +
        `max positions ${arch.maxPositions}, vocabulary ${arch.vocabSize}, head ${arch.head}; ` +
        `${params.toLocaleString("en-US")} parameters, ${bytes.length.toLocaleString("en-US")} bytes`,
    );
    return 0;
  },
};
