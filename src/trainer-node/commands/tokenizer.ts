/**
 * `sluice tokenizer from-vocab <vocab.txt> --out tokenizer.json [--cased] [--force]`: the tokenizer.json that
 * `BertTokenizerFast` would save for a BERT / DistilBERT / ELECTRA vocab.txt (one piece per line, id = line
 * number), for models published without one. Written atomically: a temporary file beside the output, renamed
 * into place only once it is complete and loads.
 */
import { randomBytes } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadTokenizer } from "../../core/tokenizer";
import { makeTokenizerJson } from "../data/build-tokenizer";
import { type Command, UsageError } from "./command";
import { parseFlags, requireFlag } from "./options";

const USAGE = `usage:
  sluice tokenizer from-vocab <vocab.txt> --out <tokenizer.json> [--cased] [--force]

  Builds a BERT WordPiece tokenizer.json from a model's vocab.txt (lower-cased unless --cased; use --cased for
  cased models such as bert-base-cased). The vocabulary must have [UNK], [CLS], [SEP] and [PAD].`;

/** The tokens every BERT vocabulary has and a Sluice model's inputs need. */
const REQUIRED = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"] as const;

export const command: Command = {
  summary: "build a model's tokenizer.json from its BERT vocab.txt (tokenizer from-vocab)",
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "from-vocab") return fromVocab(rest);
    throw new UsageError(sub ? `unknown subcommand '${sub}'\n${USAGE}` : USAGE);
  },
};

/** The pieces of a vocab.txt, one per line as BertTokenizer reads them (ids = line numbers from 0). */
export function readVocabTxt(text: string): string[] {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

async function fromVocab(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    {
      args: argv,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        cased: { type: "boolean", default: false },
        force: { type: "boolean", default: false },
      },
    },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`give one vocab.txt\n${USAGE}`);
  requireFlag(values.out, "--out", USAGE);
  const [vocabFile] = positionals;
  const out = path.resolve(values.out);
  if (!values.force && existsSync(out))
    throw new UsageError(`${values.out} exists; pass --force to overwrite it`);

  let text: string;
  try {
    text = readFileSync(vocabFile, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${vocabFile}: ${(err as Error).message}`);
  }
  const vocab = readVocabTxt(text);
  const present = new Set(vocab);
  const missing = REQUIRED.filter((t) => !present.has(t));
  if (missing.length > 0)
    throw new UsageError(
      `${vocabFile} has no ${missing.join(", ")} token${missing.length > 1 ? "s" : ""}; ` +
        `from-vocab builds BERT WordPiece tokenizers, whose vocab.txt has ${REQUIRED.join(", ")} ` +
        `(a model with other special tokens needs its own tokenizer.json)`,
    );
  const repeated = vocab.length - present.size;
  if (repeated > 0)
    console.error(
      `warning: ${vocabFile} repeats ${repeated} piece(s); as in BertTokenizer, each keeps its last line's id`,
    );

  const json = makeTokenizerJson(vocab, { lowercase: !values.cased });
  const tok = loadTokenizer(json); // resolves every role, so a file that would not load is never written
  writeAtomically(out, `${JSON.stringify(json, null, 2)}\n`, values.force);

  const s = tok.specialIds;
  const roles = [
    `[PAD]=${s.pad}`,
    `[UNK]=${s.unk}`,
    `[CLS]=${s.cls}`,
    `[SEP]=${s.sep}`,
    s.mask === undefined ? "no [MASK]" : `[MASK]=${s.mask}`,
  ];
  console.log(
    `wrote ${values.out}: ${tok.vocabSize} pieces, ${values.cased ? "cased" : "lower-cased"}, ${roles.join(" ")}`,
  );
  return 0;
}

/**
 * Writes `file` through a temporary file in the same directory. Without `overwrite`, the final step is a hard
 * link, which fails if the file appeared meanwhile; with it, a rename, which replaces it. Either way a reader
 * sees the old file or the whole new one, and a failure leaves no temporary file behind.
 */
function writeAtomically(file: string, content: string, overwrite: boolean) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    writeFileSync(tmp, content, { flag: "wx" });
    if (overwrite) renameSync(tmp, file);
    else {
      try {
        linkSync(tmp, file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EEXIST") throw new UsageError(`${file} exists; pass --force to overwrite it`);
        // A file system without hard links: check, then rename (the window between them is tiny).
        if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EXDEV") throw err;
        if (existsSync(file)) throw new UsageError(`${file} exists; pass --force to overwrite it`);
        renameSync(tmp, file);
      }
    }
  } finally {
    rmSync(tmp, { force: true });
  }
}
