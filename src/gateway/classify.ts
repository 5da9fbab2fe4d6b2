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
  z.object({ text: Text, text_pair: Text.optional() }).strict(),
  z
    .object({
      texts: z.array(Text).min(1, "must hold at least one text"),
      /** The second text of each pair, aligned with `texts` (sentence-pair variants only). */
      text_pairs: z.array(Text).optional(),
    })
    .strict(),
]);

/** What a classify body asks for: the texts and, for sentence pairs, each one's second text (same order). */
export interface ClassifyRequest {
  texts: string[];
  pairs?: string[];
  /** The body's name of the pair field (`text_pair` or `text_pairs`), for messages. */
  pairField: "text_pair" | "text_pairs";
}

/** The texts (and pairs) of a classify body; a 400 naming `text`/`texts`/`text_pair`/`text_pairs` otherwise. */
export function parseClassifyBody(body: unknown, maxBatch: number): ClassifyRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalid('must be an object with "text" or "texts"', "body");
  }
  const keys = Object.keys(body);
  if (keys.includes("text") && keys.includes("texts"))
    throw invalid('give "text" or "texts", not both', "body");
  if (!keys.includes("text") && !keys.includes("texts")) throw invalid('needs "text" or "texts"', "body");
  // The pair field goes with its text field: a single `text_pair` beside `texts` is a mistake worth naming.
  if (keys.includes("texts") && keys.includes("text_pair"))
    throw invalid('goes with "text"; with "texts" give "text_pairs", one per text', "text_pair");
  if (keys.includes("text") && keys.includes("text_pairs"))
    throw invalid('goes with "texts"; with "text" give "text_pair"', "text_pairs");
  const schema = keys.includes("text") ? ClassifyBody.options[0] : ClassifyBody.options[1];
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw fromZod(parsed.error);
  const d = parsed.data;
  const request: ClassifyRequest =
    "text" in d
      ? {
          texts: [d.text],
          pairs: d.text_pair === undefined ? undefined : [d.text_pair],
          pairField: "text_pair",
        }
      : { texts: d.texts, pairs: d.text_pairs, pairField: "text_pairs" };
  if (request.texts.length > maxBatch)
    throw invalid(`holds ${request.texts.length} texts; the limit is ${maxBatch}`, "texts");
  if (request.pairs && request.pairs.length !== request.texts.length)
    throw invalid(
      `holds ${request.pairs.length} second texts for ${request.texts.length} texts; give one per text, in the same order`,
      "text_pairs",
    );
  return request;
}

/**
 * A 400 unless the body's shape fits the variant: a sentence-pair variant (manifest `input.textPairs`) needs
 * every text's pair, a single-text variant takes none. `variant` names it in the message.
 */
export function checkPairsFit(request: ClassifyRequest, takesPairs: boolean, variant: string): void {
  if (takesPairs && !request.pairs)
    throw invalid(
      `${variant} classifies sentence pairs: give "${request.pairField}" (the second text of each pair) beside "${request.pairField === "text_pair" ? "text" : "texts"}"`,
      request.pairField,
    );
  if (!takesPairs && request.pairs)
    throw invalid(
      `${variant} classifies single texts, not pairs: leave "${request.pairField}" out`,
      request.pairField,
    );
}

/** The inputs classify knows how to fill; a model needing others must be called through /v2 infer. */
const FILLABLE = new Set(["input_ids", "attention_mask", "token_type_ids"]);

/**
 * Tokenizes a batch into the model's inputs: single texts, or with `pairs` sentence pairs through the
 * tokenizer's pair template, whose token type ids feed `token_type_ids` when the model has it.
 */
export function classifyFeeds(
  tokenizer: LoadedTokenizer,
  texts: string[],
  io: IoSignature,
  maxTokens: number,
  pairs?: readonly string[],
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
  if (pairs && !tokenizer.pairTemplate)
    throw new GatewayError(
      422,
      "no_pair_template",
      "this variant's tokenizer.json has no pair template (post_processor), so it cannot encode text pairs",
      "model",
    );
  const batch = encodeBatch(tokenizer, texts, maxTokens, fixedLen, pairs);
  const dims = [batch.batch, batch.seqLen];
  const tensors: Record<string, BigInt64Array> = {
    input_ids: batch.inputIds,
    attention_mask: batch.attentionMask,
    // The pair template's type ids (0 then 1 for BERT), zeros for single texts.
    token_type_ids: batch.tokenTypeIds,
  };
  // Each in the element type the model declares: a tf2onnx-style export takes int32 ids.
  return io.inputs.map((s) =>
    s.datatype === "INT32"
      ? { name: s.name, type: "int32", data: Int32Array.from(tensors[s.name], Number), dims }
      : { name: s.name, type: "int64", data: tensors[s.name], dims },
  );
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
        // classifyFeeds' feeds are int64 or int32: the rows are copied as they are, whichever.
        const src = f.data as BigInt64Array | Int32Array;
        const width = src.length / f.dims[0];
        const data = (
          src instanceof Int32Array ? new Int32Array(size * width) : new BigInt64Array(size * width)
        ) as typeof src;
        for (let r = 0; r < size; r++) {
          const from = (start + Math.min(r, rows - 1)) * width;
          (data as Int32Array).set(src.subarray(from, from + width) as Int32Array, r * width);
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
