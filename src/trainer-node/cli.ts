/**
 * `sluice <command>`: a table of commands, each in its own module under ./commands, loaded on demand
 * so `sluice push` does not pay for onnxruntime-node's start-up.
 */
export interface Command {
  /** One line for `sluice help`. */
  summary: string;
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<{ command: Command }>> = {};

/** Registers a command; modules call this from ./commands/index.ts. */
export function registerCommand(name: string, load: () => Promise<{ command: Command }>) {
  commands[name] = load;
}

export class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  await import("./commands/index");
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.log("usage: sluice <command> [options]\n\ncommands:");
    for (const [n, load] of Object.entries(commands))
      console.log(`  ${n.padEnd(14)} ${(await load()).command.summary}`);
    return name ? 0 : 1;
  }
  const load = commands[name];
  if (!load) {
    console.error(`sluice: unknown command '${name}' (try 'sluice help')`);
    return 2;
  }
  try {
    return await (await load()).command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`sluice ${name}: ${err.message}`);
      return 2;
    }
    console.error(`sluice ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
