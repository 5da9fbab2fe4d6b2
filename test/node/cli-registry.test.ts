import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError } from "../../src/trainer-node/cli";
import { formatVariantTable, parseLsArgs } from "../../src/trainer-node/commands/ls";
import { parsePushArgs, readTrainerOutput, variantUploadForm } from "../../src/trainer-node/commands/push";
import {
  describeApiError,
  encodeMultipart,
  progressFetch,
  progressPrinter,
} from "../../src/trainer-node/registry-client";
import { exampleManifest } from "./fixtures";

const tmp = mkdtempSync(path.join(tmpdir(), "sluice-push-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** A trainer output directory; `edit` may break the manifest after the real checksums are filled in. */
function outputDir(name: string, edit: (m: ReturnType<typeof exampleManifest>) => void = () => {}) {
  const dir = path.join(tmp, name);
  const model = new Uint8Array([8, 8, 18, 6, 115, 108, 117, 105, 99, 101]);
  const tokenizer = '{"model":{"type":"WordLevel"}}';
  const m = exampleManifest();
  m.artifact = { file: "model.onnx", sha256: sha(model), bytes: model.byteLength };
  m.tokenizer = { file: "tokenizer.json", sha256: sha(tokenizer) };
  edit(m);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "model.onnx"), model);
  writeFileSync(path.join(dir, "tokenizer.json"), tokenizer);
  writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(m));
  return dir;
}

describe("sluice push: arguments and local validation", () => {
  it("parses dir, --url and --token, with environment fallbacks", () => {
    expect(parsePushArgs(["out/spam", "--url", "http://localhost:8787/", "--token", "t"], {})).toEqual({
      dir: "out/spam",
      url: "http://localhost:8787",
      token: "t",
      json: false,
    });
    expect(parsePushArgs(["d"], { SLUICE_URL: "https://gw.example", SLUICE_ADMIN_TOKEN: "x" })).toMatchObject(
      {
        url: "https://gw.example",
        token: "x",
      },
    );
  });

  it("refuses missing or bad arguments with a usage error", () => {
    expect(() => parsePushArgs([], {})).toThrow(UsageError);
    expect(() => parsePushArgs(["d", "--token", "t"], {})).toThrow(/--url is required/);
    expect(() => parsePushArgs(["d", "--url", "http://x"], {})).toThrow(/--token is required/);
    expect(() => parsePushArgs(["d", "--url", "localhost:8787", "--token", "t"], {})).toThrow(/http/);
    expect(() => parsePushArgs(["d", "--url", "http://x", "--token", "t", "--bogus"], {})).toThrow(
      UsageError,
    );
    expect(() => parsePushArgs(["a", "b", "--url", "http://x", "--token", "t"], {})).toThrow(/one directory/);
  });

  it("reads a valid trainer output directory", async () => {
    const out = await readTrainerOutput(outputDir("ok"));
    expect(out.manifest.model.name).toBe("spam");
    expect(out.model.byteLength).toBe(10);
    expect(new TextDecoder().decode(out.tokenizer)).toContain("WordLevel");
  });

  it("names the problem before anything is uploaded", async () => {
    await expect(readTrainerOutput(path.join(tmp, "missing"))).rejects.toThrow(/manifest.*ENOENT/);
    await expect(
      readTrainerOutput(outputDir("schema", (m) => Object.assign(m, { schemaVersion: 2 }))),
    ).rejects.toThrow(/field schemaVersion/);
    await expect(
      readTrainerOutput(outputDir("acc", (m) => Object.assign(m.metrics, { accuracy: 2 }))),
    ).rejects.toThrow(/field metrics.accuracy/);
    await expect(
      readTrainerOutput(outputDir("sha", (m) => Object.assign(m.artifact, { sha256: "f".repeat(64) }))),
    ).rejects.toThrow(/artifact.sha256/);
    await expect(
      readTrainerOutput(outputDir("bytes", (m) => Object.assign(m.artifact, { bytes: 11 }))),
    ).rejects.toThrow(/artifact.bytes/);
    await expect(
      readTrainerOutput(
        outputDir("tok", (m) =>
          Object.assign(m, { tokenizer: { file: "tokenizer.json", sha256: "0".repeat(64) } }),
        ),
      ),
    ).rejects.toThrow(/tokenizer.sha256/);
  });

  it("encodes the multipart form the registry reads back part by part", async () => {
    const out = await readTrainerOutput(outputDir("form"));
    const { body, contentType } = await encodeMultipart(variantUploadForm(out));
    expect(contentType).toMatch(/^multipart\/form-data; boundary=/);
    const form = await new Response(body, { headers: { "content-type": contentType } }).formData();
    expect(JSON.parse(await (form.get("manifest") as File).text())).toEqual(out.manifest);
    expect(new Uint8Array(await (form.get("model") as File).arrayBuffer())).toEqual(out.model);
    expect((form.get("tokenizer") as File).name).toBe("tokenizer.json");
  });
});

