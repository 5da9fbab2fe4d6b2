/**
 * The one parser for path parameters, used by every route module (registry, inference, experiments), so a
 * string that names a version on one route names the same version on all of them and an odd spelling is
 * refused everywhere. `Number()`/`z.coerce` accept `0x1`, `01`, `+1`, ` 1` and `1e0` as 1; these parsers take
 * only the canonical spelling: decimal digits, no sign, no leading zero, no whitespace, bounded.
 */
import { z } from "zod";
import { MODEL_NAME_PATTERN, MODEL_NAME_RULE } from "../core/manifest";

/** Largest id or version a path may name (9 digits: well inside both SQLite's and JS's safe integers). */
export const MAX_PATH_ID = 999_999_999;

/** Canonical positive decimal integers: `1`..`999999999`. */
const POSITIVE_DECIMAL = /^[1-9][0-9]{0,8}$/;

/** A path's positive integer (version, key id, experiment id), or null when it is not spelled canonically. */
export function parsePositiveId(raw: string | undefined): number | null {
  if (raw === undefined || !POSITIVE_DECIMAL.test(raw)) return null;
  return Number(raw);
}

export const isModelName = (raw: string | undefined): raw is string =>
  raw !== undefined && MODEL_NAME_PATTERN.test(raw);

/** zod form of `parsePositiveId`, for modules that parse parameters with zod schemas. */
export const PositiveIdParam = z
  .string()
  .regex(
    POSITIVE_DECIMAL,
    `must be a positive decimal integer (no sign, no leading zero, at most ${MAX_PATH_ID})`,
  )
  .transform(Number);

/** zod form of the model-name rule. */
export const ModelNameParam = z.string().regex(MODEL_NAME_PATTERN, MODEL_NAME_RULE);
