/**
 * Registering a variant: validate the multipart upload against its manifest and the model, then store it so
 * that no D1 row ever lacks its artifact and no artifact outlives a failed registration.
 *
 * Order of writes: R2 objects first (content-addressed, so re-putting is harmless), then the D1 row in one
 * transaction. If anything fails after the puts, every object no row references is deleted again.
 */
import type { Env } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import {
  type IoSignature,
  type Manifest,
  ManifestError,
  manifestTakesPairs,
  parseManifest,
} from "../core/manifest";
import { decodeModel, ioSignatureOf, OnnxFormatError } from "../core/onnx";
import { encodesPairs } from "../core/tokenizer";
import { putArtifact, sha256Hex } from "./artifacts";
import { ApiError, badRequest, unprocessable } from "./errors";
import type { ModelRow, VariantRow } from "./schema";
import {
  countArtifactReferences,
  findVariantBySha256,
  insertVariant,
  isUniqueViolation,
  type RegistryDb,
} from "./store";

/** The raw parts of `POST /v1/models/:model/variants`. */
export interface UploadParts {
  manifest: string;
  model: Uint8Array;
  tokenizer?: Uint8Array;
}

export interface ValidatedUpload {
  manifest: Manifest;
  model: Uint8Array;
  sha256: string;
  tokenizer?: { bytes: Uint8Array; sha256: string };
}

/** Test seams for proving atomicity: called between the R2 puts and the D1 insert. */
export interface RegistryHooks {
  afterArtifactsStored?: (keys: string[]) => void | Promise<void>;
}

/** The parts of `POST /v1/models/:model/variants` as a client sends them; read back by `readUploadParts`. */
export interface UploadForm {
  manifest: File | string;
  model: File;
  tokenizer?: File;
}

/**
 * Route middleware for the variant upload: a body that is not multipart/form-data is a 415 before anything is
 * read, and the route's type carries `UploadForm` as its form input (for `hono/client`). The parts are read and
 * checked by the handler (`readUploadParts`) only after the model is found, so an upload to an unknown model is
 * a 404 without its body being read.
 */
export const multipartUpload = createMiddleware<Env, string, { in: { form: UploadForm } }>(
  async (c, next) => {
    const type = c.req.header("Content-Type") ?? "";
    if (!/^multipart\/form-data\b/i.test(type)) {
      throw new ApiError(
        415,
        "unsupported_media_type",
        "upload must be multipart/form-data with parts manifest, model and optional tokenizer",
        "Content-Type",
      );
    }
    await next();
  },
);

