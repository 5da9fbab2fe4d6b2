/**
 * Starts the real gateway under `wrangler dev` for simulations and browser tests: a fresh temporary persist dir
 * (local D1 with migrations applied, local R2, miniflare's queue), a free port, an admin token. `stop()` kills
 * wrangler's whole process group (wrangler, esbuild, workerd) and removes the persist dir; it is also run on
 * process exit and on SIGINT/SIGTERM, so a crashed run never leaves workerd behind.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
const wranglerBin = path.join(root, "node_modules/wrangler/bin/wrangler.js");

export interface WranglerDev {
  url: string;
  adminToken: string;
  /** everything wrangler printed so far */
  log(): string;
  stop(): void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

export async function startWranglerDev(
  options: { vars?: Record<string, string>; readyTimeoutMs?: number } = {},
): Promise<WranglerDev> {
  const adminToken = `dev-${crypto.randomUUID()}`;
  const persist = mkdtempSync(path.join(tmpdir(), "sluice-wrangler-"));
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" };
  execFileSync(
    process.execPath,
    [wranglerBin, "d1", "migrations", "apply", "sluice", "--local", "--persist-to", persist],
    { cwd: root, env, stdio: ["ignore", "ignore", "inherit"] },
  );
  const port = await freePort();
  const vars = { ADMIN_TOKEN: adminToken, ...options.vars };
  const child: ChildProcess = spawn(
    process.execPath,
    [
      wranglerBin,
      "dev",
      "--persist-to",
      persist,
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      "--show-interactive-dev-session=false",
    ],
    { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  const chunks: string[] = [];
  child.stdout?.on("data", (d) => chunks.push(String(d)));
  child.stderr?.on("data", (d) => chunks.push(String(d)));

  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    if (child.pid && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGTERM"); // its own process group
      } catch {}
    }
    rmSync(persist, { recursive: true, force: true });
  };
  process.on("exit", stop);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      stop();
      process.exit(130);
    });
  }

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 120_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      stop();
      throw new Error(`wrangler dev exited:\n${chunks.join("")}`);
    }
    try {
      if ((await fetch(`${url}/v2/health/live`)).ok) {
        return { url, adminToken, log: () => chunks.join(""), stop };
      }
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  stop();
  throw new Error(`wrangler dev did not become ready in time:\n${chunks.join("")}`);
}
