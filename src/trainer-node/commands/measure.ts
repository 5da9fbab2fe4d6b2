import { rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { type Manifest, manifestGraphOptimization, parseManifest } from "../../core/manifest";
import { decodeModel } from "../../core/onnx/codec";
import { compareEdgeLatency, EDGE_MIN_RUNS, edgeFigures } from "../export/edge-latency";
import { measureLatency } from "../export/latency";
import { type Command, UsageError } from "./command";
import { parseFlags, positiveIntFlag } from "./options";
import { readVariantDir } from "./variant-dir";

const USAGE = `usage: sluice measure <variant dir> [options]
  <variant dir>             a variant written by sluice export / train / quantize (manifest.json, model.onnx)
  --runs <n>                timed runs after warm-up, per runtime (default: 20; wasm at least ${EDGE_MIN_RUNS})
Rewrites the manifest's latency (onnxruntime-node, 1 thread, and onnxruntime-web wasm, 1 thread) at its
recorded batch x sequence length.`;

export const command: Command = {
  summary: "re-measure a variant's latency (onnxruntime-node and onnxruntime-web wasm) into its manifest",
  async run(argv) {
    const { values: o, positionals } = parseFlags(
      { args: argv, allowPositionals: true, options: { runs: { type: "string", default: "20" } } },
      USAGE,
    );
    if (positionals.length !== 1) throw new UsageError(`expected exactly one <variant dir>\n${USAGE}`);
    const runs = positiveIntFlag(o, "runs");
    const dir = positionals[0];
    const { manifest, bytes } = await readVariantDir(dir, USAGE);
    const latency = await measureVariant(manifest, bytes, runs);
    const updated = parseManifest({ ...manifest, latency });
    await replaceFile(path.join(dir, "manifest.json"), `${JSON.stringify(updated, null, 2)}\n`);
    const was = manifest.latency;
    console.log(
      `${dir}: ${manifest.model.name} p50 ${latency.p50Ms.toFixed(2)} ms (${latency.runtime}; was ${was.p50Ms.toFixed(2)} ms), ` +
        `edge p50 ${latency.edge!.p50Ms.toFixed(2)} ms (${latency.edge!.runtime}${was.edge ? `; was ${was.edge.p50Ms.toFixed(2)} ms` : ""}), ` +
        `batch ${latency.batch} x ${latency.seqLen}`,
    );
    return 0;
  },
};

/** Both runtimes at the manifest's batch x seqLen, one thread each (how export measured them). */
export async function measureVariant(
  manifest: Manifest,
  bytes: Uint8Array,
  runs: number,
): Promise<Manifest["latency"]> {
  const graph = decodeModel(bytes);
  const { batch, seqLen } = manifest.latency;
  const t0 = performance.now();
  const node = await measureLatency({ bytes, graph }, { batch, seq: seqLen, threads: 1, runs });
  const edge = (
    await compareEdgeLatency(
      { model: { bytes, graph, fusedAtExport: manifestGraphOptimization(manifest) === "edge" } },
      { batch, seq: seqLen, runs },
    )
  ).model;
  console.error(
    `measured in ${((performance.now() - t0) / 1000).toFixed(1)} s: onnxruntime-node ${node.runs} runs, wasm ${edge.runs} runs`,
  );
  return {
    p50Ms: node.p50Ms,
    p95Ms: node.p95Ms,
    batch: node.batch,
    seqLen: node.seqLen,
    runtime: node.runtime,
    edge: edgeFigures(edge),
  };
}

/** Writes `file` atomically: a temporary file beside it, renamed over it (removed if anything fails). */
async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, text);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