/** Reads the multipart form: `manifest` (manifest.json), `model` (model.onnx), optional `tokenizer`. */
export async function readUploadParts(form: FormData): Promise<UploadParts> {
  // workers-types declares FormData entries as strings; at run time file parts are File objects.
  const part = (name: string) => form.get(name) as File | string | null;
  const manifest = part("manifest");
  const model = part("model");
  const tokenizer = part("tokenizer");
  if (manifest === null) throw badRequest("multipart part 'manifest' (manifest.json) is missing", "manifest");
  if (model === null) throw badRequest("multipart part 'model' (model.onnx) is missing", "model");
  if (typeof model === "string") throw badRequest("multipart part 'model' must be a file", "model");
  return {
    manifest: typeof manifest === "string" ? manifest : await manifest.text(),
    model: new Uint8Array(await model.arrayBuffer()),
    tokenizer:
      tokenizer === null
        ? undefined
        : typeof tokenizer === "string"
          ? new TextEncoder().encode(tokenizer)
          : new Uint8Array(await tokenizer.arrayBuffer()),
  };
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function describeIo(io: IoSignature): string {
  const t = (s: IoSignature["inputs"][number]) => `${s.name}:${s.datatype}[${s.shape.join(",")}]`;
  return `inputs (${io.inputs.map(t).join(" ")}) outputs (${io.outputs.map(t).join(" ")})`;
}

/** Checks an upload against its manifest and the registered model. Throws ApiError naming the field. */
export async function validateUpload(model: ModelRow, parts: UploadParts): Promise<ValidatedUpload> {
  let json: unknown;
  try {
    json = JSON.parse(parts.manifest);
  } catch {
    throw badRequest("manifest.json is not valid JSON", "manifest");
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(json);
  } catch (err) {
    if (err instanceof ManifestError) throw unprocessable("invalid_manifest", err.message, err.field);
    throw err;
  }
  if (manifest.model.name !== model.name) {
    throw unprocessable(
      "model_mismatch",
      `manifest is for model '${manifest.model.name}' but was uploaded to '${model.name}'`,
      "model.name",
    );
  }
  if (manifest.model.task !== model.task) {
    throw unprocessable(
      "model_mismatch",
      `manifest task '${manifest.model.task}' differs from model task '${model.task}'`,
      "model.task",
    );
  }
  if (!sameJson(manifest.labels, model.labels)) {
    throw unprocessable(
      "labels_mismatch",
      `manifest labels ${JSON.stringify(manifest.labels)} differ from the model's ${JSON.stringify(model.labels)}`,
      "labels",
    );
  }
  if (!sameJson(manifest.io, model.io)) {
    throw unprocessable(
      "io_mismatch",
      `manifest io signature ${describeIo(manifest.io)} differs from the model's ${describeIo(model.io)}`,
      "io",
    );
  }

  if (parts.model.byteLength !== manifest.artifact.bytes) {
    throw unprocessable(
      "checksum_mismatch",
      `model.onnx has ${parts.model.byteLength} bytes; manifest says ${manifest.artifact.bytes}`,
      "artifact.bytes",
    );
  }
  const sha256 = await sha256Hex(parts.model);
  if (sha256 !== manifest.artifact.sha256) {
    throw unprocessable(
      "checksum_mismatch",
      `model.onnx has sha256 ${sha256}; manifest says ${manifest.artifact.sha256}`,
      "artifact.sha256",
    );
  }
  let fileIo: IoSignature;
  try {
    fileIo = ioSignatureOf(decodeModel(parts.model));
  } catch (err) {
    if (err instanceof OnnxFormatError)
      throw unprocessable("invalid_onnx", `model.onnx: ${err.message}`, "model");
    throw err;
  }
  if (!sameJson(fileIo, model.io)) {
    throw unprocessable(
      "io_mismatch",
      `model.onnx has ${describeIo(fileIo)}; the model is registered with ${describeIo(model.io)}`,
      "model",
    );
  }

  let tokenizer: ValidatedUpload["tokenizer"];
  if (manifest.tokenizer && !parts.tokenizer) {
    throw badRequest("manifest names a tokenizer but multipart part 'tokenizer' is missing", "tokenizer");
  }
  if (parts.tokenizer) {
    if (!manifest.tokenizer) {
      throw unprocessable(
        "invalid_manifest",
        "a tokenizer was uploaded but the manifest has none",
        "tokenizer",
      );
    }
    const tokSha = await sha256Hex(parts.tokenizer);
    if (tokSha !== manifest.tokenizer.sha256) {
      throw unprocessable(
        "checksum_mismatch",
        `tokenizer.json has sha256 ${tokSha}; manifest says ${manifest.tokenizer.sha256}`,
        "tokenizer.sha256",
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(parts.tokenizer));
    } catch {
      throw unprocessable("invalid_tokenizer", "tokenizer.json is not valid JSON", "tokenizer");
    }
    if (manifestTakesPairs(manifest)) checkPairTemplate(parsed);
    tokenizer = { bytes: parts.tokenizer, sha256: tokSha };
  } else if (manifestTakesPairs(manifest)) {
    throw unprocessable(
      "no_pair_template",
      "manifest input.textPairs is true, but the variant has no tokenizer.json to lay out its text pairs",
      "tokenizer",
    );
  }
  return { manifest, model: parts.model, sha256, tokenizer };
}

/** The part of tokenizer.json the registry reads; the rest is the gateway's to load. */
const TokenizerFile = z.looseObject({ post_processor: z.unknown().optional() });

/**
 * A sentence-pair variant (manifest `input.textPairs`) is served by `/classify` through its tokenizer's pair
 * template; one without it would only fail there, so the upload is refused instead (core/tokenizer's decision).
 */
function checkPairTemplate(parsed: unknown): void {
  const file = TokenizerFile.safeParse(parsed);
  if (!file.success)
    throw unprocessable("invalid_tokenizer", "tokenizer.json must be a JSON object", "tokenizer");
  let pairs: boolean;
  try {
    pairs = encodesPairs(file.data);
  } catch (err) {
    throw unprocessable(
      "invalid_tokenizer",
      `tokenizer.json: ${err instanceof Error ? err.message : String(err)}`,
      "tokenizer",
    );
  }
  if (!pairs)
    throw unprocessable(
      "no_pair_template",
      "manifest input.textPairs is true, but tokenizer.json's post_processor has no pair template " +
        "(TemplateProcessing 'pair', BertProcessing, RobertaProcessing, or a Sequence holding one), so the " +
        "variant could not encode text pairs",
      "tokenizer",
    );
}

interface StoredObject {
  bytes: Uint8Array;
  sha256: string;
  contentType: string;
}

/**
 * Deletes each just-written object that no variant row references. Objects are shared by content, so a
 * concurrent registration of the same bytes may reference one between our check and our delete: the re-check
 * afterwards puts the bytes back in that case (and `storeVariant` re-verifies its objects after inserting).
 */
async function releaseUnreferenced(
  bucket: R2Bucket,
  db: RegistryDb,
  written: Map<string, StoredObject>,
): Promise<void> {
  for (const [key, obj] of written) {
    try {
      if ((await countArtifactReferences(db, key)) > 0) continue;
      await bucket.delete(key);
      if ((await countArtifactReferences(db, key)) > 0)
        await putArtifact(bucket, obj.bytes, obj.sha256, obj.contentType);
    } catch (err) {
      console.error(`registry: could not release artifact ${key}`, err);
    }
  }
}

/** Puts back any referenced object that a concurrent cleanup removed between our put and our insert. */
async function ensureStored(bucket: R2Bucket, written: Map<string, StoredObject>): Promise<void> {
  for (const [key, obj] of written) {
    if (!(await bucket.head(key))) await putArtifact(bucket, obj.bytes, obj.sha256, obj.contentType);
  }
}

/**
 * Stores a validated upload as the model's next staged variant, or returns the existing variant when the same
 * artifact is already registered for this model (`created: false`).
 */
export async function storeVariant(
  bucket: R2Bucket,
  db: RegistryDb,
  model: ModelRow,
  upload: ValidatedUpload,
  hooks: RegistryHooks = {},
): Promise<{ variant: VariantRow; created: boolean }> {
  const existing = await findVariantBySha256(db, model.id, upload.sha256);
  if (existing) {
    // Same bytes, so the upload can also heal an object lost from R2 (see the README's known limit).
    const present = await bucket.head(existing.artifactKey);
    if (!present) await putArtifact(bucket, upload.model, upload.sha256, "application/onnx");
    return { variant: existing, created: false };
  }

  const written = new Map<string, StoredObject>();
  try {
    const artifactKey = await putArtifact(bucket, upload.model, upload.sha256, "application/onnx");
    written.set(artifactKey, { bytes: upload.model, sha256: upload.sha256, contentType: "application/onnx" });
    let tokenizerKey: string | null = null;
    if (upload.tokenizer) {
      const { bytes, sha256 } = upload.tokenizer;
      tokenizerKey = await putArtifact(bucket, bytes, sha256, "application/json");
      written.set(tokenizerKey, { bytes, sha256, contentType: "application/json" });
    }
    await hooks.afterArtifactsStored?.([...written.keys()]);

    let variant: VariantRow;
    try {
      variant = await insertVariant(db, model.id, {
        manifest: upload.manifest,
        artifactKey,
        sha256: upload.sha256,
        bytes: upload.model.byteLength,
        tokenizerKey,
        tokenizerSha256: upload.tokenizer?.sha256 ?? null,
      });
    } catch (err) {
      // A concurrent upload of the same artifact for this model won the (model, sha256) unique index.
      const winner = isUniqueViolation(err)
        ? await findVariantBySha256(db, model.id, upload.sha256)
        : undefined;
      if (!winner) throw err;
      await releaseUnreferenced(bucket, db, written);
      return { variant: winner, created: false };
    }
    await ensureStored(bucket, written);
    return { variant, created: true };
  } catch (err) {
    await releaseUnreferenced(bucket, db, written);
    if (err instanceof ApiError) throw err;
    console.error("registry: registration failed", err);
    throw new ApiError(500, "registration_failed", "variant was not registered; nothing was kept");
  }
}
