/** `sluice inspect`: the import report of a model, before any training. */

import { maxSequenceLength as positionLimit } from "../import/limits";
import { loadUserModel } from "../import/load";
import { formatImportReport, headPlan } from "../import/report";
import type { Command } from "./command";
import { UsageError } from "./command";
import { isPositiveInt, numberFlag, parseFlags } from "./options";

const USAGE = `usage: sluice inspect <model.onnx> [options]
  --labels N               the task's label count: says whether the model's own head is kept
  --logits-output NAME     the output holding classification logits (when several qualify)
  --hidden-output NAME     the value holding the encoder's hidden states [batch, seq, hidden]
  --json                   the report as JSON`;

export const command: Command = {
  summary: "show what Sluice recognises in an ONNX encoder (layers, heads, inputs) and what it will gate",
  async run(argv) {
    const { values, positionals } = parseFlags(
      {
        args: argv,
        allowPositionals: true,
        options: {
          labels: { type: "string" },
          "logits-output": { type: "string" },
          "hidden-output": { type: "string" },
          json: { type: "boolean", default: false },
        },
      },
      USAGE,
    );
    if (positionals.length !== 1) throw new UsageError(`give one model file\n${USAGE}`);
    const numLabels = numberFlag(values, "labels", (x) => isPositiveInt(x) && x >= 2, "an integer ≥ 2");
    const model = loadUserModel(
      positionals[0],
      { logitsOutput: values["logits-output"], hiddenOutput: values["hidden-output"] },
      "model",
    );
    const maxSequenceLength = await positionLimit(model.graph);
    if (values.json) {
      const rec = model.recognition;
      console.log(
        JSON.stringify(
          {
            ...model.report,
            maxSequenceLength,
            gated: rec.encoderLinears.map((l) => l.node),
            notGated: rec.headLinears.map((l) => l.node),
            headPlan: headPlan(model, numLabels),
          },
          null,
          2,
        ),
      );
    } else console.log(formatImportReport(model, { numLabels, maxSequenceLength }));
    return 0;
  },
};
