/**
 * Registry errors: every failure is `{ "error": { "code", "message", "field"? } }` with a status that says
 * whose fault it is. Handlers throw `ApiError` (an HttpError); src/http/errors.ts's `httpErrorHandler` renders it.
 */
import type { z } from "zod";
import { HttpError } from "../http/errors";

export type ApiErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 500 | 503;

export interface ApiErrorBody {
  error: { code: string; message: string; field?: string };
}

export class ApiError extends HttpError {
  override name = "ApiError";
  declare readonly status: ApiErrorStatus;
  constructor(
    status: ApiErrorStatus,
    code: string,
    message: string,
    /** Dotted path of the offending field (`artifact.sha256`, `status`, `model`), when one is to blame. */
    field?: string,
  ) {
    super(
      status,
      code,
      message,
      field,
      status === 401 ? { "WWW-Authenticate": 'Bearer realm="sluice-registry"' } : {},
    );
  }
}
export const badRequest = (message: string, field?: string) =>
  new ApiError(400, "bad_request", message, field);
export const unprocessable = (code: string, message: string, field?: string) =>
  new ApiError(422, code, message, field);
export const notFound = (what: string, field?: string) =>
  new ApiError(404, "not_found", `${what} not found`, field);
export const conflict = (code: string, message: string, field?: string) =>
  new ApiError(409, code, message, field);

/** The first zod issue as an ApiError naming its field (prefixed, e.g. `query.minAccuracy`). */
export function fromZodError(
  error: z.ZodError,
  opts: { status: 400 | 422; code: string; prefix?: string },
): ApiError {
  const issue = error.issues[0];
  // A key a strict object does not know is blamed on that key, not on the object that holds it.
  const at = issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]] : issue.path;
  const path = at.map(String).join(".");
  const field = [opts.prefix, path].filter(Boolean).join(".") || undefined;
  return new ApiError(opts.status, opts.code, field ? `${field}: ${issue.message}` : issue.message, field);
}
