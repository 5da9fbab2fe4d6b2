/**
 * Starts the real gateway under `wrangler dev` for the demo, benchmarks, simulations and browser tests: a fresh
 * temporary persist dir (local D1 with migrations applied, local R2, miniflare's queue), a free port, a generated
 * admin token, and an API key (scopes infer + feedback) minted through `POST /v1/keys` once it is up. `stop()` kills wrangler's whole process group (wrangler, esbuild, workerd) and removes the persist
 * dir; it also runs on process exit and on SIGINT/SIGTERM, so a crashed or interrupted run never leaves workerd
 * behind. One module, so every caller starts the gateway the same way.
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
  /** An API key (`infer`, `feedback`) for inference, routing explanations and feedback. */
  apiKey: string;
  /** The local D1/R2 state (removed by `stop()`). */
  persistDir: string;
  /** wrangler's process id, also its process group's (wrangler, esbuild and both workerd processes). */
  pid: number;
  /** Everything wrangler printed so far. */
  log(): string;
  stop(): void;
}

export interface WranglerDevOptions {
  /** Extra Worker vars (`--var NAME:value`); ADMIN_TOKEN is generated unless given here. */
  vars?: Record<string, string>;
  readyTimeoutMs?: number;
  /** Extra `wrangler dev` arguments (e.g. `--inspector-port 9230` to profile the Worker). */
  args?: string[];
  /**
   * The source tree whose wrangler.toml, migrations and Worker are served (default: this repository), so a bench
   * can run the same client against an older checkout (a `git worktree`) side by side.
   */
  tree?: string;
  /** false: do not mint the API key (a tree from before API keys has no `POST /v1/keys`); `apiKey` is "". */
  mintKey?: boolean;
  /**
   * Serve the Worker as bundled once at start (`wrangler deploy --dry-run`, then `wrangler dev --no-bundle` on
   * that bundle) instead of the live tree. wrangler dev rebuilds and reloads the Worker whenever a source file it
   * bundled changes, and a reload answers every request in flight with a 503 "Your worker restarted
   * mid-request" (its proxy retries only GET and HEAD): a bench that runs while its tree is edited, merged or
   * checked out fails on the first POST in flight. Benchmarks serve a snapshot; the demo's --keep-running does not.
   */
  snapshot?: boolean;
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

/** Mints an API key (default scopes `infer` + `feedback`) on a running gateway with its admin token. */
export async function mintDevKey(
  url: string,
  adminToken: string,
  scopes: string[] = ["infer", "feedback"],
): Promise<string> {
  const res = await fetch(`${url}/v1/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ scopes }),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`minting a dev API key failed: ${res.status} ${text}`);
  return (JSON.parse(text) as { key: string }).key;
}

export async function startWranglerDev(options: WranglerDevOptions = {}): Promise<WranglerDev> {
  const vars = { ADMIN_TOKEN: `dev-${crypto.randomUUID()}`, ...options.vars };
  const tree = options.tree ? path.resolve(options.tree) : root;
  const persistDir = mkdtempSync(path.join(tmpdir(), "sluice-wrangler-"));
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" };
  try {
    execFileSync(
      process.execPath,
      [wranglerBin, "d1", "migrations", "apply", "sluice", "--local", "--persist-to", persistDir],
      { cwd: tree, env, stdio: ["ignore", "ignore", "inherit"] },
    );
  } catch (err) {
    rmSync(persistDir, { recursive: true, force: true });
    throw err;
  }
  let bundleDir: string | undefined;
  if (options.snapshot) {
    bundleDir = mkdtempSync(path.join(tmpdir(), "sluice-bundle-"));
    try {
      execFileSync(process.execPath, [wranglerBin, "deploy", "--dry-run", "--outdir", bundleDir], {
        cwd: tree,
        env,
        stdio: ["ignore", "ignore", "inherit"],
      });
    } catch (err) {
      rmSync(persistDir, { recursive: true, force: true });
      rmSync(bundleDir, { recursive: true, force: true });
      throw err;
    }
  }
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.execPath,
    [
      wranglerBin,
      "dev",
      // With a script path wrangler looks for the config beside the script, so it is named.
      ...(bundleDir
        ? [path.join(bundleDir, "worker.js"), "--no-bundle", "--config", path.join(tree, "wrangler.toml")]
        : []),
      "--persist-to",
      persistDir,
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      "--show-interactive-dev-session=false",
      ...(options.args ?? []),
    ],
    { cwd: tree, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  const chunks: string[] = [];
  child.stdout?.on("data", (d) => chunks.push(String(d)));
  child.stderr?.on("data", (d) => chunks.push(String(d)));

  let stopped = false;
  const onSignal = () => {
    stop();
    process.exit(130);
  };
  const stop = () => {
    if (stopped) return;
    stopped = true;
    if (child.pid && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGTERM"); // its own process group: wrangler, esbuild and workerd
      } catch {}
    }
    rmSync(persistDir, { recursive: true, force: true });
    if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
    process.off("exit", stop);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
  process.on("exit", stop);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 120_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      stop();
      throw new Error(`wrangler dev exited:\n${chunks.join("")}`);
    }
    try {
      if ((await fetch(`${url}/v2/health/live`)).ok) {
        const apiKey =
          options.mintKey === false
            ? ""
            : await mintDevKey(url, vars.ADMIN_TOKEN).catch((err) => {
                stop();
                throw err;
              });
        return {
          url,
          adminToken: vars.ADMIN_TOKEN,
          apiKey,
          persistDir,
          pid: child.pid!,
          log: () => chunks.join(""),
          stop,
        };
      }
    } catch (err) {
      if (stopped) throw err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  stop();
  throw new Error(`wrangler dev did not become ready in time:\n${chunks.join("")}`);
}
