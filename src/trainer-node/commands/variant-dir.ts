/** Reading an exported variant directory for the commands that work on one (quantize, measure). */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type Manifest, parseManifest } from "../../core/manifest";
import { sha256Hex } from "../export/variant";
import { UsageError } from "./command";

/**
 * The directory's manifest and the model bytes it describes, checked: a parseable manifest whose artifact is there
 * with the recorded sha256; any mismatch is a refusal naming `<variant dir>` (with `usage` when it is not one).
 */
export async function readVariantDir(
  dir: string,
  usage: string,
): Promise<{ manifest: Manifest; bytes: Uint8Array }> {
  const manifestFile = path.join(dir, "manifest.json");
  if (!existsSync(manifestFile))
    throw new UsageError(`<variant dir>: ${dir} is not a variant directory (no manifest.json)\n${usage}`);
  let manifest: Manifest;
  try {
    manifest = parseManifest(JSON.parse(await readFile(manifestFile, "utf8")));
  } catch (err) {
    throw new UsageError(`<variant dir>: ${manifestFile}: ${(err as Error).message}`);
  }
  const modelFile = path.join(dir, manifest.artifact.file);
  if (!existsSync(modelFile)) throw new UsageError(`<variant dir>: ${modelFile} does not exist`);
  const bytes = new Uint8Array(await readFile(modelFile));
  if (sha256Hex(bytes) !== manifest.artifact.sha256)
    throw new UsageError(`<variant dir>: ${modelFile} does not match the sha256 its manifest records`);
  return { manifest, bytes };
}
