/**
 * Helpers for Worker tests that need registered models: thin wrappers over the registry HTTP API, going
 * through the Worker's fetch handler against real local D1 and R2. The model files themselves come from
 * ../shared/variant-files (also used by the registry benchmark).
 */
import { SELF } from "cloudflare:test";
import { expect } from "vitest";
import { makeVariantFiles, type VariantOptions, variantForm } from "../shared/variant-files";

export * from "../shared/variant-files";

export const ADMIN_TOKEN = "test-admin-token";
export const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

/** Mints an API key through `POST /v1/keys` (admin); returns the key and its id. */
export async function mintKey(
  body: { scopes?: string[]; models?: string[] } = { scopes: ["infer", "feedback"] },
  via: Fetcher = SELF,
): Promise<{ key: string; id: number }> {
  const res = await api("/v1/keys", jsonInit("POST", body), via);
  if (res.status !== 201) throw new Error(`mint key: ${res.status} ${await res.text()}`);
  return (await res.json()) as { key: string; id: number };
}

let shared: Promise<string> | undefined;
/** One `infer`+`feedback` key for tests that just need to get past access control. */
export function sharedKey(): Promise<string> {
  shared ??= mintKey().then((k) => k.key);
  return shared;
}

/** `Authorization: Bearer <shared key>` merged into `headers`. */
export async function withKey(headers: Record<string, string> = {}): Promise<Record<string, string>> {
  return { Authorization: `Bearer ${await sharedKey()}`, ...headers };
}

/** Anything with a fetch(Request): `SELF`, or a registry app built with test hooks (see registry-atomicity). */
export interface Fetcher {
  fetch(request: Request): Promise<Response>;
}

/** Calls the Worker (or `via`) with a path relative to the gateway. */
export function api(path: string, init: RequestInit = {}, via: Fetcher = SELF): Promise<Response> {
  return via.fetch(new Request(`http://gateway${path}`, init));
}

export function jsonInit(
  method: string,
  body: unknown,
  headers: Record<string, string> = admin,
): RequestInit {
  return { method, headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

/** A request whose body is sent as is (not JSON-encoded) with `contentType`: malformed and wrong-type bodies. */
export function rawInit(
  method: string,
  body: string,
  contentType: string,
  headers: Record<string, string> = admin,
): RequestInit {
  return { method, headers: { ...headers, "Content-Type": contentType }, body };
}

/** The gateway's error JSON. */
export type ErrorBody = { error: { code: string; message: string; field?: string } };

/** Asserts an error response's status, code and field (which the body must name); returns the body. */
export async function expectError(
  res: Response,
  status: number,
  code: string,
  field?: string,
): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  expect({ status: res.status, code: body.error.code, field: body.error.field }).toEqual({
    status,
    code,
    field,
  });
  return body;
}

/** Registers a model whose labels/io/task match `makeVariantFiles(name, opts)`. */
export async function createModel(
  name: string,
  opts: VariantOptions = {},
  via: Fetcher = SELF,
): Promise<Response> {
  const { manifest } = await makeVariantFiles(name, opts);
  return api(
    "/v1/models",
    jsonInit("POST", { name, task: manifest.model.task, labels: manifest.labels, io: manifest.io }),
    via,
  );
}

export function uploadVariant(
  name: string,
  files: { manifest: unknown; model: Uint8Array; tokenizer?: Uint8Array },
  via: Fetcher = SELF,
): Promise<Response> {
  return api(
    `/v1/models/${name}/variants`,
    { method: "POST", headers: admin, body: variantForm(files) },
    via,
  );
}

/** Builds files for a fresh variant and uploads them (the model must exist); returns response and files. */
export async function registerVariant(name: string, opts: VariantOptions = {}, via: Fetcher = SELF) {
  const files = await makeVariantFiles(name, opts);
  const res = await uploadVariant(name, files, via);
  return {
    res,
    files,
    body: (await res.json()) as { variant: Record<string, unknown> & { version: number } },
  };
}

/** A model with `n` registered variants (seeds 1..n); returns the upload responses' variants. */
export async function seedModel(name: string, variants: VariantOptions[], via: Fetcher = SELF) {
  const created = await createModel(name, variants[0], via);
  if (created.status !== 201)
    throw new Error(`createModel ${name}: ${created.status} ${await created.text()}`);
  const out = [];
  for (const [i, v] of variants.entries()) {
    const r = await registerVariant(name, { seed: i + 1, ...v }, via);
    if (r.res.status !== 201)
      throw new Error(`registerVariant ${name}: ${r.res.status} ${JSON.stringify(r.body)}`);
    out.push(r.body.variant);
  }
  return out;
}
