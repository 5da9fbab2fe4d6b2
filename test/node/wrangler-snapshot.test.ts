/**
 * `startWranglerDev({ snapshot: true })` serves the Worker as bundled at start: editing the tree's source while it
 * runs must not reload the Worker (a reload answers every POST in flight with a 503 "restarted mid-request").
 * The tree is a temporary copy of this one, so the edit touches nothing of the checkout.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../shared/wrangler-dev";

const root = path.resolve(import.meta.dirname, "../..");
let tree: string;
let dev: WranglerDev | undefined;

describe("wrangler dev on a snapshot bundle", () => {
  beforeAll(async () => {
    tree = mkdtempSync(path.join(tmpdir(), "sluice-snapshot-tree-"));
    for (const p of ["wrangler.toml", "migrations", "src", "package.json", "tsconfig.base.json"])
      cpSync(path.join(root, p), path.join(tree, p), { recursive: true });
    symlinkSync(path.join(root, "node_modules"), path.join(tree, "node_modules"));
    dev = await startWranglerDev({ tree, snapshot: true, mintKey: false });
  }, 240_000);

  afterAll(() => {
    dev?.stop();
    rmSync(tree, { recursive: true, force: true });
  });

  it("keeps serving the bundle it started with when the tree's source changes", async () => {
    const file = path.join(tree, "src/gateway/errors.ts");
    writeFileSync(file, `${readFileSync(file, "utf8")}\n// edited while wrangler dev runs\n`);
    // Long enough for wrangler's watcher to rebuild and reload, had it watched the source.
    await new Promise((r) => setTimeout(r, 5_000));
    const res = await fetch(`${dev!.url}/v2/models/nope/infer`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev!.adminToken}` },
      body: JSON.stringify({ inputs: [] }),
    });
    await res.arrayBuffer();
    expect(res.status).not.toBe(503);
    expect(dev!.log()).toContain("Attaching additional modules"); // wrangler dev --no-bundle on the bundle
    expect(dev!.log()).not.toContain("Reloading local server");
  }, 60_000);
});
