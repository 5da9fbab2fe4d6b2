/**
 * The CLI's side of the registry HTTP API: JSON calls, a multipart upload that reports bytes sent, and error
 * messages that say what the server objected to.
 */
import http from "node:http";
import https from "node:https";

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

/** A JSON request; non-2xx answers become RegistryRequestError with the server's code and field. */
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
 * POSTs a body in chunks over node:http(s), calling `onProgress` as each chunk is handed to the socket. fetch()
 * offers no upload progress, hence the lower-level client.
 */
export function postWithProgress(
  url: string,
  headers: Record<string, string>,
  body: Uint8Array,
  onProgress: ProgressFn = () => {},
): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  const client = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      target,
      { method: "POST", headers: { ...headers, "Content-Length": String(body.byteLength) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", (err) => reject(networkError(target.origin, { cause: err })));
    let sent = 0;
    const writeNext = () => {
      while (sent < body.byteLength) {
        const chunk = body.subarray(sent, Math.min(sent + CHUNK, body.byteLength));
        sent += chunk.byteLength;
        const more = req.write(chunk);
        onProgress(sent, body.byteLength);
        if (!more) {
          req.once("drain", writeNext);
          return;
        }
      }
      req.end();
    };
    writeNext();
  });
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
