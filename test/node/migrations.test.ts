/**
 * `migrations/` must be exactly what drizzle-kit generates from `src/registry/*schema.ts`: generating into a
 * copy of the folder must produce nothing new. Fix a failure with `npm run db:generate -- --name <change>`.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const drizzleKit = path.join(root, "node_modules/.bin/drizzle-kit");
const work = mkdtempSync(path.join(tmpdir(), "sluice-migrations-"));
const copy = path.join(work, "migrations");
cpSync(path.join(root, "migrations"), copy, { recursive: true });
afterAll(() => rmSync(work, { recursive: true, force: true }));

// drizzle-kit prefixes "./" to --out, so it must be relative to the working directory.
const out = path.relative(root, copy);
const kit = (...args: string[]) =>
  execFileSync(drizzleKit, [...args, "--dialect", "sqlite", "--out", out], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });

const listing = (dir: string) => readdirSync(dir, { recursive: true }).map(String).sort();

describe("migrations/", () => {
  it("holds no drift from the Drizzle schema (drizzle-kit generate adds nothing)", () => {
    const before = listing(copy);
    // Every schema file drizzle.config.ts lists (registry + experiments) matches this glob.
    const output = kit("generate", "--schema", "./src/registry/*schema.ts");
    expect(output).toMatch(/No schema changes/);
    expect(listing(copy)).toEqual(before);
  });

  it("is consistent according to drizzle-kit check", () => {
    expect(kit("check")).toMatch(/Everything's fine/);
  });

  it("lists every SQL file in the journal, and nothing else", () => {
    const journal = JSON.parse(readFileSync(path.join(root, "migrations/meta/_journal.json"), "utf8")) as {
      entries: { tag: string }[];
    };
    const sql = readdirSync(path.join(root, "migrations")).filter((f) => f.endsWith(".sql"));
    expect(sql.sort()).toEqual(journal.entries.map((e) => `${e.tag}.sql`).sort());
  });
});
