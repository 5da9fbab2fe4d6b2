/** What every `sluice` command module exports, and the error that means "bad invocation" (exit 2). */
export interface Command {
  /** One line for `sluice help`. */
  summary: string;
  run(argv: string[]): Promise<number>;
}

export class UsageError extends Error {}
