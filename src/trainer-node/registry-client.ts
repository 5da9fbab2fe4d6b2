/**
 * The CLI's side of the registry HTTP API: a `hono/client` typed from the registry's own routes (`RegistryApp`:
 * a renamed route or changed body breaks the typecheck of push and ls), an upload that reports bytes sent, and
 * error messages that say what the server objected to.
 */
import { type ClientResponse, hc } from "hono/client";
// Type-only: erased at run time, so the CLI loads none of the registry's Worker code.
import type { RegistryApp } from "../registry/routes";

export interface ApiErrorPayload {
  error: { code: string; message: string; field?: string };
}

export class RegistryRequestError extends Error {
  override name = "RegistryRequestError";
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** "422 checksum_mismatch (field artifact.sha256): model.onnx has sha256 ..." from an error response. */
export function describeApiError(status: number, bodyText: string): RegistryRequestError {
  let payload: Partial<ApiErrorPayload> | undefined;
  try {
    payload = JSON.parse(bodyText) as Partial<ApiErrorPayload>;
  } catch {
    payload = undefined;
  }
  const e = payload?.error;
  if (e && typeof e === "object" && typeof e.message === "string") {
    const field = e.field ? ` (field ${e.field})` : "";
    return new RegistryRequestError(
      `server said ${status} ${e.code}${field}: ${e.message}`,
      status,
      e.code,
      e.field,
    );
  }
  const snippet = bodyText.trim().slice(0, 200) || "(empty body)";
  return new RegistryRequestError(`server said ${status}: ${snippet}`, status);
}

/** Normalises `--url` (scheme required, no trailing slash). */
export function parseGatewayUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--url '${url}' is not a URL (e.g. http://localhost:8787)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new Error(`--url must be http:// or https://, got '${url}'`);
  }
  return parsed.toString().replace(/\/+$/, "");
}

function networkError(url: string, err: unknown): RegistryRequestError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  return new RegistryRequestError(`cannot reach ${url}: ${why}`);
}

/**
 * An untyped JSON request, for the scripts and benchmarks that call gateway routes outside the registry's
 * (the CLI uses `registryClient`); non-2xx answers become RegistryRequestError with the server's code and field.
 */
export async function requestJson<T>(
  baseUrl: string,
  path: string,
  init: { method?: string; token?: string; body?: unknown } = {},
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(`${baseUrl}${path}`, {
      method: init.method ?? "GET",
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  } catch (err) {
    throw networkError(baseUrl, err);
  }
  const text = await res.text();
  if (!res.ok) throw describeApiError(res.status, text);
  return { status: res.status, body: JSON.parse(text) as T };
}

/** Serialises a FormData as multipart bytes, so the upload's size is known and its progress countable. */
export async function encodeMultipart(form: FormData): Promise<{ body: Uint8Array; contentType: string }> {
  const res = new Response(form);
  const contentType = res.headers.get("content-type");
  if (!contentType) throw new Error("multipart encoding produced no content type");
  return { body: new Uint8Array(await res.arrayBuffer()), contentType };
}

export type ProgressFn = (sent: number, total: number) => void;

const CHUNK = 256 * 1024;

/**
 * A `fetch` that sends the request body as a stream of 256 KB chunks and calls `onProgress` as fetch pulls each
 * one (a pull stream with no buffer ahead, so "sent" is what fetch has taken for the socket). The body is
 * encoded first (a FormData becomes its multipart bytes), so the total is known and sent as Content-Length: the
 * registry refuses an upload over its limit from that header before reading it.
 */
export function progressFetch(onProgress: ProgressFn, baseFetch: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const req = new Request(input, init);
    const bytes = new Uint8Array(await req.arrayBuffer());
    const total = bytes.byteLength;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (sent >= total) {
            controller.close();
            return;
          }
          const chunk = bytes.subarray(sent, Math.min(sent + CHUNK, total));
          sent += chunk.byteLength;
          controller.enqueue(chunk);
          onProgress(sent, total);
        },
      },
      { highWaterMark: 0 },
    );
    const headers = new Headers(req.headers);
    headers.set("Content-Length", String(total));
    if (total === 0) onProgress(0, 0);
    // `duplex: "half"` is how Node's fetch takes a streamed request body (not yet in the DOM RequestInit type).
    return baseFetch(req.url, { method: req.method, headers, body, duplex: "half" } as RequestInit);
  };
}

/** A `fetch` whose network failures (refused, DNS, reset) become "cannot reach <url>: ECONNREFUSED". */
function reportingNetworkErrors(baseUrl: string, baseFetch: typeof fetch): typeof fetch {
  return async (input, init) => {
    try {
      return await baseFetch(input, init);
    } catch (err) {
      throw networkError(baseUrl, err);
    }
  };
}

export type RegistryClient = ReturnType<typeof hc<RegistryApp>>;

/**
 * The typed registry client: `client.v1.models[":model"].variants.$get({ param, query })` and so on, with the
 * admin token (when given) as a bearer header on every call. `fetch` replaces the transport (e.g. for progress).
 */
export function registryClient(
  baseUrl: string,
  opts: { token?: string; fetch?: typeof fetch } = {},
): RegistryClient {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  return hc<RegistryApp>(baseUrl, {
    headers,
    fetch: reportingNetworkErrors(baseUrl, opts.fetch ?? fetch),
  });
}

/** The JSON of a typed response; the registry's success bodies only (its errors are thrown, never typed). */
type OkJson<R> = R extends ClientResponse<infer T, infer _S, infer _F> ? T : never;

/** Reads a typed response: its status and JSON body, or (non-2xx) a RegistryRequestError naming code and field. */
export async function readOk<R extends ClientResponse<unknown, number, "json">>(
  res: R,
): Promise<{ status: number; body: OkJson<R> }> {
  const text = await res.text();
  if (!res.ok) throw describeApiError(res.status, text);
  try {
    return { status: res.status, body: JSON.parse(text) as OkJson<R> };
  } catch {
    throw new RegistryRequestError(
      `server said ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`,
      res.status,
    );
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * Progress on stderr: a self-overwriting line on a terminal, otherwise a line per 10% (so CI logs stay short).
 * Small uploads (under `minBytes`) only print the final line.
 */
export function progressPrinter(
  write: (s: string) => void,
  opts: { tty: boolean; minBytes?: number; label?: string } = { tty: false },
): ProgressFn {
  const minBytes = opts.minBytes ?? 1024 * 1024;
  const label = opts.label ?? "uploading";
  let lastDecile = -1;
  return (sent, total) => {
    const pct = total === 0 ? 100 : Math.floor((100 * sent) / total);
    const line = `${label} ${formatBytes(sent)} / ${formatBytes(total)} (${pct}%)`;
    const done = sent >= total;
    if (total < minBytes && !done) return;
    if (opts.tty) {
      write(`\r${line}${done ? "\n" : ""}`);
    } else if (Math.floor(pct / 10) > lastDecile) {
      lastDecile = Math.floor(pct / 10);
      write(`${line}\n`);
    }
  };
}
