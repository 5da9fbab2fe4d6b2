import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { artifactKey } from "../../src/registry/artifacts";
import pairTokenizerJson from "../fixtures/hf/bert-seqcls-o14/tokenizer.json";
import {
  admin,
  api,
  createModel,
  expectError as expectErrorCode,
  jsonInit,
  makeVariantFiles,
  rawInit,
  registerVariant,
  seedModel,
  sha256Hex,
  tinyModelBytes,
  uploadVariant,
} from "./helpers";

/** As the helpers' expectError, and the message must say something. */
async function expectError(res: Response, status: number, code: string, field?: string) {
  const body = await expectErrorCode(res, status, code, field);
  expect(body.error.message.length).toBeGreaterThan(0);
  return body;
}

describe("POST /v1/models/:model/variants", () => {
  it("registers a staged variant, stores the artifacts content-addressed in R2, and numbers versions 1, 2, 3", async () => {
    expect((await createModel("upload-ok")).status).toBe(201);
    const first = await registerVariant("upload-ok", { seed: 1, withTokenizer: true, accuracy: 0.91 });
    expect(first.res.status).toBe(201);
    expect(first.body).toMatchObject({
      created: true,
      variant: { model: "upload-ok", version: 1, status: "staged", accuracy: 0.91, sparsity: 0.4 },
    });
    const sha = first.files.manifest.artifact.sha256;
    expect(first.body.variant.sha256).toBe(sha);
    expect(first.body.variant.artifactKey).toBe(`artifacts/sha256/${sha}`);

    const stored = await env.ARTIFACTS.get(artifactKey(sha));
    expect(stored).not.toBeNull();
    const bytes = new Uint8Array(await stored!.arrayBuffer());
    expect(await sha256Hex(bytes)).toBe(sha);
    const tok = await env.ARTIFACTS.get(artifactKey(first.files.manifest.tokenizer!.sha256));
    expect(await tok!.text()).toBe(new TextDecoder().decode(first.files.tokenizer));

    const second = await registerVariant("upload-ok", { seed: 2 });
    const third = await registerVariant("upload-ok", { seed: 3 });
    expect([second.res.status, third.res.status]).toEqual([201, 201]);
    expect([second.body.variant.version, third.body.variant.version]).toEqual([2, 3]);
  });

  it("returns the existing variant (200) when the identical artifact is uploaded again", async () => {
    await createModel("reupload");
    const first = await registerVariant("reupload", { seed: 7 });
    expect(first.res.status).toBe(201);
    const again = await uploadVariant("reupload", first.files);
    expect(again.status).toBe(200);
    const body = (await again.json()) as { created: boolean; variant: { version: number; sha256: string } };
    expect(body).toMatchObject({
      created: false,
      variant: { version: 1, sha256: first.body.variant.sha256 },
    });
    const list = (await (await api("/v1/models/reupload/variants")).json()) as { variants: unknown[] };
    expect(list.variants).toHaveLength(1);

    // An identical re-upload also restores the artifact if R2 lost it.
    const key = artifactKey(first.files.manifest.artifact.sha256);
    await env.ARTIFACTS.delete(key);
    expect((await uploadVariant("reupload", first.files)).status).toBe(200);
    expect(await env.ARTIFACTS.head(key)).not.toBeNull();
  });

  it("rejects a model.onnx whose sha256 or size differs from the manifest (422 naming the field)", async () => {
    await createModel("checksum");
    // Seeds no other test uses, so R2 holds no object for these bytes unless this upload leaked one.
    const files = await makeVariantFiles("checksum", { seed: 501 });
    const other = tinyModelBytes({ seed: 502 });
    expect(other.byteLength).toBe(files.model.byteLength);
    await expectError(
      await uploadVariant("checksum", { ...files, model: other }),
      422,
      "checksum_mismatch",
      "artifact.sha256",
    );
    const longer = new Uint8Array(files.model.byteLength + 1);
    longer.set(files.model);
    await expectError(
      await uploadVariant("checksum", { ...files, model: longer }),
      422,
      "checksum_mismatch",
      "artifact.bytes",
    );
    const tokFiles = await makeVariantFiles("checksum", { seed: 503, withTokenizer: true });
    await expectError(
      await uploadVariant("checksum", { ...tokFiles, tokenizer: new TextEncoder().encode("{}") }),
      422,
      "checksum_mismatch",
      "tokenizer.sha256",
    );
    expect((await env.ARTIFACTS.list({ prefix: "artifacts/" })).objects.map((o) => o.key)).not.toContain(
      artifactKey(files.manifest.artifact.sha256),
    );
  });

  it("rejects bytes that are not an ONNX model (422 on field model)", async () => {
    await createModel("not-onnx");
    const files = await makeVariantFiles("not-onnx");
    const junk = new TextEncoder().encode("definitely not protobuf \u0000\u0001\u00ff".repeat(4));
    const manifest = {
      ...files.manifest,
      artifact: { ...files.manifest.artifact, sha256: await sha256Hex(junk), bytes: junk.byteLength },
    };
    await expectError(
      await uploadVariant("not-onnx", { manifest, model: junk }),
      422,
      "invalid_onnx",
      "model",
    );
  });

  it("rejects a model whose inputs/outputs differ from the registered io signature", async () => {
    await createModel("io-check", { labelNames: ["a", "b"] });
    // Three outputs instead of two: the file's signature differs from the registered one.
    const files = await makeVariantFiles("io-check", { labelNames: ["a", "b", "c"] });
    const registered = await makeVariantFiles("io-check", { labelNames: ["a", "b"] });
    const manifest = { ...files.manifest, labels: ["a", "b"], io: registered.manifest.io };
    await expectError(await uploadVariant("io-check", { ...files, manifest }), 422, "io_mismatch", "model");
    // A manifest that itself declares a different io than the model's.
    await expectError(await uploadVariant("io-check", files), 422, "labels_mismatch", "labels");
    const m2 = { ...files.manifest, labels: ["a", "b"] };
    await expectError(await uploadVariant("io-check", { ...files, manifest: m2 }), 422, "io_mismatch", "io");
  });

  it("validates the manifest: schema, version, name and task must match the URL's model", async () => {
    await createModel("manifest-check");
    const files = await makeVariantFiles("manifest-check");
    await expectError(
      await uploadVariant("manifest-check", { ...files, manifest: { ...files.manifest, schemaVersion: 99 } }),
      422,
      "invalid_manifest",
      "schemaVersion",
    );
    const badAcc = { ...files.manifest, metrics: { ...files.manifest.metrics, accuracy: 1.5 } };
    await expectError(
      await uploadVariant("manifest-check", { ...files, manifest: badAcc }),
      422,
      "invalid_manifest",
      "metrics.accuracy",
    );
    const otherName = { ...files.manifest, model: { name: "someone-else", task: "manifest-check" } };
    await expectError(
      await uploadVariant("manifest-check", { ...files, manifest: otherName }),
      422,
      "model_mismatch",
      "model.name",
    );
    const otherTask = { ...files.manifest, model: { name: "manifest-check", task: "other" } };
    await expectError(
      await uploadVariant("manifest-check", { ...files, manifest: otherTask }),
      422,
      "model_mismatch",
      "model.task",
    );
    const form = new FormData();
    form.append("manifest", "{not json");
    form.append("model", new File([files.model], "model.onnx"));
    await expectError(
      await api("/v1/models/manifest-check/variants", { method: "POST", headers: admin, body: form }),
      400,
      "bad_request",
      "manifest",
    );
  });

  it("answers 400 for missing parts, 415 for a non-multipart body, 404 for an unknown model, 401 without the token", async () => {
    await createModel("parts");
    const files = await makeVariantFiles("parts", { withTokenizer: true });
    const noModel = new FormData();
    noModel.append("manifest", JSON.stringify(files.manifest));
    await expectError(
      await api("/v1/models/parts/variants", { method: "POST", headers: admin, body: noModel }),
      400,
      "bad_request",
      "model",
    );
    const noManifest = new FormData();
    noManifest.append("model", new File([files.model], "model.onnx"));
    await expectError(
      await api("/v1/models/parts/variants", { method: "POST", headers: admin, body: noManifest }),
      400,
      "bad_request",
      "manifest",
    );
    await expectError(
      await uploadVariant("parts", { manifest: files.manifest, model: files.model }),
      400,
      "bad_request",
      "tokenizer",
    );
    const noTokInManifest = { ...files.manifest, tokenizer: undefined };
    await expectError(
      await uploadVariant("parts", { ...files, manifest: noTokInManifest }),
      422,
      "invalid_manifest",
      "tokenizer",
    );
    await expectError(
      await api("/v1/models/parts/variants", jsonInit("POST", files.manifest)),
      415,
      "unsupported_media_type",
      "Content-Type",
    );
    await expectError(
      await uploadVariant("nobody", await makeVariantFiles("nobody")),
      404,
      "not_found",
      "model",
    );
    const unauth = await api("/v1/models/parts/variants", { method: "POST", body: new FormData() });
    await expectError(unauth, 401, "unauthorized", "Authorization");
    expect(unauth.headers.get("WWW-Authenticate")).toMatch(/^Bearer/);
    await expectError(
      await api("/v1/models/parts/variants", { method: "POST", headers: { Authorization: "Bearer wrong" } }),
      401,
      "unauthorized",
      "Authorization",
    );
  });

  it("refuses a sentence-pair variant whose tokenizer has no pair template (422 naming tokenizer), keeping nothing", async () => {
    expect((await createModel("pairs-upload")).status).toBe(201);
    const files = await makeVariantFiles("pairs-upload", { seed: 41 });
    const input = { textPairs: true, fields: { text: "premise", textPair: "hypothesis" } };
    const { post_processor: pp, ...rest } = pairTokenizerJson as typeof pairTokenizerJson;
    // BERT's TemplateProcessing without its `pair` form: single texts only. Indented differently from any other
    // test's tokenizer, so its R2 object can only come from this upload.
    const noPair = new TextEncoder().encode(
      JSON.stringify({ ...rest, post_processor: { ...pp, pair: null } }, null, 3),
    );
    const manifest = {
      ...files.manifest,
      input,
      tokenizer: { file: "tokenizer.json", sha256: await sha256Hex(noPair) },
    };
    const body = await expectError(
      await uploadVariant("pairs-upload", { manifest, model: files.model, tokenizer: noPair }),
      422,
      "no_pair_template",
      "tokenizer",
    );
    expect(body.error.message).toMatch(
      /input\.textPairs is true, but tokenizer\.json's post_processor has no pair template/,
    );
    // Nothing written: no variant row, neither object in R2.
    const list = (await (await api("/v1/models/pairs-upload/variants")).json()) as { variants: unknown[] };
    expect(list.variants).toEqual([]);
    expect(await env.ARTIFACTS.get(artifactKey(files.manifest.artifact.sha256))).toBeNull();
    expect(await env.ARTIFACTS.get(artifactKey(manifest.tokenizer.sha256))).toBeNull();

    // No tokenizer at all: the same refusal.
    const { tokenizer: _none, ...withoutTokenizer } = manifest;
    await expectError(
      await uploadVariant("pairs-upload", { manifest: withoutTokenizer, model: files.model }),
      422,
      "no_pair_template",
      "tokenizer",
    );
    // The file's own pair template: registered.
    const withPair = new TextEncoder().encode(JSON.stringify(pairTokenizerJson));
    const ok = await uploadVariant("pairs-upload", {
      manifest: { ...manifest, tokenizer: { file: "tokenizer.json", sha256: await sha256Hex(withPair) } },
      model: files.model,
      tokenizer: withPair,
    });
    expect(ok.status).toBe(201);
  });
});

