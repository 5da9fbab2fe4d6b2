/**
 * What a model's graph bounds beyond its io signature, read once when its session loads: the values of every
 * input that indexes an embedding table directly (token ids < the word table's rows, token types < the type
 * table's) and the longest sequence its position table takes. Requests are checked against these before
 * onnxruntime runs (oip.ts `checkModelLimits`), so an id past the vocabulary is a 400 naming the element
 * rather than the runtime's Gather error.
 */
import { decodeModel } from "../core/onnx/codec";
import { findEmbeddings, positionLimit, type RunProbe } from "../core/onnx/embeddings";

export interface ModelLimits {
  /** Input name -> exclusive upper bound of its values (the rows of the table it indexes). */
  valueBounds: Record<string, number>;
  /** Longest sequence the position table takes, when the graph proves one. */
  maxPositions?: number;
}

export const NO_LIMITS: ModelLimits = { valueBounds: {} };

/** Initializers above this many elements are read for their dims only (a position-id buffer has ~512). */
const STRUCTURE_ONLY_ABOVE = 16_384;

/**
 * The limits of `model` (ONNX bytes). A graph this cannot read yields no limits: onnxruntime, which did load
 * it, still guards it (and its failures are answered without its message).
 */
export async function readModelLimits(model: Uint8Array, run: RunProbe): Promise<ModelLimits> {
  let graph: ReturnType<typeof decodeModel>;
  try {
    // Structure only: the tables' dims are all that is read of the weights, and copying every weight would
    // double the model's memory in the isolate while it loads. Small initializers (the position-id buffer
    // the probe runs on) keep their data.
    graph = decodeModel(model, { structureOnlyAbove: STRUCTURE_ONLY_ABOVE });
  } catch (err) {
    console.warn(`gateway: cannot read the model's limits: ${err instanceof Error ? err.message : err}`);
    return NO_LIMITS;
  }
  const valueBounds: Record<string, number> = {};
  for (const e of findEmbeddings(graph)) {
    if (e.input === undefined) continue;
    valueBounds[e.input] = Math.min(valueBounds[e.input] ?? e.rows, e.rows);
  }
  const maxPositions = await positionLimit(graph, run);
  return maxPositions === undefined ? { valueBounds } : { valueBounds, maxPositions };
}
