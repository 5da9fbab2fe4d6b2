/**
 * Counts removed weights exactly as export does, by asking export's planner which rows and columns of each gated
 * layer it would keep (a closed FFN-in row removes the neuron's FFN-out column too, closed Q/K/V dimensions
 * propagate through their heads). Binarisation uses it so the target is met in the figure export reports.
 */
import type { Graph } from "../../core/onnx/graph";
import { keptWeights, type LayerGates, planExport, plannedLinears } from "../export/plan";
import type { LayerGateValues, RemovalModel } from "../gates/finegates";
import { analyzeEncoder } from "../import/blocks";
import { expandToUses } from "../import/shared-weights";

export function exportRemovalModel(task: Graph): RemovalModel & { kind: string } {
  const analysis = analyzeEncoder(task);
  return {
    kind: "export-planner",
    removedFraction(gates: readonly LayerGateValues[]): number {
      // A shared weight's tied gate applies at each use; its weights are counted once (one exported copy).
      const map = expandToUses(
        new Map<string, LayerGates>(gates.map((g) => [g.node, { row: g.row, col: g.col }])),
        analysis.linears,
      );
      const planned = new Map(
        plannedLinears(planExport(task, analysis, map)).map((p) => [p.plan.folded.layer.node, p.plan]),
      );
      let before = 0;
      let after = 0;
      for (const g of gates) {
        const p = planned.get(g.node);
        if (!p) throw new Error(`export's planner does not cover gated layer ${g.node}`);
        before += p.folded.layer.inFeatures * p.folded.layer.outFeatures;
        after += keptWeights(p);
      }
      return before === 0 ? 0 : 1 - after / before;
    },
  };
}