describe("reading, filtering and changing variants", () => {
  it("lists variants with status, minAccuracy and maxSparsity filters", async () => {
    await seedModel("listing", [
      { accuracy: 0.8, sparsity: 0.1 },
      { accuracy: 0.9, sparsity: 0.3 },
      { accuracy: 0.95, sparsity: 0.5 },
    ]);
    await api("/v1/models/listing/variants/2", jsonInit("PATCH", { status: "active" }));
    const versions = async (query: string) => {
      const res = await api(`/v1/models/listing/variants${query}`);
      expect(res.status).toBe(200);
      return ((await res.json()) as { variants: { version: number }[] }).variants.map((v) => v.version);
    };
    expect(await versions("")).toEqual([1, 2, 3]);
    expect(await versions("?status=active")).toEqual([2]);
    expect(await versions("?status=staged")).toEqual([1, 3]);
    expect(await versions("?minAccuracy=0.9")).toEqual([2, 3]);
    expect(await versions("?maxSparsity=0.3")).toEqual([1, 2]);
    expect(await versions("?minAccuracy=0.85&maxSparsity=0.4")).toEqual([2]);
    await expectError(await api("/v1/models/listing/variants?status=bogus"), 400, "bad_request", "status");
    await expectError(
      await api("/v1/models/listing/variants?minAccuracy=abc"),
      400,
      "bad_request",
      "minAccuracy",
    );
    await expectError(
      await api("/v1/models/listing/variants?maxSparsity=2"),
      400,
      "bad_request",
      "maxSparsity",
    );
    await expectError(await api("/v1/models/ghost/variants"), 404, "not_found", "model");
  });

  it("stores and shows precision: the variant's second coordinate beside sparsity", async () => {
    await seedModel("precise", [
      { sparsity: 0.4, precision: "fp32" },
      { sparsity: 0.4, precision: "int8" },
    ]);
    const list = (await (await api("/v1/models/precise/variants")).json()) as {
      variants: { version: number; sparsity: number; precision: string }[];
    };
    expect(list.variants.map((v) => [v.version, v.sparsity, v.precision])).toEqual([
      [1, 0.4, "fp32"],
      [2, 0.4, "int8"],
    ]);
    const one = (await (await api("/v1/models/precise/variants/2")).json()) as {
      variant: { precision: string; manifest: { precision: string } };
    };
    expect([one.variant.precision, one.variant.manifest.precision]).toEqual(["int8", "int8"]);
  });

  it("gets one variant with its manifest, 404 for an unknown version, 400 for a non-numeric one", async () => {
    const [v1] = await seedModel("getting", [{ accuracy: 0.88 }]);
    const res = await api("/v1/models/getting/variants/1");
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      variant: { manifest: { metrics: { accuracy: number } }; sha256: string };
    };
    expect(body.variant.sha256).toBe(v1.sha256);
    expect(body.variant.manifest.metrics.accuracy).toBe(0.88);
    await expectError(await api("/v1/models/getting/variants/9"), 404, "not_found", "version");
    expect((body.variant as unknown as { precision: string }).precision).toBe("fp32"); // no precision in the manifest
    await expectError(await api("/v1/models/getting/variants/one"), 400, "bad_request", "version");
  });

  it("parses versions strictly: 0x1, 01, +1 and %201 are refused (400), never read as version 1", async () => {
    await seedModel("strict", [{}]);
    expect((await api("/v1/models/strict/variants/1")).status).toBe(200);
    for (const odd of ["0x1", "01", "+1", "%201", "1e0", "0", "9999999999"]) {
      await expectError(await api(`/v1/models/strict/variants/${odd}`), 400, "bad_request", "version");
      const del = await api(`/v1/models/strict/variants/${odd}`, { method: "DELETE", headers: admin });
      await expectError(del, 400, "bad_request", "version");
    }
    // None of the refused DELETEs touched version 1.
    expect((await api("/v1/models/strict/variants/1")).status).toBe(200);
  });

  it("PATCH changes status; bad status is 422, non-JSON 400/415, no token 401", async () => {
    await seedModel("patching", [{}]);
    const res = await api("/v1/models/patching/variants/1", jsonInit("PATCH", { status: "active" }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { variant: { status: string } }).variant.status).toBe("active");
    await expectError(
      await api("/v1/models/patching/variants/1", jsonInit("PATCH", { status: "deleted" })),
      422,
      "invalid_body",
      "status",
    );
    await expectError(
      await api("/v1/models/patching/variants/1", rawInit("PATCH", "{status:", "application/json")),
      400,
      "bad_request",
      "body",
    );
    await expectError(
      await api("/v1/models/patching/variants/1", rawInit("PATCH", "status=active", "text/plain")),
      415,
      "unsupported_media_type",
      "Content-Type",
    );
    await expectError(
      await api("/v1/models/patching/variants/1", jsonInit("PATCH", { status: "retired" }, {})),
      401,
      "unauthorized",
      "Authorization",
    );
    await expectError(
      await api("/v1/models/patching/variants/5", jsonInit("PATCH", { status: "retired" })),
      404,
      "not_found",
      "version",
    );
  });
});

