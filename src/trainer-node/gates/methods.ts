/**
 * The default gate method, chosen by the sparsity study (`npm run bench:sparsity`, docs/sparsity-study.md) by
 * test accuracy at equal removed fraction. Plain `finegates` cannot be the default: it does not control the
 * removed fraction (issue 8), so its accuracy is not at the asked-for sparsity.
 */
import type { GateMethodName } from "./finegates";

export const DEFAULT_GATE_METHOD: GateMethodName = "hardconcrete";

/**
 * The default gate method when LoRA adapters train inside the gates (`--adapter-rank`), chosen by
 * `npm run bench:quality` on mean validation accuracy at 0.4 (docs/quality.md): FineGates' gates start saturated
 * at 1, so the adapters train undisturbed by gate noise until binarisation closes the least-open gates, and the
 * recovery phase lets the adapters repair what closing cost.
 */
export const DEFAULT_ADAPTER_GATE_METHOD: GateMethodName = "finegates-binarized";
