/**
 * bench:gateway-proxy — where the 503 "Your worker restarted mid-request" under concurrency comes from. The
 * same closed-loop load (default c=32, 3,000 requests, AUTH=off so no rate limit answers) on a route that does
 * no inference (`POST /v2/models/nope/infer`: 404 after routing), first through wrangler dev's URL (its
 * ProxyWorker in front of the Worker), then straight to the Worker's own socket in the same workerd. The
 * Worker's socket is found by listing the listening sockets of wrangler's process group (`ss -ltnp`) and
 * asking each for /v2/health/live. Writes bench-results/gateway-proxy.json.
 *
 *   npm run bench:gateway-proxy -- [--concurrency 32] [--requests 3000]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startWranglerDev, type WranglerDev } from "../scripts/lib/wrangler";
import { updateBenchmarksPage } from "./lib/docs";

const { values: args } = parseArgs({
  options: {
    concurrency: { type: "string", default: "32" },
    requests: { type: "string", default: "3000" },
  },
});
const concurrency = Number(args.concurrency);
const requests = Number(args.requests);
const root = path.resolve(import.meta.dirname, "..");
const body = JSON.stringify({
  inputs: [{ name: "input_ids", datatype: "INT64", shape: [1, 4], data: [2, 5, 6, 7] }],
});

/** Sockets listened on by wrangler's process group (wrangler, its proxy's workerd, the Worker's workerd). */
function groupPorts(dev: WranglerDev): number[] {
  const sh = (cmd: string, a: string[]) => execFileSync(cmd, a, { encoding: "utf8" });
  const wrangler = sh("pgrep", ["-f", `wrangler.js dev .*${dev.persistDir}`])
    .trim()
    .split("\n")[0];
  const pgid = sh("ps", ["-o", "pgid=", "-p", wrangler]).trim();
  const pids = sh("pgrep", ["-g", pgid]).trim().split("\n");
  return sh("ss", ["-ltnpH"])
    .split("\n")
    .filter((l) => pids.some((p) => l.includes(`pid=${p},`)))
    .map((l) => Number(l.split(/\s+/)[3].split(":").pop()));
}

async function workerSocket(dev: WranglerDev): Promise<string> {
  for (const port of groupPorts(dev)) {
    const url = `http://127.0.0.1:${port}`;
    if (url === dev.url) continue;
    try {
      const res = await fetch(`${url}/v2/health/live`);
      if (res.status === 200 && (await res.text()).includes('"live"')) return url;
    } catch {}
  }
  throw new Error("found no socket of the Worker itself in wrangler's process group");
}

async function load(url: string) {
  const answers: Record<string, number> = {};
  let sent = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < requests) {
        sent++;
        let key: string;
        try {
          const res = await fetch(`${url}/v2/models/nope/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
          });
          key = `${res.status} ${(await res.text()).slice(0, 60)}`;
        } catch (err) {
          key = `client error: ${(err as Error).message}`;
        }
        answers[key] = (answers[key] ?? 0) + 1;
      }
    }),
  );
  const dropped = Object.entries(answers)
    .filter(([k]) => k.startsWith("503 Your worker restarted"))
    .reduce((a, [, n]) => a + n, 0);
  return { requests, seconds: (performance.now() - t0) / 1000, answers, dropped };
}

const loadBefore = os.loadavg();
const dev = await startWranglerDev({ snapshot: true, vars: { AUTH: "off" }, mintKey: false });
try {
  const direct = await workerSocket(dev);
  console.error(`wrangler dev (proxy) ${dev.url}, the Worker's own socket ${direct}`);
  const viaProxy = await load(dev.url);
  console.error(`through the proxy: ${JSON.stringify(viaProxy.answers)}`);
  const straight = await load(direct);
  console.error(`straight to the Worker: ${JSON.stringify(straight.answers)}`);
  const result = {
    benchmark: "gateway-proxy",
    date: new Date().toISOString(),
    command: `npm run bench:gateway-proxy${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    machine: `${os.cpus()[0]?.model ?? "cpu"}, ${os.cpus().length} cores shared with other jobs, node ${process.version}`,
    loadAverage: { before: loadBefore, after: os.loadavg() },
    route: "POST /v2/models/nope/infer (404 after routing, no inference), AUTH=off",
    concurrency,
    viaProxy,
    straightToWorker: straight,
  };
  const out = path.join(root, "bench-results/gateway-proxy.json");
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(
    `503 "restarted mid-request": ${viaProxy.dropped} of ${requests} through wrangler's proxy, ${straight.dropped} of ${requests} straight to the Worker (c=${concurrency})`,
  );
  updateBenchmarksPage();
} finally {
  dev.stop();
}
