/** The import report as `sluice inspect` prints it: what was recognised, and what will and will not be gated. */
import type { ImportedModel } from "./import";
import { describeSharing, usesByWeight } from "./shared-weights";

export interface HeadPlan {
  /** What training does with the model's head for a task with `numLabels` labels. */
  action: "keep" | "replace" | "add";
  reason: string;
}

/** Keep a classification head whose width equals the task's labels; otherwise train a new one. */
export function headPlan(m: ImportedModel, numLabels?: number): HeadPlan {
  const h = m.report.head;
  if (h.kind === "sequence-classification") {
    if (numLabels === undefined || h.numLabels === numLabels)
      return {
        action: "keep",
        reason: `its ${h.numLabels}-label classification head is kept and trained with the gates${numLabels === undefined ? " when the task has that many labels (else replaced)" : ""}`,
      };
    return {
      action: "replace",
      reason: `its classification head has ${h.numLabels} labels, the task ${numLabels}: a new head is trained on the encoder output`,
    };
  }
  if (h.kind === "none")
    return { action: "add", reason: "no head: a new classification head is trained on the encoder output" };
  const what = {
    "question-answering": "question-answering",
    "token-classification": "token-classification",
    pooler: "pooler",
  }[h.kind];
  return {
    action: "replace",
    reason: `its ${what} head (${h.linears.join(", ")}) is cut off; a new classification head is trained on the encoder output`,
  };
}

export function formatImportReport(
  m: ImportedModel,
  opts: { numLabels?: number; pooling?: string; maxSequenceLength?: number } = {},
): string {
  const r = m.report;
  const rec = m.recognition;
  const lines: string[] = [];
  const add = (s = "") => lines.push(s);
  const fused = Object.entries(r.unfused);
  add(
    `opset ${r.opset.original}${r.opset.original < r.opset.canonical ? ` (upgraded to ${r.opset.canonical})` : ""}${fused.length ? `; fused ops rewritten: ${fused.map(([op, n]) => `${op} x${n}`).join(", ")}` : ""}`,
  );
  if (r.folded.constants || r.folded.weightTransforms)
    add(
      `folded: ${r.folded.constants} Constant nodes, ${r.folded.weightTransforms} weight Transpose/Cast/Identity nodes`,
    );
  if (r.precision)
    add(
      `precision: fp16 file upcast to fp32 (${r.precision.tensors} fp16 tensors widened, ${r.precision.roundedConstants} Cast-to-fp16 constants folded rounded, ${r.precision.casts} fp16 Casts made fp32, ${r.precision.droppedCasts} float-to-float Casts dropped); trained and exported in fp32`,
    );
  add(
    `inputs: ${r.inputs.map((i) => (i.original === i.name && i.originalDtype === "int64" ? i.name : `${i.name} (from ${i.original}, ${i.originalDtype})`)).join(", ")}${r.derivedInputs.length ? `; computed inside: ${r.derivedInputs.join(", ")} (arange)` : ""}`,
  );
  if (r.fixedSequenceLength)
    add(`fixed sequence length: ${r.fixedSequenceLength} (every batch is padded to it)`);
  else if (opts.maxSequenceLength)
    add(`longest sequence: ${opts.maxSequenceLength} tokens (what its position-embedding table takes)`);
  add(
    `outputs: ${r.outputs.original.join(", ")}; encoder output ${r.outputs.hidden}${r.outputs.logits ? `; logits ${r.outputs.logits}` : ""}`,
  );
  add(`encoder: ${r.layers} layers, hidden ${r.hidden}, vocabulary ${r.vocabSize}`);
  for (const [i, a] of rec.attention.entries()) {
    const f = rec.ffn[i];
    add(
      `  layer ${i}: attention ${a.heads} heads x ${a.headDim} (q ${a.q.node}, k ${a.k.node}, v ${a.v.node}, out ${a.o.node})`,
    );
    if (f)
      add(
        `           FFN ${f.up.outFeatures} (${f.up.node} -> ${[...new Set(f.chain.map((c) => c.node.op))].join("/") || "linear"} -> ${f.down.node})`,
      );
  }
  if (rec.ffn.length !== rec.attention.length)
    add(`  (${rec.ffn.length} FFNs for ${rec.attention.length} attention blocks)`);
  if (rec.otherEncoderLinears.length)
    add(
      `  other encoder linears (gated per layer): ${rec.otherEncoderLinears.map((l) => l.node).join(", ")}`,
    );
  add(
    `head: ${r.head.kind}${r.head.numLabels ? ` (${r.head.numLabels} labels)` : ""}${r.head.linears.length ? `: ${r.head.linears.join(", ")}` : ""}`,
  );
  add(`  ${headPlan(m, opts.numLabels).reason}`);
  const sharing = describeSharing(r.shared, rec);
  if (sharing) add(`shared layers: ${sharing}`);
  const gated = rec.encoderLinears;
  // Each weight once: a shared weight is one gated matrix however many linears read it.
  const unique = [...usesByWeight(gated).values()].map((uses) => uses[0]);
  const weights = unique.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0);
  add(
    `gated: ${gated.length} linear layers${unique.length !== gated.length ? ` (${unique.length} distinct weights)` : ""} (${weights.toLocaleString("en-US")} weights); not gated: ${rec.headLinears.length} head linears${rec.headLinears.length ? ` (${rec.headLinears.map((l) => l.node).join(", ")}; gate them with --include)` : ""}`,
  );
  for (const note of r.notes) add(`note: ${note}`);
  return lines.join("\n");
}
