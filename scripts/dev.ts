/**
 * `npm run dev`: the gateway under `wrangler dev` on local D1/R2 (kept in .wrangler/ between runs), with
 * migrations applied and an API key minted and printed, so a request can be sent at once.
 *
 * The admin token comes from .dev.vars (ADMIN_TOKEN=...); without one a token is generated for this run and
 * printed. API keys are enforced unless .dev.vars (or `-- --var AUTH:off`) sets AUTH=off explicitly.
 * Extra arguments go to `wrangler dev`.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { mintDevKey } from "./lib/wrangler";

const root = path.resolve(import.meta.dirname, "..");
const wrangler = path.join(root, "node_modules/wrangler/bin/wrangler.js");
const devVars = path.join(root, ".dev.vars");
const fromFile = existsSync(devVars)
  ? /^ADMIN_TOKEN\s*=\s*"?([^"\n]+)"?\s*$/m.exec(readFileSync(devVars, "utf8"))?.[1]
  : undefined;
const adminToken = fromFile ?? `dev-${crypto.randomUUID()}`;
const args = process.argv.slice(2);
const portArg = args.indexOf("--port");
const port = portArg >= 0 ? args[portArg + 1] : "8787";

execFileSync(process.execPath, [wrangler, "d1", "migrations", "apply", "sluice", "--local"], {
  cwd: root,
  stdio: "inherit",
});
const child = spawn(
  process.execPath,
  [wrangler, "dev", ...(fromFile ? [] : ["--var", `ADMIN_TOKEN:${adminToken}`]), ...args],
  { cwd: root, stdio: "inherit" },
);
child.on("exit", (code) => process.exit(code ?? 0));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));

const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 240; i++) {
  await new Promise((r) => setTimeout(r, 500));
  try {
    if (!(await fetch(`${url}/v2/health/live`)).ok) continue;
  } catch {
    continue;
  }
  try {
    const key = await mintDevKey(url, adminToken);
    console.log(
      `\nSluice dev gateway on ${url}\n` +
        (fromFile
          ? "  admin token: ADMIN_TOKEN from .dev.vars\n"
          : `  admin token (this run): ${adminToken}\n`) +
        `  API key (infer, feedback): ${key}\n` +
        `  try: curl -s ${url}/v1/models/<model>/route -H "authorization: Bearer ${key}"\n`,
    );
  } catch (err) {
    console.error(`\ncould not mint a dev API key: ${(err as Error).message}\n`);
  }
  break;
}
