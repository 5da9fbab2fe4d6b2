/**
 * The default gate method, chosen by the sparsity study (`npm run bench:sparsity`, docs/sparsity-study.md) by
 * test accuracy at equal removed fraction. Plain `finegates` cannot be the default: it does not control the
 * removed fraction (issue 8), so its accuracy is not at the asked-for sparsity.
 */
import type { GateMethodName } from "./finegates";

export const DEFAULT_GATE_METHOD: GateMethodName = "hardconcrete";
