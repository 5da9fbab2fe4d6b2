/**
 * The two error shapes the Worker answers with, chosen by path: Open Inference Protocol routes (`/v2/...`)
 * answer `{ "error": "<message>" }` as that protocol specifies; every other route answers
 * `{ "error": { "code", "message", "field"? } }`. Either way the message names the offending field.
 */

export interface ErrorDetail {
  code: string;
  message: string;
  /** Dotted path or header name to blame (`inputs[0].shape`, `Authorization`). */
  field?: string;
}

export const isOipPath = (path: string) => path === "/v2" || path.startsWith("/v2/");

export function errorBody(path: string, e: ErrorDetail): { error: string } | { error: ErrorDetail } {
  return isOipPath(path)
    ? { error: e.message }
    : { error: { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) } };
}
