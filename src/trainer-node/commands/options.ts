/**
 * Flag handling shared by the CLI commands: node:util's parseArgs with its errors turned into usage errors,
 * required flags (optionally from an environment variable) and checked numeric flags, so every command words
 * the same mistake the same way.
 */
import { type ParseArgsConfig, parseArgs } from "node:util";
import { parseGatewayUrl } from "../registry-client";
import { UsageError } from "./command";

/** parseArgs, with an unknown or malformed flag reported as a UsageError that carries the command's usage. */
export function parseFlags<T extends ParseArgsConfig>(
  config: T,
  usage: string,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
}

/** Fails with "<flag> is required" (and the usage) when a string flag is missing or empty. */
export function requireFlag(value: string | undefined, flag: string, usage: string): asserts value is string {
  if (!value) throw new UsageError(`${flag} is required\n${usage}`);
}

/** A required flag that falls back to an environment variable, e.g. --url / $SLUICE_URL. */
export function flagOrEnv(
  value: string | undefined,
  env: Record<string, string | undefined>,
  envName: string,
  flag: string,
  usage: string,
): string {
  const v = value ?? env[envName];
  if (!v) throw new UsageError(`${flag} is required (or set ${envName})\n${usage}`);
  return v;
}

/** A gateway URL flag's value, normalised; a malformed one is a UsageError. */
export function gatewayUrlFlag(url: string): string {
  try {
    return parseGatewayUrl(url);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * A numeric flag checked by `ok`; undefined when the flag is absent (no default). `what` completes the
 * sentence "--<name> must be ...". `flag` is how the message names it (default `--<name>`).
 */
export function numberFlag(
  values: Record<string, unknown>,
  name: string,
  ok: (x: number) => boolean,
  what: string,
  flag = `--${name}`,
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const x = Number(raw);
  if (!Number.isFinite(x) || !ok(x)) throw new UsageError(`${flag} must be ${what}, got '${raw}'`);
  return x;
}

export const isPositiveInt = (x: number) => Number.isInteger(x) && x > 0;

/** A numeric flag that has a default (or is otherwise always present), checked to be a positive integer. */
export function positiveIntFlag(values: Record<string, unknown>, name: string): number {
  const x = numberFlag(values, name, isPositiveInt, "a positive integer");
  if (x === undefined) throw new UsageError(`--${name} is required`);
  return x;
}
