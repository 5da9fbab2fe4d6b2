// The layer order of src/ (docs/worker-architecture.md): core < (http | registry | trainer-node) < gateway < worker,
// and no import cycles. The import graph is read with the TypeScript compiler's own parser (every static import,
// `export … from`, `import type` and dynamic `import()`), so nothing hides behind a regular expression.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const SRC = path.resolve(import.meta.dirname, "../../src");

/** What each top-level part of src/ may import (besides itself). `types` holds ambient declarations only. */
const ALLOWED: Record<string, readonly string[]> = {
  core: ["types"],
  http: ["core", "types"],
  registry: ["core", "http", "types"],
  "trainer-node": ["core", "http", "registry", "types"],
  gateway: ["core", "http", "registry", "types"],
  worker: ["core", "http", "registry", "gateway", "types"],
  types: [],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return /\.ts$/.test(name) ? [full] : [];
  });
}

interface Import {
  specifier: string;
  /** `import type` / `export type` as a whole: erased at build time, so it cannot make a runtime cycle. */
  typeOnly: boolean;
}

/** The modules a file imports (static, re-export, type-only and dynamic). */
function importsOf(file: string): Import[] {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const out: Import[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ specifier: node.moduleSpecifier.text, typeOnly: node.importClause?.isTypeOnly ?? false });
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      out.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      out.push({ specifier: node.arguments[0].text, typeOnly: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** A relative specifier resolved to a file under src/; packages (and wasm assets) are not part of the graph. */
function resolveLocal(from: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  const base = path.resolve(path.dirname(from), specifier);
  for (const candidate of [base, `${base}.ts`, path.join(base, "index.ts")]) {
    if (existsSync(candidate) && statSync(candidate).isFile() && candidate.endsWith(".ts")) return candidate;
  }
  if (/\.(wasm|json|mjs)$/.test(specifier)) return null;
  throw new Error(`${path.relative(SRC, from)}: cannot resolve '${specifier}'`);
}

const partOf = (file: string) => path.relative(SRC, file).split(path.sep)[0];

/** Module -> modules it imports; `runtimeOnly` leaves out whole-statement type-only imports. */
function importGraph(runtimeOnly: boolean): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const targets = importsOf(file)
      .filter((i) => !(runtimeOnly && i.typeOnly))
      .map((i) => resolveLocal(file, i.specifier))
      .filter((t): t is string => t !== null);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Strongly connected components with more than one module, or a module importing itself (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const connect = (v: string) => {
    indices.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) ?? 0, indices.get(w) ?? 0));
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w === undefined) break;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component);
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) connect(v);
  return found;
}

describe("the import graph of src/", () => {
  const graph = importGraph(false);
  const rel = (f: string) => path.relative(SRC, f);

  it("is read from every module (sanity: the graph is not empty)", () => {
    expect(graph.size).toBeGreaterThan(50);
    expect([...graph.values()].flat().length).toBeGreaterThan(100);
  });

  it("has every module in a known part of src/", () => {
    const unknown = [...graph.keys()].map(partOf).filter((p) => !(p in ALLOWED));
    expect([...new Set(unknown)]).toEqual([]);
  });

  it("imports nothing from a layer above (core < http | registry | trainer-node < gateway < worker)", () => {
    const violations: string[] = [];
    for (const [from, targets] of graph) {
      const part = partOf(from);
      for (const to of targets) {
        const target = partOf(to);
        if (target !== part && !ALLOWED[part].includes(target)) violations.push(`${rel(from)} -> ${rel(to)}`);
      }
    }
    expect(violations).toEqual([]);
  });

  // Type-only imports are erased before anything runs, so they are left out here; they still count above.
  it("has no import cycles (runtime imports)", () => {
    expect(cycles(importGraph(true)).map((c) => c.map(rel).sort())).toEqual([]);
  });

  // The CLI's registry client is typed from the registry app (`import type { RegistryApp }`, for hono/client);
  // importing the routes at run time would load the Worker's route code (and drizzle, zod schemas) into the CLI.
  it("lets trainer-node import the registry's routes as a type only", () => {
    const routes = path.join(SRC, "registry/routes.ts");
    const runtime = importGraph(true);
    const typed = [...graph].filter(([f, t]) => partOf(f) === "trainer-node" && t.includes(routes));
    expect(typed.length).toBeGreaterThan(0); // sanity: the client does import the type
    const loaded = [...runtime].filter(([f, t]) => partOf(f) === "trainer-node" && t.includes(routes));
    expect(loaded.map(([f]) => rel(f))).toEqual([]);
  });
});
