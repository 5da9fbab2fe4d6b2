// One line per command; each module exports `command: Command`. Loaded on demand so `sluice push` does not
// pay for onnxruntime-node's start-up.
import type { Command } from "./command";

export const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  inspect: () => import("./inspect"),
  data: () => import("./data"),
  tokenizer: () => import("./tokenizer"),
  train: () => import("./train"),
  export: () => import("./export"),
  push: () => import("./push"),
  ls: () => import("./ls"),
  base: () => import("./base"),
  pretrain: () => import("./pretrain"),
  quantize: () => import("./quantize"),
  measure: () => import("./measure"),
};
