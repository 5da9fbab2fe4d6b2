/**
 * Readiness means servable: a variant is ready when its model.onnx can be loaded, i.e. the object is in R2 and
 * its bytes hash to the registry's sha256. Checked cheaply: a session already loaded from verified bytes
 * answers at once; otherwise R2's own sha256 of the object (stored with it at upload, read with `head`) is
 * compared, and only an object without one is read and hashed. Results are kept per isolate for a TTL in a
 * bounded cache, so readiness probes cost at most one R2 call per variant per TTL.
 */
import { IsolateCache } from "../core/isolate-cache";
import { sha256Hex } from "../registry/artifacts";
import type { ArtifactProblem, ArtifactRef, SessionCache } from "./sessions";

export type ArtifactVerdict = { ok: true } | { ok: false; problem: ArtifactProblem; message: string };

const toHex = (buf: ArrayBuffer) =>
  [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");

export class ArtifactChecks {
  private readonly cache: IsolateCache<ArtifactVerdict>;

  constructor(ttlMs: number, maxEntries = 512) {
    this.cache = new IsolateCache({ ttlMs, maxEntries });
  }

  /** Whether `ref`'s model.onnx would load (a verified session, or R2 bytes matching the registry's sha256). */
  async check(bucket: R2Bucket, ref: ArtifactRef, sessions: SessionCache): Promise<ArtifactVerdict> {
    if (sessions.has(ref)) return { ok: true };
    return this.cache.get(`${ref.artifactKey}#${ref.sha256}`, () => verify(bucket, ref));
  }
}

async function verify(bucket: R2Bucket, ref: ArtifactRef): Promise<ArtifactVerdict> {
  const head = await bucket.head(ref.artifactKey);
  if (!head) return { ok: false, problem: "missing", message: "model.onnx is missing from R2" };
  const stored = head.checksums.sha256;
  let actual: string;
  if (stored) actual = toHex(stored);
  else {
    // Written without a checksum (not by the registry's upload): hash the bytes themselves.
    const object = await bucket.get(ref.artifactKey);
    if (!object) return { ok: false, problem: "missing", message: "model.onnx is missing from R2" };
    actual = await sha256Hex(new Uint8Array(await object.arrayBuffer()));
  }
  return actual === ref.sha256
    ? { ok: true }
    : { ok: false, problem: "checksum", message: "model.onnx in R2 does not match the registry's sha256" };
}
