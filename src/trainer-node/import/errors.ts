/**
 * An import refusal: the model is not one Sluice can gate, or its file is not a usable encoder. The message
 * names the node, tensor or flag and what was expected; the CLI exits 2 and writes nothing.
 */
export class ImportError extends Error {
  override name = "ImportError";
}
