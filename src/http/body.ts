/**
 * The one reader of request bodies. Every route that takes a body reads it here, with the size limit that
 * route passes in (`BODY_LIMITS` below, or the var-set limits of the gateway's and registry's configuration):
 * - the body is read from the stream with a byte cap, so a body larger than the limit is a 413 whether or not it
 *   declared a `Content-Length` (a declared length over the limit is refused before anything is read; a smaller
 *   declared length is not trusted);
 * - one media-type rule: a non-empty JSON body must be `application/json` (`+json` suffixes included), else 415
 *   naming `Content-Type`;
 * - JSON that does not parse is a 400 naming `body`.
 * Errors are HttpErrors, so each path answers them in its own shape (src/http/errors.ts): OIP routes
 * `{ "error": "…" }`, the rest `{ "error": { code, message, field } }`.
 */
import type { Context } from "hono";
import { HttpError } from "./errors";

/**
 * The fixed byte limits of the Worker's bodies. The two that a deployment may change are vars, parsed with the
 * rest of the configuration: inference bodies `MAX_INFER_BODY_MB` (src/gateway/config.ts, `maxBodyBytes`) and
 * variant uploads `MAX_UPLOAD_MB` (src/registry/config.ts, `maxUploadBytes`).
 */
export const BODY_LIMITS = {
  /** Registry JSON bodies (models, aliases, SLAs, keys). */
  registryJsonBytes: 1024 * 1024,
  /** Experiment and feedback JSON bodies. */
  experimentJsonBytes: 64 * 1024,
  /** The dashboard's sign-in form (one token field). */
  formBytes: 4096,
} as const;

const tooLarge = (limit: number) =>
  new HttpError(413, "payload_too_large", `body: exceeds ${limit} bytes`, "body");

/**
 * The body's bytes, at most `maxBytes` of them: 413 when the declared `Content-Length` or the bytes actually
 * sent exceed it.
 *
 * A body that declares its length within the limit is read in one native call (`arrayBuffer()`): in workerd a
 * JS read loop costs an event-loop turn per chunk plus one for the end (in-process, several times the native
 * read of a small inference body). That keeps the bound, because a request from the network cannot carry more
 * than the length it declares (HTTP framing ends the body there); one that does anyway (a Request built
 * in-process with a wrong header) is still a 413, counted once read. A body without a declared length
 * (chunked) is read chunk by chunk and refused at the first chunk past the limit (the stream is cancelled).
 */
export async function readBodyBytes(req: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  const length = declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined;
  if (length !== undefined && length > maxBytes) throw tooLarge(maxBytes);
  if (req.body === null) return new Uint8Array(0);
  if (length !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await req.arrayBuffer());
    } catch {
      throw new HttpError(400, "bad_request", "body: could not be read (connection closed?)", "body");
    }
    if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes);
    return bytes;
  }
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let step: ReadableStreamReadResult<Uint8Array>;
    try {
      step = await reader.read();
    } catch {
      throw new HttpError(400, "bad_request", "body: could not be read (connection closed?)", "body");
    }
    if (step.done) break;
    total += step.value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes);
    }
    chunks.push(step.value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

const decoder = new TextDecoder();
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

export interface JsonBodyOptions {
  maxBytes: number;
  /** What an empty body stands for (registry: `{}`, so all-optional bodies may be left out); unset: a 400. */
  empty?: unknown;
  /**
   * Told how long the body's bytes took to arrive and be read, in ms (the inference routes report it as
   * `server-timing` `body`: mostly waiting for the client's bytes, which is the network's time, not the Worker's).
   */
  received?: (ms: number) => void;
}

/** A JSON body, parsed but not validated (the route validates it with its own zod schema). */
export async function readJsonBody(c: Context, options: JsonBodyOptions): Promise<unknown> {
  const type = c.req.header("content-type");
  const typeIsJson = type !== undefined && JSON_TYPE.test(type);
  const unsupported = () =>
    new HttpError(
      415,
      "unsupported_media_type",
      `Content-Type: must be application/json, got '${(type ?? "none").slice(0, 80)}'`,
      "Content-Type",
    );
  // A body announced with another type is refused before it is read.
  const declared = c.req.header("content-length");
  if (!typeIsJson && declared !== undefined && declared !== "0") throw unsupported();
  const t0 = performance.now();
  const bytes = await readBodyBytes(c.req.raw, options.maxBytes);
  options.received?.(performance.now() - t0);
  const text = decoder.decode(bytes);
  if (text.trim() === "") {
    if (options.empty !== undefined) return options.empty;
    throw new HttpError(400, "bad_request", "body: is empty; send a JSON object", "body");
  }
  if (!typeIsJson) throw unsupported();
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "bad_request", "body: is not valid JSON", "body");
  }
}

/**
 * A form body (`multipart/form-data` or `application/x-www-form-urlencoded`) under the same byte cap. The stream
 * is counted as the form parser reads it rather than buffered first, so a large upload is held in memory once
 * (as its parts), not twice.
 */
export async function readFormBody(c: Context, maxBytes: number): Promise<FormData> {
  const req = c.req.raw;
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > maxBytes) throw tooLarge(maxBytes);
  let total = 0;
  let exceeded = false;
  const counted = req.body?.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        total += chunk.byteLength;
        if (total > maxBytes) {
          exceeded = true;
          controller.error(tooLarge(maxBytes));
        } else controller.enqueue(chunk);
      },
    }),
  );
  try {
    return await new Response(counted ?? null, {
      headers: { "content-type": req.headers.get("content-type") ?? "" },
    }).formData();
  } catch {
    if (exceeded) throw tooLarge(maxBytes);
    throw new HttpError(400, "bad_request", "body: is not a readable form", "body");
  }
}
