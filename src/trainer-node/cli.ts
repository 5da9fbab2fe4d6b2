/**
 * `sluice <command>`: the table of commands lives in ./commands/index.ts, each command in its own module. Usage
 * errors and import refusals exit 2, other failures 1.
 */
import { UsageError } from "./commands/command";
import { COMMANDS } from "./commands/index";
import { ImportError } from "./import/errors";

export type { Command } from "./commands/command";
export { UsageError };

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.log("usage: sluice <command> [options]\n\ncommands:");
    for (const [n, load] of Object.entries(COMMANDS))
      console.log(`  ${n.padEnd(14)} ${(await load()).command.summary}`);
    return name ? 0 : 1;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`sluice: unknown command '${name}' (try 'sluice help')`);
    return 2;
  }
  try {
    return await (await load()).command.run(rest);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`sluice ${name}: ${message}`);
    return err instanceof UsageError || err instanceof ImportError ? 2 : 1;
  }
}