describe("aliases and deletion", () => {
  it("PUT/GET/DELETE aliases; an aliased or non-retired variant cannot be deleted (409)", async () => {
    await seedModel("aliasing", [{}, {}]);
    const put = await api("/v1/models/aliasing/aliases/prod", jsonInit("PUT", { version: 1 }));
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ alias: { model: "aliasing", alias: "prod", version: 1 } });
    const moved = await api("/v1/models/aliasing/aliases/prod", jsonInit("PUT", { version: 2 }));
    expect(((await moved.json()) as { alias: { version: number } }).alias.version).toBe(2);
    expect(await (await api("/v1/models/aliasing/aliases/prod")).json()).toMatchObject({
      alias: { version: 2 },
    });
    const model = (await (await api("/v1/models/aliasing")).json()) as { aliases: { alias: string }[] };
    expect(model.aliases.map((a) => a.alias)).toEqual(["prod"]);

    await expectError(
      await api("/v1/models/aliasing/aliases/prod", jsonInit("PUT", { version: 7 })),
      404,
      "not_found",
      "version",
    );
    await expectError(
      await api("/v1/models/aliasing/aliases/Bad!", jsonInit("PUT", { version: 1 })),
      400,
      "bad_request",
      "alias",
    );
    await expectError(
      await api("/v1/models/aliasing/aliases/prod", jsonInit("PUT", { version: "2" })),
      422,
      "invalid_body",
      "version",
    );

    // v2 is staged: 409 until retired; then 409 while aliased; then deletable.
    await expectError(
      await api("/v1/models/aliasing/variants/2", { method: "DELETE", headers: admin }),
      409,
      "variant_not_retired",
      "status",
    );
    await api("/v1/models/aliasing/variants/2", jsonInit("PATCH", { status: "retired" }));
    await expectError(
      await api("/v1/models/aliasing/variants/2", { method: "DELETE", headers: admin }),
      409,
      "variant_aliased",
      "alias",
    );
    await expectError(
      await api("/v1/models/aliasing/aliases/next", jsonInit("PUT", { version: 2 })),
      409,
      "variant_retired",
      "version",
    );
    const del = await api("/v1/models/aliasing/aliases/prod", { method: "DELETE", headers: admin });
    expect(del.status).toBe(200);
    await expectError(
      await api("/v1/models/aliasing/aliases/prod", { method: "DELETE", headers: admin }),
      404,
      "not_found",
      "alias",
    );
    await expectError(await api("/v1/models/aliasing/aliases/prod"), 404, "not_found", "alias");
    const gone = await api("/v1/models/aliasing/variants/2", { method: "DELETE", headers: admin });
    expect(gone.status).toBe(200);
    await expectError(await api("/v1/models/aliasing/variants/2"), 404, "not_found", "version");
  });

  it("deleting a retired variant removes its R2 object only when no other variant references it", async () => {
    await createModel("share-a");
    await createModel("share-b");
    // The same bytes registered for two models share one content-addressed object.
    // vocab 24: a tokenizer.json no other test uploads, so only these two variants reference it.
    const files = await makeVariantFiles("share-a", { seed: 42, vocab: 24, withTokenizer: true });
    const a = await uploadVariant("share-a", files);
    const bManifest = { ...files.manifest, model: { name: "share-b", task: "share-b" } };
    const b = await uploadVariant("share-b", { ...files, manifest: bManifest });
    expect([a.status, b.status]).toEqual([201, 201]);
    const key = artifactKey(files.manifest.artifact.sha256);
    const tokKey = artifactKey(files.manifest.tokenizer!.sha256);

    await api("/v1/models/share-a/variants/1", jsonInit("PATCH", { status: "retired" }));
    const delA = await api("/v1/models/share-a/variants/1", { method: "DELETE", headers: admin });
    expect(await delA.json()).toMatchObject({ deletedArtifacts: [] });
    expect(await env.ARTIFACTS.head(key)).not.toBeNull();

    await api("/v1/models/share-b/variants/1", jsonInit("PATCH", { status: "retired" }));
    const delB = await api("/v1/models/share-b/variants/1", { method: "DELETE", headers: admin });
    expect(await delB.json()).toMatchObject({ deletedArtifacts: [key, tokKey] });
    expect(await env.ARTIFACTS.head(key)).toBeNull();
    expect(await env.ARTIFACTS.head(tokKey)).toBeNull();
  });

  it("never reuses a deleted variant's version number", async () => {
    await seedModel("no-reuse", [{}, {}]);
    await api("/v1/models/no-reuse/variants/2", jsonInit("PATCH", { status: "retired" }));
    expect((await api("/v1/models/no-reuse/variants/2", { method: "DELETE", headers: admin })).status).toBe(
      200,
    );
    const next = await registerVariant("no-reuse", { seed: 9 });
    expect(next.body.variant.version).toBe(3);
  });
});