describe("upload progress and server errors", () => {
  it("streams the body with its Content-Length and reports bytes sent up to the total", async () => {
    let received = 0;
    let declared: string | undefined;
    const server = http.createServer((req, res) => {
      declared = req.headers["content-length"];
      req.on("data", (c: Buffer) => {
        received += c.byteLength;
      });
      req.on("end", () => {
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ received }));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    const body = new Uint8Array(3 * 1024 * 1024 + 17);
    const seen: number[] = [];
    const send = progressFetch((sent, total) => {
      expect(total).toBe(body.byteLength);
      seen.push(sent);
    });
    const res = await send(`http://127.0.0.1:${port}/up`, { method: "POST", body });
    server.close();
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ received: body.byteLength });
    expect(declared).toBe(String(body.byteLength));
    expect(seen.length).toBeGreaterThan(3);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen.at(-1)).toBe(body.byteLength);
  });

  it("prints progress lines per 10% off a terminal, and only the last line for small uploads", () => {
    const lines: string[] = [];
    const p = progressPrinter((s) => lines.push(s), { tty: false, label: "up" });
    const total = 10 * 1024 * 1024;
    for (let sent = 0; sent <= total; sent += 512 * 1024) p(sent, total);
    expect(lines).toHaveLength(11);
    expect(lines.at(-1)).toBe("up 10.0 MB / 10.0 MB (100%)\n");
    const small: string[] = [];
    const q = progressPrinter((s) => small.push(s), { tty: false });
    q(100, 200);
    q(200, 200);
    expect(small).toEqual(["uploading 200 B / 200 B (100%)\n"]);
  });

  it("turns the registry's error JSON into a message naming code and field", () => {
    const body = JSON.stringify({
      error: { code: "checksum_mismatch", message: "bad sha", field: "artifact.sha256" },
    });
    const err = describeApiError(422, body);
    expect(err.message).toBe("server said 422 checksum_mismatch (field artifact.sha256): bad sha");
    expect(err.field).toBe("artifact.sha256");
    expect(describeApiError(502, "<html>Bad gateway</html>").message).toBe(
      "server said 502: <html>Bad gateway</html>",
    );
  });
});

describe("sluice ls", () => {
  it("parses arguments", () => {
    expect(parseLsArgs(["spam", "--url", "http://h:1"], {})).toEqual({
      model: "spam",
      url: "http://h:1",
      json: false,
    });
    expect(() => parseLsArgs(["spam"], {})).toThrow(/--url/);
    expect(() => parseLsArgs(["spam", "--url", "http://h", "--status", "gone"], {})).toThrow(/--status/);
    expect(() => parseLsArgs([], { SLUICE_URL: "http://h" })).toThrow(UsageError);
  });

  it("formats variants as an aligned table", () => {
    const table = formatVariantTable([
      {
        version: 1,
        status: "active",
        sparsity: 0,
        params: 11_200_000,
        accuracy: 0.9712,
        latencyP50Ms: 12.5,
        sha256: "ab".repeat(32),
        createdAt: "2026-11-29T03:00:00.123Z",
      },
      {
        version: 12,
        status: "staged",
        sparsity: 0.4,
        precision: "int8",
        params: 6_720_000,
        accuracy: 0.96,
        latencyP50Ms: 7.25,
        edgeLatencyP50Ms: 4.5,
        sha256: "cd".repeat(32),
        createdAt: "2026-11-29T04:00:00.000Z",
      },
    ]);
    expect(table.split("\n")).toEqual([
      // The first row is from a gateway that predates precision: shown as fp32 ...
      // ... and the edge latency: "-".
      "VERSION  STATUS  SPARSITY  PRECISION      PARAMS  ACCURACY  NODE P50 MS  EDGE P50 MS  SHA256        CREATED",
      "      1  active      0.0%  fp32       11,200,000    0.9712        12.50            -  abababababab  2026-11-29 03:00:00Z",
      "     12  staged     40.0%  int8        6,720,000    0.9600         7.25         4.50  cdcdcdcdcdcd  2026-11-29 04:00:00Z",
    ]);
    expect(formatVariantTable([])).toBe("no variants");
  });
});
