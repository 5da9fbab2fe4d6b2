/**
 * The contract between the training loop and a gating scheme (finegates.ts, hardconcrete.ts): gate shapes,
 * gate values, the method interface and removal accounting. Types only, so every method can import it.
 */
import type { Rng } from "../../core/random";

/** A gated layer as the gate math sees it: `rows` output features, `cols` input features. */
export interface GateLayerShape {
  node: string;
  rows: number;
  cols: number;
}

/** Gate values for one layer (row gate [rows], column gate [cols]), in graph-feed order. */
export interface LayerGateValues {
  node: string;
  row: Float32Array;
  col: Float32Array;
}

export interface GateBackward {
  sparsityLoss: number;
  penalty: number;
}

/** A gate method: the contract between the training loop and any gating scheme (finegates, L0, ...). */
export interface GateMethod {
  readonly name: string;
  readonly layers: readonly GateLayerShape[];
  /** Tensors the optimizer updates, keyed by a stable name (checkpoints and optimizer state use it). */
  readonly params: ReadonlyMap<string, Float32Array>;
  /** Settings for checkpoints and the manifest. */
  settings(): Record<string, unknown>;
  /** This step's training gates (draws noise from rng); remembers what `backward` needs. */
  sample(rng: Rng): LayerGateValues[];
  /** Deterministic evaluation gates; exactly 0 means export removes that row/column. */
  evalGates(): LayerGateValues[];
  /**
   * Gradients of (task loss + penalty) w.r.t. `params`, given d(task loss)/d(gate) for the gates of the last
   * `sample`. Writes into `grads` (same keys as params, overwritten). Returns the regulariser (unweighted) and
   * the penalty the method added to the loss (λ · regulariser for FineGates; a Lagrangian term for L0).
   */
  backward(taskGrad: readonly LayerGateValues[], grads: Map<string, Float32Array>): GateBackward;
  /** The regulariser alone at the current parameters (for logging at evaluation time). */
  sparsityLoss(): number;
  /**
   * Called when the main training phase ends. A method may change its gates (binarisation) and ask for a
   * recovery phase of `recoverySteps` more steps. Returns 0 when no recovery is wanted.
   */
  endOfTraining?(): { recoverySteps: number; note?: string };
  /** Extra state beyond `params` (e.g. which gates binarisation closed), for checkpoints/resume. */
  saveState(): Record<string, unknown>;
  loadState(state: Record<string, unknown>): void;
}

/** Weight counts the removal accounting needs: rows·cols per layer (bias rows add one each). */
export interface RemovalModel {
  /** Fraction of gated-layer weights removed by these evaluation gates (0 = exactly closed). */
  removedFraction(gates: readonly LayerGateValues[]): number;
}
