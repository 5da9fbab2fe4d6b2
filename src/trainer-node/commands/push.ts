/**
 * `sluice push <dir> --url <gateway> --token <t>`: registers a trainer output directory (manifest.json,
 * model.onnx, optional tokenizer.json) as a new staged variant. The manifest and checksums are validated here
 * first, the model is created on the registry when missing, and the upload reports its progress on stderr.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type Manifest, ManifestError, parseManifest } from "../../core/manifest";
import { formatBytes, progressFetch, progressPrinter, readOk, registryClient } from "../registry-client";
import { type Command, UsageError } from "./command";
import { flagOrEnv, gatewayUrlFlag, parseFlags } from "./options";

const USAGE = `usage: sluice push <dir> --url <gateway url> --token <admin token> [--json]
  <dir> holds manifest.json, model.onnx and optionally tokenizer.json (a trainer output directory).
  --url and --token default to $SLUICE_URL and $SLUICE_ADMIN_TOKEN.`;

export interface PushOptions {
  dir: string;
  url: string;
  token: string;
  json: boolean;
}

export function parsePushArgs(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): PushOptions {
  const { values, positionals } = parseFlags(
    {
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: "string" },
        token: { type: "string" },
        json: { type: "boolean", default: false },
      },
    },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`expected exactly one directory\n${USAGE}`);
  const url = flagOrEnv(values.url, env, "SLUICE_URL", "--url", USAGE);
  const token = flagOrEnv(values.token, env, "SLUICE_ADMIN_TOKEN", "--token", USAGE);
  return { dir: positionals[0], url: gatewayUrlFlag(url), token, json: values.json ?? false };
}

export interface TrainerOutput {
  manifest: Manifest;
  model: Uint8Array;
  tokenizer?: Uint8Array;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function readPart(dir: string, file: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path.join(dir, file)));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${what}: cannot read ${path.join(dir, file)} (${code ?? (err as Error).message})`);
  }
}

/** Reads a trainer output directory and checks it the way the registry will, so mistakes fail before upload. */
export async function readTrainerOutput(dir: string): Promise<TrainerOutput> {
  const manifestText = new TextDecoder().decode(await readPart(dir, "manifest.json", "manifest"));
  let json: unknown;
  try {
    json = JSON.parse(manifestText);
  } catch (err) {
    throw new Error(`manifest.json is not valid JSON: ${(err as Error).message}`);
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(json);
  } catch (err) {
    if (err instanceof ManifestError)
      throw new Error(`manifest.json is invalid (field ${err.field}): ${err.message}`);
    throw err;
  }
  const model = await readPart(dir, manifest.artifact.file, "artifact");
  if (model.byteLength !== manifest.artifact.bytes) {
    throw new Error(
      `${manifest.artifact.file} has ${model.byteLength} bytes but manifest artifact.bytes says ${manifest.artifact.bytes}`,
    );
  }
  const modelSha = sha256(model);
  if (modelSha !== manifest.artifact.sha256) {
    throw new Error(
      `${manifest.artifact.file} has sha256 ${modelSha} but manifest artifact.sha256 says ${manifest.artifact.sha256}`,
    );
  }
  let tokenizer: Uint8Array | undefined;
  if (manifest.tokenizer) {
    tokenizer = await readPart(dir, manifest.tokenizer.file, "tokenizer");
    const tokSha = sha256(tokenizer);
    if (tokSha !== manifest.tokenizer.sha256) {
      throw new Error(
        `${manifest.tokenizer.file} has sha256 ${tokSha} but manifest tokenizer.sha256 says ${manifest.tokenizer.sha256}`,
      );
    }
  }
  return { manifest, model, tokenizer };
}

/** The multipart parts `POST /v1/models/:model/variants` expects (the registry's `UploadForm`). */
export function variantUploadParts(out: TrainerOutput) {
  return {
    manifest: new File([JSON.stringify(out.manifest)], "manifest.json", { type: "application/json" }),
    model: new File([out.model], "model.onnx", { type: "application/octet-stream" }),
    ...(out.tokenizer
      ? { tokenizer: new File([out.tokenizer], "tokenizer.json", { type: "application/json" }) }
      : {}),
  };
}

/** The same parts as a FormData (what the typed client builds from `variantUploadParts`). */
export function variantUploadForm(out: TrainerOutput): FormData {
  const form = new FormData();
  for (const [name, file] of Object.entries(variantUploadParts(out))) form.append(name, file);
  return form;
}

export interface PushResult {
  variant: { model: string; version: number; status: string; sha256: string; bytes: number };
  created: boolean;
  modelCreated: boolean;
}

/** Ensures the model exists, then uploads the variant. Progress and notes go to `log` (stderr). */
export async function push(opts: PushOptions, log: (s: string) => void, tty = false): Promise<PushResult> {
  const out = await readTrainerOutput(opts.dir);
  const { manifest } = out;
  const name = manifest.model.name;
  const client = registryClient(opts.url, { token: opts.token });

  // Idempotent on the server: 201 when created, 200 when it exists with the same task, labels and io.
  const model = await readOk(
    await client.v1.models.$post({
      json: { name, task: manifest.model.task, labels: manifest.labels, io: manifest.io },
    }),
  );
  if (model.status === 201) log(`created model ${name} (task ${manifest.model.task})\n`);

  const uploader = registryClient(opts.url, {
    token: opts.token,
    fetch: progressFetch(progressPrinter(log, { tty, label: `uploading ${name}` })),
  });
  const { body } = await readOk(
    await uploader.v1.models[":model"].variants.$post({
      param: { model: encodeURIComponent(name) },
      form: variantUploadParts(out),
    }),
  );
  return { variant: body.variant, created: body.created, modelCreated: model.status === 201 };
}

export const command: Command = {
  summary: "register a trainer output directory (manifest.json, model.onnx, tokenizer.json) as a new variant",
  async run(argv) {
    const opts = parsePushArgs(argv);
    const result = await push(opts, (s) => process.stderr.write(s), process.stderr.isTTY === true);
    const v = result.variant;
    if (opts.json) console.log(JSON.stringify(result, null, 2));
    else if (result.created) {
      console.log(
        `registered ${v.model}@${v.version} (${v.status}) sha256 ${v.sha256.slice(0, 12)} ${formatBytes(v.bytes)}`,
      );
    } else {
      console.log(
        `already registered: ${v.model}@${v.version} (${v.status}) has the same sha256 ${v.sha256.slice(0, 12)}`,
      );
    }
    return 0;
  },
};
