/**
 * Which fields of a user's data rows hold the text and, for sentence-pair tasks, the second text. Resolved once
 * per file (from the flags, else from the first row's field names) into `DataFields`, which the run then
 * carries: train, evaluation and export all read the same two fields.
 */

/** The resolved fields: `textPair` set means every row is a pair (text, textPair). */
export interface DataFields {
  text: string;
  textPair?: string;
}

/** What the user asked for on the command line (`--text-field`, `--text-pair-field`). */
export interface DataFieldFlags {
  textField?: string;
  textPairField?: string;
}

/** The usual (first, second) field names of pair datasets (HF GLUE/SNLI/QNLI-style), tried in this order. */
export const PAIR_FIELD_NAMES: readonly (readonly [string, string])[] = [
  ["text", "text_pair"],
  ["sentence1", "sentence2"],
  ["premise", "hypothesis"],
  ["question", "sentence"],
];

export const DEFAULT_TEXT_FIELD = "text";

/**
 * The fields for a file whose first row is `first`. Flags win; a pair flag without a text flag pairs with its
 * usual partner (`hypothesis` with `premise`), else `text`. Without flags, the first usual pair the row has
 * makes it a pair task; otherwise single texts in `text`.
 */
export function resolveDataFields(flags: DataFieldFlags, first: Record<string, unknown>): DataFields {
  const has = (name: string) => typeof first[name] === "string";
  if (flags.textPairField !== undefined) {
    const partner = PAIR_FIELD_NAMES.find(([, b]) => b === flags.textPairField)?.[0];
    return { text: flags.textField ?? partner ?? DEFAULT_TEXT_FIELD, textPair: flags.textPairField };
  }
  const found = PAIR_FIELD_NAMES.find(
    ([a, b]) => (flags.textField === undefined || flags.textField === a) && has(a) && has(b),
  );
  if (found) return { text: found[0], textPair: found[1] };
  return { text: flags.textField ?? DEFAULT_TEXT_FIELD };
}

/** A stable key of the fields, for caches of parsed files. */
export function fieldsKey(flags: DataFieldFlags): string {
  return `${flags.textField ?? ""}\u0000${flags.textPairField ?? ""}`;
}
