/**
 * `npm run bench:import-corpus`: every model of the Hugging Face export corpus (test/fixtures/hf/) through
 * inspect, the acceptance command (`sluice train --steps 20 --target-sparsity 0.3`, which exports), and
 * registration + `/classify` under `wrangler dev`. Prints the fixture × result table, writes
 * bench-results/import-corpus.json, and regenerates the table between the markers in docs/import.md.
 * `SLUICE_CORPUS_DIR=dir` runs another corpus (e.g. exports of your own) without touching the docs.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  checkImport,
  type Fixture,
  type ImportCheck,
  loadCorpus,
  modelFile,
  originalTolerance,
  SERVE_TEXTS,
  type ServeCheck,
  sluice,
  TOLERANCE,
  TRAIN_ARGS,
  type TrainCheck,
  trainAndServe,
} from "./lib/corpus";
import { updateBenchmarksPage } from "./lib/docs";

interface Row {
  fixture: Omit<Fixture, "reference" | "dir">;
  import: ImportCheck;
  refusal?: { inspectCode: number; trainCode: number; message: string };
  train?: TrainCheck;
  serve?: ServeCheck | { error: string };
  verdict: string;
}

function verdict(fx: Fixture, r: Row): string {
  if (fx.expect.refused !== null)
    return r.refusal?.inspectCode === 2 && r.refusal.trainCode === 2
      ? `refused (${fx.expect.refused})`
      : "FAIL";
  const i = r.import;
  const t = r.train;
  const ok =
    !i.refused &&
    i.blockLinears === (fx.expect.encoderLinears ?? i.blockLinears) &&
    i.headLinears === (fx.expect.headLinears ?? i.headLinears) &&
    (i.hiddenVsOriginal ?? 0) <= originalTolerance(fx) &&
    (i.logitsVsTorch ?? 0) <= TOLERANCE &&
    t?.code === 0 &&
    Math.abs((t.removed ?? 0) - 0.3) <= 0.02 &&
    (t.maxAbsDiff ?? 1) <= TOLERANCE &&
    t.gatedHead?.length === 0 &&
    r.serve !== undefined &&
    "maxScoreDiff" in r.serve &&
    r.serve.maxScoreDiff <= TOLERANCE;
  return ok ? "pass" : "FAIL";
}

const exp = (x: number | undefined) => (x === undefined ? "–" : x === 0 ? "0" : x.toExponential(0));
const pct = (x: number | undefined) => (x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

function table(rows: Row[]): string {
  const head =
    "| fixture | exporter | opset | ids | axes | folding | fused ops | head | recognised (encoder / head linears) | import vs PyTorch | removed | export vs gated | /classify vs ORT-node | result |\n" +
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";
  const lines = rows.map((r) => {
    const f = r.fixture;
    const i = r.import;
    const serve = r.serve && "maxScoreDiff" in r.serve ? exp(r.serve.maxScoreDiff) : r.serve ? "error" : "–";
    const recognised = i.refused
      ? `refused: ${i.refused.split("\n")[0].slice(0, 60)}…`
      : `${i.encoderLinears} / ${i.headLinears} (${i.headKind})`;
    return `| ${f.id} | ${f.exporter} | ${f.opset} | ${f.options.idsDtype} | ${f.options.dynamicAxes} | ${f.options.constantFolding ? "on" : "off"} | ${f.options.fused?.join(", ") || "–"} | ${f.task} | ${recognised} | ${exp(Math.max(i.hiddenVsOriginal ?? 0, i.logitsVsTorch ?? 0))} | ${pct(r.train?.removed)} | ${exp(r.train?.maxAbsDiff)} | ${serve} | ${r.verdict} |`;
  });
  return [head, ...lines].join("\n");
}

async function main() {
  const corpus = loadCorpus();
  if (corpus.length === 0) throw new Error("no fixtures (test/fixtures/hf/*/fixture.json)");
  const work = mkdtempSync(path.join(os.tmpdir(), "sluice-bench-corpus-"));
  const rows: Row[] = [];
  try {
    for (const fx of corpus) {
      const { reference: _r, dir: _d, ...fixture } = fx;
      rows.push({ fixture, import: await checkImport(fx, 2), verdict: "" });
    }
    const accepted = corpus.filter((f) => f.expect.refused === null);
    const results = await trainAndServe(accepted, work);
    for (const fx of accepted) {
      const { train, serve } = results.get(fx.id)!;
      const row = rows[corpus.indexOf(fx)];
      row.train = train;
      row.serve = serve instanceof Error ? { error: serve.message } : serve;
    }
    for (const fx of corpus.filter((f) => f.expect.refused !== null)) {
      const inspect = await sluice(["inspect", modelFile(fx)]);
      const train = await sluice([
        "train",
        "--base",
        modelFile(fx),
        "--out",
        path.join(work, fx.id),
        ...TRAIN_ARGS,
      ]);
      rows[corpus.indexOf(fx)].refusal = {
        inspectCode: inspect.code,
        trainCode: train.code,
        message: inspect.stderr.trim().split("\n")[0],
      };
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  for (const [k, fx] of corpus.entries()) rows[k].verdict = verdict(fx, rows[k]);

  const md = table(rows);
  console.log(md);
  const passed = rows.filter((r) => r.verdict !== "FAIL").length;
  console.log(`\n${passed} of ${rows.length} fixtures as expected`);
  const date = new Date().toISOString();
  if (process.env.SLUICE_CORPUS_DIR) return;
  writeFileSync(
    "bench-results/import-corpus.json",
    `${JSON.stringify({ date, cpus: os.cpus().length, trainArgs: TRAIN_ARGS, rows }, null, 1)}\n`,
  );
  const doc = readFileSync("docs/import.md", "utf8");
  const start = "<!-- corpus:start -->";
  const end = "<!-- corpus:end -->";
  const block = `${start}\nGenerated by \`npm run bench:import-corpus\` on ${date} from bench-results/import-corpus.json: ${passed} of ${rows.length} fixtures as expected. Each accepted fixture: \`sluice train ${TRAIN_ARGS.join(" ")}\` with its own tokenizer (which exports), then \`sluice push\` and \`/classify\` under \`wrangler dev\`. "import vs PyTorch" is the largest difference of the imported graph's hidden states (against the original graph) and kept logits (against PyTorch); "export vs gated" is export's own equivalence check on the spam test split; "/classify vs ORT-node" compares the gateway's scores with onnxruntime-node's on ${SERVE_TEXTS.length} texts (one longer than any model takes).\n\n${md}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  writeFileSync(
    "docs/import.md",
    i >= 0 && j > i
      ? doc.slice(0, i) + block + doc.slice(j + end.length)
      : `${doc.trimEnd()}\n\n## Corpus results\n\n${block}\n`,
  );
  console.log("wrote bench-results/import-corpus.json and docs/import.md");
  updateBenchmarksPage();
}

await main();
