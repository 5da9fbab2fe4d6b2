/**
 * Generated sections of docs pages: a bench script rewrites the text between `<!-- name:start -->` and
 * `<!-- name:end -->` (appending the block when the markers are missing), so figures in docs always come from
 * the committed bench JSON and never from hand-copied numbers.
 */
import { readFileSync, writeFileSync } from "node:fs";

export function replaceBlock(doc: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) return doc.slice(0, i) + block + doc.slice(j + end.length);
  return `${doc.trimEnd()}\n\n${block}\n`;
}

/** Rewrites block `name` of the Markdown file at `file` in place. */
export function writeDocsBlock(file: string, name: string, body: string): void {
  writeFileSync(file, replaceBlock(readFileSync(file, "utf8"), name, body));
}
