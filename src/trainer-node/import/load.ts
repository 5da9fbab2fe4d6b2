/** A user's model file, read once: its bytes and sha256 (the lineage key) and its canonical import. */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { ImportError } from "./errors";
import { type ImportedModel, type ImportOptions, importEncoderBytes } from "./import";

export interface UserModel extends ImportedModel {
  file: string;
  /** File name without `.onnx`: the base's name in checkpoints and manifests. */
  name: string;
  /** The file's bytes, read again on each use: holding them would keep a second copy of the weights for a run. */
  readonly bytes: Uint8Array;
  sha256: string;
}

export function loadUserModel(file: string, opts: ImportOptions = {}, flag = "--base"): UserModel {
  if (!existsSync(file)) throw new ImportError(`${flag}: no such file ${file}`);
  const bytes = new Uint8Array(readFileSync(file));
  return {
    ...importEncoderBytes(bytes, opts),
    file,
    name: path.basename(file).replace(/\.onnx$/, ""),
    get bytes() {
      return new Uint8Array(readFileSync(file));
    },
    sha256: createHash("sha256").update(bytes).digest("hex"),
  };
}
