/**
 * Registry latency through the real Worker: starts `wrangler dev` on a fresh local D1/R2 (migrations applied to
 * a temporary persist dir), pushes one variant with the `sluice push` CLI, registers more through the HTTP API,
 * then measures variant lookups. Prints p50/p95 and writes bench-results/registry.json. wrangler is always
 * shut down, also on errors and Ctrl-C.
 *
 *   npm run bench:registry -- [--variants 30] [--large 8] [--lookups 300]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startWranglerDev, type WranglerDev } from "../scripts/lib/wrangler";
import { variantUploadForm } from "../src/trainer-node/commands/push";
import { encodeMultipart, formatBytes } from "../src/trainer-node/registry-client";
import { makeVariantFiles, type VariantFiles, type VariantOptions } from "../test/shared/variant-files";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    variants: { type: "string", default: "30" },
    large: { type: "string", default: "8" },
    lookups: { type: "string", default: "300" },
  },
});
const [nSmall, nLarge, nLookups] = [args.variants, args.large, args.lookups].map(Number);

const root = path.resolve(import.meta.dirname, "..");
const work = mkdtempSync(path.join(tmpdir(), "sluice-bench-registry-"));
let dev: WranglerDev | undefined;

function writeTrainerDir(dir: string, files: VariantFiles) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(files.manifest, null, 2));
  writeFileSync(path.join(dir, "model.onnx"), files.model);
  if (files.tokenizer) writeFileSync(path.join(dir, "tokenizer.json"), files.tokenizer);
}

function sluice(...argv: string[]): string {
  return execFileSync(process.execPath, [path.join(root, "bin/sluice.js"), ...argv], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
}

async function timed(fn: () => Promise<Response>, expectStatus: number[]): Promise<number> {
  const t0 = performance.now();
  const res = await fn();
  await res.arrayBuffer();
  const ms = performance.now() - t0;
  if (!expectStatus.includes(res.status)) throw new Error(`unexpected status ${res.status}`);
  return ms;
}

function quantile(sorted: number[], q: number): number {
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (i - lo);
}

function summarize(name: string, samples: number[], note: string) {
  const s = [...samples].sort((a, b) => a - b);
  return {
    name,
    n: s.length,
    p50Ms: quantile(s, 0.5),
    p95Ms: quantile(s, 0.95),
    minMs: s[0],
    maxMs: s[s.length - 1],
    note,
  };
}

async function main() {
  const model = "bench";
  const small: VariantOptions = { labelNames: ["neg", "pos"], withTokenizer: true };
  // ~4 MB of float32 weights: large enough that hashing, ONNX decoding and the R2 put show up.
  const large: VariantOptions = { ...small, vocab: 8192, hidden: 128 };
  const smallFiles = await Promise.all(
    Array.from({ length: nSmall }, (_, i) => makeVariantFiles(model, { ...small, seed: i + 1 })),
  );
  const largeFiles = await Promise.all(
    Array.from({ length: nLarge }, (_, i) => makeVariantFiles(model, { ...large, seed: 10_000 + i })),
  );

  dev = await startWranglerDev();
  const { url, adminToken: token } = dev;
  console.error(`wrangler dev ready on ${url}`);
  const auth = { Authorization: `Bearer ${token}` };

  // End to end through the CLI first: it creates the model and registers version 1.
  const firstDir = path.join(work, "out-1");
  writeTrainerDir(firstDir, smallFiles[0]);
  const pushed = sluice("push", firstDir, "--url", url, "--token", token).trim();
  console.error(`sluice push: ${pushed}`);
  if (!/registered bench@1 /.test(pushed)) throw new Error(`unexpected push output: ${pushed}`);

  // The push above already warmed the isolate, so the timings below are steady-state.
  const upload = async (files: VariantFiles) => {
    const { body, contentType } = await encodeMultipart(variantUploadForm(files));
    return () =>
      fetch(`${url}/v1/models/${model}/variants`, {
        method: "POST",
        headers: { ...auth, "Content-Type": contentType },
        body,
      });
  };
  const registerSmall: number[] = [];
  for (const files of smallFiles.slice(1)) registerSmall.push(await timed(await upload(files), [201]));
  const registerLarge: number[] = [];
  for (const files of largeFiles) registerLarge.push(await timed(await upload(files), [201]));
  const reupload: number[] = [];
  for (const files of smallFiles.slice(0, Math.min(10, nSmall)))
    reupload.push(await timed(await upload(files), [200]));

  const total = nSmall + nLarge;
  const getOne: number[] = [];
  const list: number[] = [];
  const listFiltered: number[] = [];
  for (let i = 0; i < nLookups; i++) {
    const version = 1 + (i % total);
    getOne.push(await timed(() => fetch(`${url}/v1/models/${model}/variants/${version}`), [200]));
    list.push(await timed(() => fetch(`${url}/v1/models/${model}/variants`), [200]));
    listFiltered.push(
      await timed(
        () => fetch(`${url}/v1/models/${model}/variants?status=staged&minAccuracy=0.5&maxSparsity=0.5`),
        [200],
      ),
    );
  }
  const ls = sluice("ls", model, "--url", url);
  console.error(`sluice ls: ${ls.trim().split("\n").length - 1} variants listed`);

  const sizeSmall = smallFiles[0].model.byteLength;
  const sizeLarge = largeFiles[0]?.model.byteLength ?? 0;
  const rows = [
    summarize(
      "register (small)",
      registerSmall,
      `POST variants, model.onnx ${formatBytes(sizeSmall)} + tokenizer`,
    ),
    ...(nLarge > 0
      ? [
          summarize(
            "register (large)",
            registerLarge,
            `POST variants, model.onnx ${formatBytes(sizeLarge)} + tokenizer`,
          ),
        ]
      : []),
    summarize("re-upload identical", reupload, "POST variants, existing sha256 -> 200"),
    summarize("get variant", getOne, "GET variants/:version (with manifest)"),
    summarize("list variants", list, `GET variants (${total} rows)`),
    summarize("list filtered", listFiltered, "GET variants?status&minAccuracy&maxSparsity"),
  ];

  console.log(`\nregistry through wrangler dev (local D1 + R2), ${new Date().toISOString()}`);
  console.log(`host: ${availableParallelism()} CPUs, load average ${loadavg()[0].toFixed(1)} (1 min)`);
  console.log(
    `${"operation".padEnd(22)} ${"n".padStart(4)} ${"p50 ms".padStart(8)} ${"p95 ms".padStart(8)}  note`,
  );
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(22)} ${String(r.n).padStart(4)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p95Ms.toFixed(2).padStart(8)}  ${r.note}`,
    );
  }
  const ratio = rows[0].p50Ms / rows.find((r) => r.name === "get variant")!.p50Ms;
  console.log(`\nregistration (small) / lookup p50: ${ratio.toFixed(1)}x`);

  mkdirSync(path.join(root, "bench-results"), { recursive: true });
  const out = path.join(root, "bench-results/registry.json");
  writeFileSync(
    out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        setup: {
          server:
            "wrangler dev 4.86.0 (workerd, local D1 + R2), sequential requests from Node fetch on the same host",
          variants: total,
          lookupsEach: nLookups,
          modelBytes: { small: sizeSmall, large: sizeLarge },
          // Context for noisy figures: the machine may be shared with other jobs.
          cpus: availableParallelism(),
          loadAverage1m: loadavg()[0],
        },
        results: rows,
      },
      null,
      2,
    ),
  );
  console.log(`wrote ${path.relative(root, out)}`);
  updateBenchmarksPage();
}

try {
  await main();
} finally {
  dev?.stop();
  rmSync(work, { recursive: true, force: true });
}
