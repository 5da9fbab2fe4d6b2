/**
 * Gateway errors, rendered in the shape the path's protocol uses (src/http/errors.ts): OIP v2 `{ "error": "…" }`,
 * Sluice's own routes `{ "error": { code, message, field } }`. The message names the offending field, and bad
 * input is never a 500.
 */
import type { z } from "zod";
import { HttpError } from "../http/errors";

export type GatewayErrorStatus = 400 | 404 | 413 | 415 | 422 | 500 | 503;

export class GatewayError extends HttpError {
  override name = "GatewayError";
  declare readonly status: GatewayErrorStatus;
  constructor(
    status: GatewayErrorStatus,
    code: string,
    message: string,
    /** Dotted path of the offending field (`inputs[0].shape`, `texts`, `x-sluice-min-accuracy`). */
    field?: string,
    /** Extra headers (e.g. x-sluice-sla on a refused request). */
    headers: Record<string, string> = {},
  ) {
    super(status, code, message, field, headers);
  }
}

export const invalid = (message: string, field: string) =>
  new GatewayError(400, "bad_request", field ? `${field}: ${message}` : message, field);

/** The first zod issue, as a 400 naming its field in `inputs[0].shape` form. */
export function fromZod(error: z.ZodError, prefix?: string): GatewayError {
  const issue = error.issues[0];
  const field = fieldPath([...(prefix ? [prefix] : []), ...issue.path]);
  return invalid(issue.message, field || "body");
}

export function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
}
