#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so there is no build step between editing and running.
import { spawn } from "node:child_process";
import { constants } from "node:os";

// glibc's malloc raises its mmap threshold (up to 32 MB) each time a large mmapped block is freed, after which
// onnxruntime's per-step activation buffers come from heap arenas that are not given back: bench:import measured
// `sluice train` on BERT-base at a 5.9 GB peak RSS, 3.6 GB with the threshold fixed (and the step no slower).
// glibc reads the setting only at process start, so on Linux the CLI runs itself once more with it set.
const MMAP_THRESHOLD = "MALLOC_MMAP_THRESHOLD_";
if (process.platform === "linux" && process.env[MMAP_THRESHOLD] === undefined) {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, [MMAP_THRESHOLD]: String(128 * 1024) },
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => {
    process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0);
  });
} else {
  const { register } = await import("tsx/esm/api");
  register();
  const { main } = await import("../src/trainer-node/cli.ts");
  process.exitCode = await main(process.argv.slice(2));
}
