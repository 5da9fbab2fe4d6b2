// Feedback tokens (src/gateway/feedback-token.ts): what binds a label to the variant that served a routed request.
// The MAC is checked against an HMAC computed here with node:crypto (HKDF + HMAC-SHA256), an implementation
// apart from the Web Crypto one under test.
import { createHmac, hkdfSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  isFeedbackToken,
  MAX_FEEDBACK_TOKEN_LENGTH,
  mintFeedbackToken,
  parseFeedbackToken,
  unitDigest,
  verifyFeedbackToken,
} from "../../src/gateway/feedback-token";

const SECRET = "admin-secret";
const binding = { modelId: 7, variantId: 42 };
const claim = {
  model: "spam.v2",
  version: 3,
  predicted: 1,
  servedAt: 1_796_000_000,
  unit: "u0123456789abcdef",
};

describe("feedback tokens", () => {
  it("round-trip: the claim parses back and verifies for the ids it was minted for", async () => {
    const token = await mintFeedbackToken(SECRET, claim, binding);
    expect(isFeedbackToken(token)).toBe(true);
    const parsed = parseFeedbackToken(token)!;
    expect(parsed).toMatchObject(claim);
    expect(await verifyFeedbackToken(SECRET, parsed, binding)).toBe(true);
  });

  it("carries an HMAC-SHA256 (HKDF-derived key, 128 bits kept) that node:crypto reproduces", async () => {
    const token = await mintFeedbackToken(SECRET, claim, binding);
    const parts = token.split(".");
    const body = parts.slice(0, 6).join(".");
    const key = Buffer.from(hkdfSync("sha256", SECRET, Buffer.alloc(0), "sluice feedback token v1", 32));
    const mac = createHmac("sha256", key)
      .update(`${body}\nspam.v2\n7\n42`)
      .digest()
      .subarray(0, 16)
      .toString("base64url");
    expect(parts[6]).toBe(mac);
  });

  it("refuses any altered field, another model or variant id, another secret", async () => {
    const token = await mintFeedbackToken(SECRET, claim, binding);
    const parsed = parseFeedbackToken(token)!;
    for (const altered of [
      { ...parsed, version: 2 },
      { ...parsed, predicted: 0 },
      { ...parsed, servedAt: parsed.servedAt + 1 },
      { ...parsed, unit: null },
      { ...parsed, model: "spam" },
      { ...parsed, nonce: `${parsed.nonce.slice(0, -1)}${parsed.nonce.endsWith("A") ? "B" : "A"}` },
    ]) {
      expect(await verifyFeedbackToken(SECRET, altered, binding)).toBe(false);
    }
    expect(await verifyFeedbackToken(SECRET, parsed, { modelId: 8, variantId: 42 })).toBe(false);
    expect(await verifyFeedbackToken(SECRET, parsed, { modelId: 7, variantId: 43 })).toBe(false);
    expect(await verifyFeedbackToken("another-secret", parsed, binding)).toBe(false);
  });

  it("parses only its own shape; every token fits the body's limit", async () => {
    const token = await mintFeedbackToken(SECRET, { ...claim, unit: null }, binding);
    expect(parseFeedbackToken(token)!.unit).toBeNull();
    for (const bad of [
      "e1-0123456789abcdef0123456789abcdef",
      "r1.",
      `${token}!`,
      token.replace(".1.", ".01."),
    ]) {
      expect(parseFeedbackToken(bad)).toBeNull();
    }
    const longest = await mintFeedbackToken(
      SECRET,
      {
        model: "m".repeat(64),
        version: 9_999_999_999,
        predicted: 99_999,
        servedAt: 99_999_999_999,
        unit: claim.unit,
      },
      binding,
    );
    expect(longest.length).toBe(MAX_FEEDBACK_TOKEN_LENGTH);
    expect(parseFeedbackToken(longest)).not.toBeNull();
  });

  it("hashes units (never the raw id) and treats blank as none", async () => {
    expect(await unitDigest("alice")).toMatch(/^u[0-9a-f]{16}$/);
    expect(await unitDigest("alice")).toBe(await unitDigest(" alice "));
    expect(await unitDigest("alice")).not.toBe(await unitDigest("bob"));
    expect(await unitDigest("  ")).toBeNull();
    expect(await unitDigest(undefined)).toBeNull();
  });
});
