/**
 * Output directories that a failed command leaves as it found them: a directory the command created is
 * removed, and in an existing one only the files the command added are (files it overwrote stay overwritten,
 * which is why commands validate everything before they start writing).
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";

export async function withCleanOutput<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const existed = existsSync(dir);
  const before = new Set(existed ? readdirSync(dir) : []);
  const cleanUp = () => {
    if (!existsSync(dir)) return;
    if (!existed) rmSync(dir, { recursive: true, force: true });
    else
      for (const f of readdirSync(dir))
        if (!before.has(f)) rmSync(path.join(dir, f), { recursive: true, force: true });
  };
  try {
    const result = await fn();
    // A command that reports failure through its exit code cleans up too.
    if (typeof result === "number" && result !== 0) cleanUp();
    return result;
  } catch (err) {
    cleanUp();
    throw err;
  }
}
