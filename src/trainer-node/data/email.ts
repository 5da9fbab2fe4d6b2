/**
 * Turns a raw RFC 822 message into the text a classifier sees: the decoded subject and the readable body.
 *
 * Hand-written because no mail parser is among the project's dependencies and the job here is narrow: walk
 * MIME parts, undo base64 / quoted-printable and the declared charset, prefer text/plain over HTML, strip tags.
 * Headers other than Subject are dropped: routing headers (Received, X-Spam-*) would leak the answer.
 */

/** Longest cleaned text kept, in characters; cut at a word boundary. Ample for 512 tokens. */
export const EMAIL_MAX_CHARS = 2000;

interface Part {
  headers: Map<string, string>;
  body: string; // one char per byte (latin1), as read from disk
}

/** The cleaned "subject + body" text of a raw message (read as latin1, one char per byte). */
export function cleanEmail(raw: string, maxChars = EMAIL_MAX_CHARS): string {
  const message = parsePart(raw);
  const subject = decodeEncodedWords(message.headers.get("subject") ?? "");
  const body = readableBody(message, 0);
  const text = collapseWhitespace(`${subject}\n${dropQuotedLines(body)}`);
  return capAtWord(dropCollectionArtifacts(text), maxChars);
}

function parsePart(raw: string): Part {
  const normalized = raw.replace(/\r\n/g, "\n");
  const end = normalized.indexOf("\n\n");
  const head = end < 0 ? normalized : normalized.slice(0, end);
  const body = end < 0 ? "" : normalized.slice(end + 2);
  const headers = new Map<string, string>();
  // Unfold continuation lines (leading white space), then read "Name: value"; the mbox "From " line has no colon.
  for (const line of head.replace(/\n[ \t]+/g, " ").split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return { headers, body };
}

function contentType(part: Part): { type: string; params: Map<string, string> } {
  const value = part.headers.get("content-type") ?? "text/plain";
  const [type, ...rest] = value.split(";");
  const params = new Map<string, string>();
  for (const p of rest) {
    const eq = p.indexOf("=");
    if (eq < 0) continue;
    params.set(
      p.slice(0, eq).trim().toLowerCase(),
      p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, "$1"),
    );
  }
  return { type: type.trim().toLowerCase(), params };
}

/** Text of a part: text/plain wins over text/html among alternatives; other types (images, zips) give "". */
function readableBody(part: Part, depth: number): string {
  const { type, params } = contentType(part);
  if (type.startsWith("multipart/") && params.has("boundary") && depth < 5) {
    const children = splitMultipart(part.body, params.get("boundary")!).map(parsePart);
    const texts = children.map((c) => ({ type: contentType(c).type, text: readableBody(c, depth + 1) }));
    if (type === "multipart/alternative") {
      const plain = texts.find((t) => t.type === "text/plain" && t.text.trim() !== "");
      return (plain ?? texts.find((t) => t.text.trim() !== ""))?.text ?? "";
    }
    return texts.map((t) => t.text).join("\n");
  }
  if (type.startsWith("multipart/")) return part.body; // no boundary: treat as plain text
  if (!type.startsWith("text/")) return "";
  const decoded = decodeCharset(decodeTransfer(part), params.get("charset"));
  return type === "text/html" ? htmlToText(decoded) : decoded;
}

function splitMultipart(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  const pieces = body.split(delimiter);
  // pieces[0] is the preamble; a piece starting with "--" is the epilogue after the closing delimiter.
  return pieces
    .slice(1)
    .filter((p) => !p.startsWith("--"))
    .map((p) => p.replace(/^[ \t]*\n/, ""));
}

/** Undoes Content-Transfer-Encoding, returning one char per byte. */
function decodeTransfer(part: Part): string {
  const encoding = (part.headers.get("content-transfer-encoding") ?? "").toLowerCase();
  if (encoding.includes("base64"))
    return Buffer.from(part.body.replace(/[^A-Za-z0-9+/=]/g, ""), "base64").toString("latin1");
  if (encoding.includes("quoted-printable")) return decodeQuotedPrintable(part.body);
  return part.body;
}

function decodeQuotedPrintable(s: string): string {
  return s
    .replace(/=\n/g, "")
    .replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Bytes (as latin1 chars) -> text in the declared charset; unknown charsets stay latin1. */
function decodeCharset(bytes: string, charset: string | undefined): string {
  const label = (charset ?? "").toLowerCase();
  if (!label || label === "us-ascii" || label === "iso-8859-1" || label === "latin1") return bytes;
  try {
    return new TextDecoder(label).decode(Buffer.from(bytes, "latin1"));
  } catch {
    return bytes;
  }
}

/** RFC 2047 encoded words in headers: =?charset?B?...?= and =?charset?Q?...?=. */
function decodeEncodedWords(value: string): string {
  return value.replace(
    /=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g,
    (_, charset: string, enc: string, data: string) => {
      const bytes =
        enc.toUpperCase() === "B"
          ? Buffer.from(data, "base64").toString("latin1")
          : decodeQuotedPrintable(data.replace(/_/g, " "));
      return decodeCharset(bytes, charset);
    },
  );
}

const ENTITIES: Record<string, string> = {
  nbsp: " ",
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  copy: "©",
};

function htmlToText(html: string): string {
  return html
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/<!--[\s\S]*?-->/g, " ")
    .replace(/<(br|p|div|tr|li|h\d)\b[^>]*>/gi, "\n")
    .replace(/<[^>]*>/g, " ")
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === "#") {
        const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : " ";
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    });
}

/** Quoted replies ("> ...") repeat another message; they are noise for the one being classified. */
function dropQuotedLines(text: string): string {
  return text
    .split("\n")
    .filter((line) => !/^\s*>/.test(line))
    .join("\n");
}

/**
 * About 90 of the spam messages reached the corpus through the spamassassin-sightings list, which tagged the
 * subject "[SA]" and appended its footer. Those marks say how the message was collected, not what it is, and
 * would let a classifier score well without reading the message, so they go.
 */
function dropCollectionArtifacts(text: string): string {
  return text
    .replace(/^\[SA\]\s*/, "")
    .replace(/_{10,}\s*Spamassassin-Sightings mailing list[\s\S]*$/i, "")
    .trim();
}

function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function capAtWord(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.lastIndexOf(" ", maxChars);
  return text.slice(0, cut > maxChars / 2 ? cut : maxChars);
}
