/**
 * `POST /v1/models/:model/classify`: texts in, labels out. Tokenizes with the variant's own tokenizer.json (the
 * same @huggingface/tokenizers glue the trainer uses, `src/core/tokenizer.ts`), runs the batch in one session
 * call, and turns logits into probabilities.
 */
import { z } from "zod";
import type { IoSignature } from "../core/manifest";
import { encodeBatch, type LoadedTokenizer } from "../core/tokenizer";
import { fromZod, GatewayError, invalid } from "./errors";
import type { Feed } from "./oip";

export const MAX_TEXT_CHARS = 100_000;

const Text = z
  .string()
  .min(1, "must not be empty")
  .max(MAX_TEXT_CHARS, `must be at most ${MAX_TEXT_CHARS} characters`);

export const ClassifyBody = z.union([
  z.object({ text: Text }).strict(),
  z.object({ texts: z.array(Text).min(1, "must hold at least one text") }).strict(),
]);

/** The texts of a classify body; a 400 naming `text`/`texts` otherwise. */
export function parseClassifyBody(body: unknown, maxBatch: number): string[] {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalid('must be an object with "text" or "texts"', "body");
  }
  const keys = Object.keys(body);
  if (keys.includes("text") && keys.includes("texts"))
    throw invalid('give "text" or "texts", not both', "body");
  if (!keys.includes("text") && !keys.includes("texts")) throw invalid('needs "text" or "texts"', "body");
  const schema = keys.includes("text") ? ClassifyBody.options[0] : ClassifyBody.options[1];
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw fromZod(parsed.error);
  const texts = "text" in parsed.data ? [parsed.data.text] : parsed.data.texts;
  if (texts.length > maxBatch)
    throw invalid(`holds ${texts.length} texts; the limit is ${maxBatch}`, "texts");
  return texts;
}

/** The inputs classify knows how to fill; a model needing others must be called through /v2 infer. */
const FILLABLE = new Set(["input_ids", "attention_mask", "token_type_ids"]);

/** Tokenizes a batch into the model's inputs. */
export function classifyFeeds(
  tokenizer: LoadedTokenizer,
  texts: string[],
  io: IoSignature,
  maxTokens: number,
): Feed[] {
  const unknown = io.inputs.filter((s) => !FILLABLE.has(s.name)).map((s) => s.name);
  if (unknown.length > 0 || !io.inputs.some((s) => s.name === "input_ids")) {
    throw new GatewayError(
      422,
      "not_a_text_classifier",
      `classify fills input_ids, attention_mask and token_type_ids; this model takes ${io.inputs.map((s) => s.name).join(", ")} (use /v2/models/:model/infer)`,
      "model",
    );
  }
  // A fixed sequence axis (a tf2onnx-style or fixed-shape export) is padded to, never exceeded.
  const seqDim = io.inputs.find((s) => s.name === "input_ids")?.shape[1];
  const fixedLen = seqDim !== undefined && seqDim > 0 ? seqDim : undefined;
  const batch = encodeBatch(tokenizer, texts, maxTokens, fixedLen);
  const dims = [batch.batch, batch.seqLen];
  const tensors: Record<string, BigInt64Array> = {
    input_ids: batch.inputIds,
    attention_mask: batch.attentionMask,
    token_type_ids: new BigInt64Array(batch.inputIds.length),
  };
  return io.inputs.map((s) => ({ name: s.name, type: "int64", data: tensors[s.name], dims }));
}

/**
 * The batch size the model's signature fixes on `input_ids` axis 0 (a model exported at a fixed batch and not
 * made dynamic by import), or undefined for a dynamic batch axis, which takes any number of rows in one run.
 */
export function fixedBatchOf(io: IoSignature): number | undefined {
  const d = io.inputs.find((s) => s.name === "input_ids")?.shape[0];
  return d !== undefined && d > 0 ? d : undefined;
}

/**
 * classifyFeeds' feeds split along axis 0 into runs of exactly `size` rows, for a model whose batch axis is fixed: the last run
 * is filled up by repeating its last row, and `rows` says how many of each run's results are real.
 */
export function fixedBatchRuns(feeds: Feed[], size: number): { feeds: Feed[]; rows: number }[] {
  const total = feeds[0]?.dims[0] ?? 0;
  const runs: { feeds: Feed[]; rows: number }[] = [];
  for (let start = 0; start < total; start += size) {
    const rows = Math.min(size, total - start);
    runs.push({
      rows,
      feeds: feeds.map((f) => {
        const src = f.data as BigInt64Array; // classifyFeeds' feeds are int64
        const width = src.length / f.dims[0];
        const data = new BigInt64Array(size * width);
        for (let r = 0; r < size; r++) {
          const from = (start + Math.min(r, rows - 1)) * width;
          data.set(src.subarray(from, from + width), r * width);
        }
        return { ...f, data, dims: [size, ...f.dims.slice(1)] };
      }),
    });
  }
  return runs;
}

export interface Classification {
  label: string;
  score: number;
  scores: Record<string, number>;
}

/** Softmax over each row of [batch, labels] logits, in float64. */
export function classifyLogits(logits: ArrayLike<number>, batch: number, labels: string[]): Classification[] {
  const k = labels.length;
  if (logits.length !== batch * k) {
    throw new Error(`logits have ${logits.length} values; expected ${batch} x ${k} labels`);
  }
  const out: Classification[] = [];
  for (let b = 0; b < batch; b++) {
    const row = Array.from({ length: k }, (_, j) => Number(logits[b * k + j]));
    const max = Math.max(...row);
    const exp = row.map((x) => Math.exp(x - max));
    const z = exp.reduce((a, x) => a + x, 0);
    const probs = exp.map((e) => e / z);
    let best = 0;
    for (let j = 1; j < k; j++) if (probs[j] > probs[best]) best = j;
    out.push({
      label: labels[best],
      score: probs[best],
      scores: Object.fromEntries(labels.map((l, j) => [l, probs[j]])),
    });
  }
  return out;
}
