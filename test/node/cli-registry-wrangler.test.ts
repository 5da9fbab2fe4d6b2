// `sluice push` and `sluice ls` end to end: the CLI (bin/sluice.js, its typed hono/client) against the real
// gateway under `wrangler dev` (workerd, local D1 and R2). Reference values come from outside the client: sha256s
// computed here with node:crypto, the registry's own JSON fetched with plain fetch.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeVariantFiles, type VariantFiles } from "../shared/variant-files";
import { freePort, startWranglerDev, type WranglerDev } from "../shared/wrangler-dev";

const root = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(tmpdir(), "sluice-cli-wrangler-"));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function trainerDir(name: string, files: VariantFiles): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(files.manifest, null, 2));
  writeFileSync(path.join(dir, "model.onnx"), files.model);
  if (files.tokenizer) writeFileSync(path.join(dir, "tokenizer.json"), files.tokenizer);
  return dir;
}

async function sluice(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [path.join(root, "bin/sluice.js"), ...argv],
      { cwd: root, encoding: "utf8", env: { ...process.env, SLUICE_URL: "", SLUICE_ADMIN_TOKEN: "" } },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

describe("sluice push and ls against wrangler dev", () => {
  let dev: WranglerDev;
  let small: VariantFiles;
  let large: VariantFiles;
  beforeAll(async () => {
    small = await makeVariantFiles("cli", { withTokenizer: true, seed: 1, accuracy: 0.91 });
    // ~4 MB of weights: over the 1 MB threshold above which push prints its progress.
    large = await makeVariantFiles("cli", { withTokenizer: true, seed: 2, vocab: 8192, hidden: 128 });
    dev = await startWranglerDev();
  }, 120_000);
  afterAll(() => {
    dev?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("pushes a variant (creating the model), and again with the same bytes is a no-op", async () => {
    const dir = trainerDir("small", small);
    const first = await sluice("push", dir, "--url", dev.url, "--token", dev.adminToken);
    expect(first.stderr).toContain("created model cli (task cli)");
    expect(first.code).toBe(0);
    expect(first.stdout.trim()).toMatch(
      new RegExp(`^registered cli@1 \\(staged\\) sha256 ${sha(small.model).slice(0, 12)} `),
    );
    const again = await sluice("push", dir, "--url", dev.url, "--token", dev.adminToken, "--json");
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      created: false,
      modelCreated: false,
      variant: { model: "cli", version: 1, sha256: sha(small.model), bytes: small.model.byteLength },
    });
  }, 60_000);

  it("reports upload progress for a large artifact and registers it whole", async () => {
    const res = await sluice("push", trainerDir("large", large), "--url", dev.url, "--token", dev.adminToken);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^registered cli@2 \(staged\)/);
    const lines = res.stderr.split("\n").filter((l) => l.startsWith("uploading cli "));
    // Off a terminal: one line per 10% reached, the last at 100% of the multipart body's size.
    expect(lines.length).toBeGreaterThanOrEqual(5);
    expect(lines.at(-1)).toMatch(/\(100%\)$/);
    const server = (await (await fetch(`${dev.url}/v1/models/cli/variants/2`)).json()) as {
      variant: { sha256: string; bytes: number };
    };
    expect(server.variant).toMatchObject({ sha256: sha(large.model), bytes: large.model.byteLength });
  }, 60_000);

  it("turns server errors into messages naming status, code and field", async () => {
    const wrongToken = await sluice("push", path.join(tmp, "small"), "--url", dev.url, "--token", "nope");
    expect(wrongToken.code).not.toBe(0);
    expect(wrongToken.stderr).toMatch(/server said 401 unauthorized/);
    const badFilter = await sluice("ls", "Not A Model", "--url", dev.url);
    expect(badFilter.code).not.toBe(0);
    expect(badFilter.stderr).toMatch(/server said 400 bad_request \(field model\)/);
    const unknown = await sluice("ls", "nobody", "--url", dev.url);
    expect(unknown.stderr).toMatch(/server said 404 not_found \(field model\)/);
    const nobodyHome = `http://127.0.0.1:${await freePort()}`;
    const unreachable = await sluice("ls", "cli", "--url", nobodyHome);
    expect(unreachable.stderr).toContain(`cannot reach ${nobodyHome}: ECONNREFUSED`);
  }, 60_000);

  it("lists the variants as a table and as JSON, with the status filter sent as a query", async () => {
    const table = await sluice("ls", "cli", "--url", dev.url);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^VERSION\s+STATUS\s+SPARSITY\s+PRECISION/);
    const rows = lines.slice(1).map((l) => l.trim().split(/\s+/).slice(0, 2));
    expect(rows.sort()).toEqual([
      ["1", "staged"],
      ["2", "staged"],
    ]);
    expect(table.stdout).toContain(sha(small.model).slice(0, 12));
    expect(table.stdout).toContain("0.9100");

    const patched = await fetch(`${dev.url}/v1/models/cli/variants/1`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${dev.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ status: "active" }),
    });
    expect(patched.status).toBe(200);
    const active = await sluice("ls", "cli", "--url", dev.url, "--status", "active", "--json");
    expect(active.code).toBe(0);
    const listed = JSON.parse(active.stdout) as { version: number; status: string; sha256: string }[];
    const reference = (await (await fetch(`${dev.url}/v1/models/cli/variants?status=active`)).json()) as {
      variants: unknown[];
    };
    expect(listed).toEqual(reference.variants);
    expect(listed.map((v) => [v.version, v.status, v.sha256])).toEqual([[1, "active", sha(small.model)]]);
  }, 60_000);
});
