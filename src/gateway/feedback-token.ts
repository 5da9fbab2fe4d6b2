/**
 * Feedback tokens: what lets a label posted to `POST /v1/feedback` be attributed to the variant that answered a
 * request served outside an experiment (SLA-routed or pinned). Experiment requests have their own id, recorded
 * server-side with the exposure (src/gateway/experiments/serving.ts); a routed request writes nothing, so its
 * attribution travels with the response instead, in `x-sluice-request-id`, signed by the gateway:
 *
 *   r1.<version>.<predicted label index>.<served at, unix s>.<unit digest or ->.<nonce>.<mac>.<model>
 *
 * The MAC (HMAC-SHA256, 128 bits kept) covers every field and also the model's and the variant's registry ids,
 * which never leave the Worker: a token minted before a model (or variant) was deleted and re-created under the
 * same name (or version) does not verify against the new one. A client can read a token but not make or alter
 * one, so feedback can only name a variant, a prediction and a unit that the gateway itself served; the nonce
 * is the stored feedback's key, so each served request takes one label. Writing nothing per served request
 * keeps the serving path free of D1 writes; only labelled requests cost a row.
 *
 * The key is derived (HKDF-SHA256) from the Worker's ADMIN_TOKEN secret, which every deployment that registers
 * variants has: rotating ADMIN_TOKEN voids the tokens already handed out. Without ADMIN_TOKEN no token is made.
 */

import { toBase64Url, toHex } from "../core/bytes";

/** The response header carrying the token (the same one an experiment's request id travels in). */
export const FEEDBACK_TOKEN_HEADER = "x-sluice-request-id";

/** Routed requests' unit: this request header (the experiments' default unit header), hashed. */
export const ROUTED_UNIT_HEADER = "x-sluice-user";

const PREFIX = "r1";
const NONCE_BYTES = 16;
const MAC_BYTES = 16;
const B64URL = "[A-Za-z0-9_-]";
const TOKEN = new RegExp(
  `^${PREFIX}\\.([1-9][0-9]{0,9})\\.(0|[1-9][0-9]{0,4})\\.([1-9][0-9]{0,10})\\.(u[0-9a-f]{16}|-)\\.(${B64URL}{22})\\.(${B64URL}{22})\\.([a-z0-9][a-z0-9._-]{0,63})$`,
);
/** Longest token: the fields' limits above (model names are at most 64 characters). */
export const MAX_FEEDBACK_TOKEN_LENGTH = 2 + 11 + 6 + 12 + 18 + 23 + 23 + 65;

export interface FeedbackClaim {
  model: string;
  version: number;
  /** Index of the predicted label in the model's labels. */
  predicted: number;
  /** When the request was served, unix seconds. */
  servedAt: number;
  /** Digest of the request's unit (`u` + 16 hex), or null when it had none. */
  unit: string | null;
  /** The token's random part, the stored feedback's key. */
  nonce: string;
}

/** The registry ids the MAC binds the token to (from the catalog row at minting, from D1 at verification). */
export interface FeedbackBinding {
  modelId: number;
  variantId: number;
}

const encoder = new TextEncoder();

const base64url = toBase64Url;

// One derived key per secret: an isolate sees one ADMIN_TOKEN, so this holds one entry (two across a rotation).
// (The key's type is spelled from the API: Node's types, which the node test project uses, lack a global CryptoKey.)
type HmacKey = Awaited<ReturnType<typeof crypto.subtle.deriveKey>>;
const keys = new Map<string, Promise<HmacKey>>();

function signingKey(secret: string): Promise<HmacKey> {
  let key = keys.get(secret);
  if (!key) {
    key = (async () => {
      const ikm = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveKey"]);
      return crypto.subtle.deriveKey(
        {
          name: "HKDF",
          hash: "SHA-256",
          salt: new Uint8Array(0),
          info: encoder.encode("sluice feedback token v1"),
        },
        ikm,
        { name: "HMAC", hash: "SHA-256", length: 256 },
        false,
        ["sign"],
      );
    })();
    if (keys.size >= 2) keys.clear();
    keys.set(secret, key);
  }
  return key;
}

async function mac(secret: string, body: string, model: string, binding: FeedbackBinding): Promise<string> {
  const signed = `${body}\n${model}\n${binding.modelId}\n${binding.variantId}`;
  const full = await crypto.subtle.sign("HMAC", await signingKey(secret), encoder.encode(signed));
  return base64url(new Uint8Array(full, 0, MAC_BYTES));
}

const bodyOf = (c: FeedbackClaim) =>
  `${PREFIX}.${c.version}.${c.predicted}.${c.servedAt}.${c.unit ?? "-"}.${c.nonce}`;

/** Digest of a unit id as tokens carry it: the raw id (a user name, say) never appears in the token. */
export async function unitDigest(unit: string | null | undefined): Promise<string | null> {
  const value = unit?.trim();
  if (!value) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(value.slice(0, 256))));
  return `u${toHex(digest.subarray(0, 8))}`;
}

export async function mintFeedbackToken(
  secret: string,
  claim: Omit<FeedbackClaim, "nonce">,
  binding: FeedbackBinding,
): Promise<string> {
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
  const body = bodyOf({ ...claim, nonce });
  return `${body}.${await mac(secret, body, claim.model, binding)}.${claim.model}`;
}

/** Whether `requestId` has a feedback token's shape (then it is one, or a forgery: never an experiment id). */
export function isFeedbackToken(requestId: string): boolean {
  return requestId.startsWith(`${PREFIX}.`);
}

/** The token's claim, unverified (to find the registry ids to verify it with); null when malformed. */
export function parseFeedbackToken(token: string): (FeedbackClaim & { mac: string }) | null {
  const m = TOKEN.exec(token);
  if (!m) return null;
  return {
    version: Number(m[1]),
    predicted: Number(m[2]),
    servedAt: Number(m[3]),
    unit: m[4] === "-" ? null : m[4],
    nonce: m[5],
    mac: m[6],
    model: m[7],
  };
}

/** Whether the token's MAC is the gateway's for these registry ids (compared in constant time). */
export async function verifyFeedbackToken(
  secret: string,
  claim: FeedbackClaim & { mac: string },
  binding: FeedbackBinding,
): Promise<boolean> {
  const expected = encoder.encode(await mac(secret, bodyOf(claim), claim.model, binding));
  const given = encoder.encode(claim.mac);
  if (expected.length !== given.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ given[i];
  return diff === 0;
}
