/** Runs the `sluice` CLI in-process with its console output captured, for tests of exit codes and messages. */
import { vi } from "vitest";
import { main } from "../../src/trainer-node/cli";

export async function runSluice(...argv: string[]): Promise<{ code: number; said: string }> {
  const err = vi.spyOn(console, "error").mockImplementation(() => {});
  const log = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    const code = await main(argv);
    return { code, said: err.mock.calls.map((c) => String(c[0])).join("\n") };
  } finally {
    err.mockRestore();
    log.mockRestore();
  }
}
