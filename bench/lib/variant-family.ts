/**
 * The benches' trained variant families, built through the `sluice` CLI and cached under runs/bench-edge/ (so
 * bench:edge and bench:gateway share one build): each target's fp32 variant and its int8 twin (`sluice
 * quantize` with INT8_FLAGS, evaluated on the same split with the same per-example evidence).
 *
 * The reference encoder's recipe lives here: bench:edge times its variants in three runtimes, bench:gateway
 * serves them through wrangler dev behind the SLA router.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseManifest } from "../../src/core/manifest";
import { main as sluice } from "../../src/trainer-node/cli";

const ROOT = path.resolve(import.meta.dirname, "../..");
export const FAMILY_WORK = path.join(ROOT, "runs/bench-edge");
/** Bump when a recipe changes what a cached variant holds (2: variants written edge-optimized, export's default). */
const CACHE_VERSION = 2;

export const FAMILY_TARGETS = ["dense", "0.2", "0.4"] as const;
export type FamilyTarget = (typeof FAMILY_TARGETS)[number];

/** Runs `build` unless `dir` holds a finished build with the same recipe. */
export async function cached(dir: string, recipe: unknown, build: () => Promise<void>): Promise<void> {
  const key = JSON.stringify({ CACHE_VERSION, recipe });
  const keyFile = path.join(dir, "bench-edge.key");
  if (existsSync(keyFile) && readFileSync(keyFile, "utf8") === key) return;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  await build();
  writeFileSync(keyFile, key);
}

export async function cli(args: string[]): Promise<void> {
  const code = await sluice(args);
  if (code !== 0) throw new Error(`sluice ${args.join(" ")} exited ${code}`);
}

/**
 * How `sluice quantize` writes the int8 twins: standard op form, the tanh GELU and the contrib fusions
 * (SkipLayerNormalization, MultiHeadAttention). The last two measured cheaper inside workerd on the reference
 * encoder's 0.4 int8 variant (docs/edge-heads.md); the tanh GELU is an approximation (≤ 4.8e-4 per activation), so
 * it is an int8-only option, judged like the int8 weights by accuracy and predictions changed vs fp32.
 * `--pack-qkv` is not here: exact, but no faster side by side in workerd on a quiet machine (docs/edge-heads.md).
 */
export const INT8_FLAGS = ["--op-form", "standard", "--gelu", "tanh", "--contrib-fusions"];

export interface FamilyDirs {
  fp32: string;
  int8: string;
}

/** `target`'s fp32 directory comes from `make`, its int8 twin from `sluice quantize` (cached by `recipe`). */
export async function targetDirs(
  model: string,
  target: FamilyTarget,
  make: (target: FamilyTarget, out: string) => Promise<void>,
  recipe: unknown,
): Promise<FamilyDirs> {
  const fp32 = path.join(FAMILY_WORK, model, `${target}-fp32`);
  const int8 = path.join(FAMILY_WORK, model, `${target}-int8`);
  await cached(fp32, recipe, () => make(target, fp32));
  await cached(int8, { from: recipe, int8: INT8_FLAGS }, () =>
    cli(["quantize", fp32, "--out", int8, ...INT8_FLAGS, "--runs", "3"]),
  );
  for (const dir of [fp32, int8]) await withEdgeLatency(dir);
  return { fp32, int8 };
}

/**
 * A cached variant written before manifests recorded the edge runtime's latency gets it from `sluice measure`
 * (seconds, no retraining), so the router behind bench:gateway ranks the family by what it costs in wasm.
 */
export async function withEdgeLatency(dir: string): Promise<void> {
  const manifest = parseManifest(JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")));
  if (!manifest.latency.edge) await cli(["measure", dir]);
}

/**
 * The reference encoder and how it is adapted; short on purpose (the whole bench stays near 20 minutes). Gates
 * trained straight on the random-init encoder at 0.4 collapse to the majority class (66% on spam, tried), so the
 * recipe is two-stage: the dense variant adapts the random encoder (gates at target 0, LoRA r=8, a new mean-pooled
 * head), and the 0.2 / 0.4 variants prune that adapted model (gates + LoRA r=8 on top, then 60 recovery steps).
 */
export const REFERENCE = {
  init: ["--layers", "4", "--hidden", "256", "--heads", "4", "--ffn", "1024", "--max-pos", "128"],
  common: ["--task", "spam", "--steps", "120", "--batch", "16", "--seq", "128", "--adapter-rank", "8"],
  dense: [
    "--target-sparsity",
    "0",
    "--pooling",
    "mean",
    "--lr",
    "3e-3",
    "--recovery-steps",
    "0",
    "--threads",
    "1",
  ],
  pruned: ["--lr", "3e-3", "--recovery-steps", "60", "--threads", "1"],
};

export const REFERENCE_DESCRIPTION = `reference encoder (BERT layout, 4L d256 h4 FFN 1024, vocabulary 4096), seeded random init (not pretrained), dense variant adapted on spam by sluice train ${[...REFERENCE.common, ...REFERENCE.dense].join(" ")}, 0.2 / 0.4 trained on the dense variant with ${REFERENCE.pruned.join(" ")}, spam test split`;

/** Builds (or reuses) the reference encoder's `target` variant in fp32 and int8; the dense one first if needed. */
export async function referenceTargetDirs(target: FamilyTarget): Promise<FamilyDirs> {
  const baseDir = path.join(FAMILY_WORK, "reference", "base");
  const base = path.join(baseDir, "model.onnx");
  await cached(baseDir, REFERENCE.init, async () => {
    mkdirSync(baseDir, { recursive: true });
    await cli(["base", "init", "--out", base, ...REFERENCE.init, "--head", "none", "--seed", "1"]);
    writeFileSync(
      path.join(baseDir, "tokenizer.json"),
      readFileSync(path.join(ROOT, "models/tokenizer.json")),
    );
  });
  const denseRecipe = { init: REFERENCE.init, common: REFERENCE.common, dense: REFERENCE.dense };
  const recipe = (t: FamilyTarget) => ({
    ...denseRecipe,
    ...(t === "dense" ? {} : { target: t, pruned: REFERENCE.pruned }),
  });
  const make = async (t: FamilyTarget, out: string): Promise<void> => {
    if (t === "dense")
      return cli(["train", "--base", base, "--out", out, ...REFERENCE.common, ...REFERENCE.dense]);
    // The pruned stages train on the adapted dense model as plain ONNX: `sluice train` writes its variant
    // edge-optimized (fused contrib ops such as FusedMatMul, which the importer refuses), so the dense checkpoint
    // is exported once more with --optimize none as their base.
    await referenceTargetDirs("dense");
    const denseUnfusedDir = path.join(FAMILY_WORK, "reference", "dense-unfused");
    await cached(denseUnfusedDir, { unfused: denseRecipe }, () =>
      cli([
        "export",
        ...["--base", base, "--gates", path.join(FAMILY_WORK, "reference", "dense-fp32", "gates.json")],
        ...["--out", denseUnfusedDir, "--optimize", "none", "--runs", "3"],
      ]),
    );
    return cli([
      ...["train", "--base", path.join(denseUnfusedDir, "model.onnx"), "--out", out, "--target-sparsity", t],
      ...REFERENCE.common,
      ...REFERENCE.pruned,
    ]);
  };
  return targetDirs("reference", target, make, recipe(target));
}
