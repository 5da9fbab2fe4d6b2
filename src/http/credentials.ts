/**
 * The one parser of request credentials: `Authorization: Bearer <token>` (RFC 6750) and `x-api-key: <token>`.
 * It only reads headers and checks their form and size; what a token is worth (admin token, API key) is decided
 * by the auth module (src/registry/auth.ts). Every rejection names the header to blame and never echoes the
 * credential back.
 */

/** Longest credential header accepted (bytes of the header value); longer is refused before any hashing. */
export const MAX_CREDENTIAL_CHARS = 1024;

export type Credential =
  | { kind: "token"; token: string; field: CredentialField }
  | { kind: "missing" }
  | { kind: "malformed"; field: CredentialField; message: string };

export type CredentialField = "Authorization" | "x-api-key";

/** Visible ASCII only: a token never contains spaces, control characters or non-ASCII. */
const TOKEN = /^[\x21-\x7e]+$/;
const BEARER = /^Bearer +([^ ]+) *$/i;

/** `Authorization: Bearer <token>`, parsed; the header absent is `missing`, anything else malformed. */
export function parseBearer(header: string | undefined | null): Credential {
  if (header === undefined || header === null || header === "") return { kind: "missing" };
  const field = "Authorization";
  if (header.length > MAX_CREDENTIAL_CHARS) {
    return { kind: "malformed", field, message: `longer than ${MAX_CREDENTIAL_CHARS} characters` };
  }
  const match = BEARER.exec(header);
  if (!match || !TOKEN.test(match[1])) {
    return { kind: "malformed", field, message: "must be 'Bearer <token>'" };
  }
  return { kind: "token", token: match[1], field };
}

/**
 * The credential of a request: `Authorization: Bearer <token>` or `x-api-key: <token>`. Both may be sent only
 * when they carry the same token (some clients set both); two different tokens are refused, not guessed between.
 */
export function requestCredential(headers: Headers): Credential {
  const bearer = parseBearer(headers.get("authorization"));
  const raw = headers.get("x-api-key");
  if (raw === null || raw === "") return bearer;
  const field = "x-api-key";
  if (raw.length > MAX_CREDENTIAL_CHARS) {
    return { kind: "malformed", field, message: `longer than ${MAX_CREDENTIAL_CHARS} characters` };
  }
  const token = raw.trim();
  if (!TOKEN.test(token)) return { kind: "malformed", field, message: "must be a single token" };
  if (bearer.kind === "malformed") return bearer;
  if (bearer.kind === "token" && bearer.token !== token) {
    return {
      kind: "malformed",
      field,
      message: "differs from the Authorization bearer token; send the key once",
    };
  }
  return { kind: "token", token, field };
}
