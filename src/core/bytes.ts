/**
 * Bytes as hex and as base64url (no padding). workerd's V8 has the native `Uint8Array.prototype.toHex` /
 * `toBase64` (one call instead of a string per byte: the gateway encodes a key hash and a feedback token on
 * every request); Node 20, where the trainer and its tests run, has neither, so each falls back to the portable
 * form.
 */
type NativeBytes = Uint8Array & {
  toHex?: () => string;
  toBase64?: (options: { alphabet: "base64url"; omitPadding: boolean }) => string;
};

export function toHex(bytes: Uint8Array): string {
  const native = (bytes as NativeBytes).toHex;
  if (native) return native.call(bytes);
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

export function toBase64Url(bytes: Uint8Array): string {
  const native = (bytes as NativeBytes).toBase64;
  if (native) return native.call(bytes, { alphabet: "base64url", omitPadding: true });
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}
