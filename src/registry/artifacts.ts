/**
 * Artifacts live in R2 under content-addressed keys, so storing the same bytes twice is a no-op and two
 * variants (of any models) with identical files share one object.
 */

import { toHex } from "../core/bytes";

export const ARTIFACT_PREFIX = "artifacts/sha256/";

export function artifactKey(sha256Hex: string): string {
  return `${ARTIFACT_PREFIX}${sha256Hex}`;
}

export async function sha256Hex(data: ArrayBuffer | Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data);
  return toHex(new Uint8Array(digest));
}

/** Writes bytes under their content address; R2 re-verifies the sha256 on its side. */
export async function putArtifact(
  bucket: R2Bucket,
  bytes: ArrayBuffer | Uint8Array,
  sha256: string,
  contentType: string,
): Promise<string> {
  const key = artifactKey(sha256);
  await bucket.put(key, bytes, { sha256, httpMetadata: { contentType } });
  return key;
}
