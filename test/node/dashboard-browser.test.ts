/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core) against the real
 * gateway under `wrangler dev`: seeds a model, variants, an SLA and a running experiment with traffic and
 * feedback through the HTTP API, signs in with `?token=` (cookie flow), checks what the page shows, and writes
 * a screenshot to bench-results/dashboard.png (SLUICE_UPDATE_DOCS=1: docs/dashboard.png, the README's copy).
 *
 * Skips, saying why, only when /usr/bin/chromium is missing and CI is not set; under CI it must run.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GatewayClient } from "../shared/gateway-client";
import { tinyModelGraph } from "../shared/variant-files";
import { startWranglerDev, type WranglerDev } from "../shared/wrangler-dev";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const root = path.resolve(import.meta.dirname, "../..");
// Test runs leave the tracked docs/ copy alone unless asked to refresh it.
const SCREENSHOT = path.join(
  root,
  process.env.SLUICE_UPDATE_DOCS ? "docs/dashboard.png" : "bench-results/dashboard.png",
);

const WORDS = [
  "great",
  "terrible",
  "service",
  "food",
  "never",
  "again",
  "loved",
  "the",
  "price",
  "slow",
  "friendly",
];

const haveChromium = existsSync(CHROMIUM);
const inCi = Boolean(process.env.CI);
if (!haveChromium && !inCi) {
  console.warn(
    `dashboard browser test skipped: ${CHROMIUM} not found (install with: apt-get install -y chromium)`,
  );
}

describe.skipIf(!haveChromium && !inCi)("dashboard in headless Chromium", () => {
  let dev: WranglerDev;
  let browser: Browser;
  let experimentId: number;
  const LABELS = ["neg", "pos"];

  beforeAll(async () => {
    dev = await startWranglerDev();
    const gw = new GatewayClient(dev.url, dev.adminToken, dev.apiKey);
    // the committed 4096-piece WordPiece tokenizer, over tiny bag-of-embeddings classifiers
    const tokenizer = readFileSync(path.join(root, "models/tokenizer.json"), "utf8");
    const graph = (seed: number) => tinyModelGraph({ seed, labels: 2, vocab: 4096, hidden: 4 });
    await gw.createModel("reviews", "reviews", LABELS, graph(1));
    await gw.json("PUT", "/v1/tasks/reviews/sla", { metric: "accuracy", min: 0.85 });
    const v1 = await gw.registerGraph("reviews", "reviews", LABELS, graph(1), {
      accuracy: 0.93,
      p50Ms: 8,
      sparsity: 0,
      tokenizer,
    });
    await gw.registerGraph("reviews", "reviews", LABELS, graph(2), {
      accuracy: 0.9,
      p50Ms: 5,
      sparsity: 0.3,
      tokenizer,
    });
    const v3 = await gw.registerGraph("reviews", "reviews", LABELS, graph(3), {
      accuracy: 0.82,
      p50Ms: 3,
      sparsity: 0.5,
      tokenizer,
      status: "staged",
    });
    const { experiment } = await gw.json<{ experiment: { id: number } }>("POST", "/v1/experiments", {
      model: "reviews",
      // markup in user-supplied text must be shown, not interpreted
      name: "dense vs 50% sparse <i>&</i>",
      arms: [
        { version: v1, weight: 1 },
        { version: v3, weight: 1 },
      ],
      primaryMetric: "accuracy",
      design: { kind: "sequential" },
    });
    experimentId = experiment.id;
    await gw.json("POST", `/v1/experiments/${experimentId}/start`);

    // traffic from 40 users, each labelled: arm A right on 9 of 10 requests, arm B on 7 of 10
    const served: { requestId: string; arm: string; label: string }[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`${dev.url}/v1/models/reviews/classify`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-sluice-user": `user-${i}`, ...gw.keyHeaders() },
        body: JSON.stringify({
          text: `${WORDS[i % WORDS.length]} and ${WORDS[(i * 7) % WORDS.length]} again`,
        }),
      });
      if (res.status !== 200) throw new Error(`classify: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { results: { label: string }[] };
      served.push({
        requestId: res.headers.get("x-sluice-request-id")!,
        arm: res.headers.get("x-sluice-arm")!,
        label: body.results[0].label,
      });
    }
    const perArm: Record<string, number> = {};
    for (const s of served) {
      perArm[s.arm] = (perArm[s.arm] ?? 0) + 1;
      const right = perArm[s.arm] % 10 < (s.arm === "A" ? 9 : 7);
      const label = right ? s.label : LABELS.find((l) => l !== s.label)!;
      await gw.json("POST", "/v1/feedback", { requestId: s.requestId, label }, { admin: false });
    }
    // exposures travel through the queue: wait until all 40 have landed and joined their feedback
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await gw.json<{ results: { arms: { requests: number }[] }; pendingFeedback: number }>(
        "GET",
        `/v1/experiments/${experimentId}/results`,
      );
      if (r.results.arms.reduce((n, a) => n + a.requests, 0) === 40 && r.pendingFeedback === 0) break;
      if (Date.now() > deadline) throw new Error("exposures did not arrive through the queue in 60 s");
      await new Promise((res) => setTimeout(res, 300));
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    dev?.stop();
  });

  it("refuses without the admin token", async () => {
    const res = await fetch(`${dev.url}/dashboard`);
    expect(res.status).toBe(401);
    expect(await res.text()).toContain("admin token");
    expect((await fetch(`${dev.url}/dashboard?token=wrong`, { redirect: "manual" })).status).toBe(401);
    const bearer = await fetch(`${dev.url}/dashboard`, {
      headers: { authorization: `Bearer ${dev.adminToken}` },
    });
    expect(bearer.status).toBe(200);
  });

  it("shows models, routing and the experiment's results with charts", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    // ?token= signs in: the redirect sets the cookie and drops the token from the URL
    const response = await page.goto(`${dev.url}/dashboard?token=${dev.adminToken}`);
    expect(response?.status()).toBe(200);
    expect(new URL(page.url()).search).toBe("");
    expect(await page.title()).toBe("Sluice dashboard");

    const model = page.locator('section.model[data-model="reviews"]');
    await expect.poll(() => model.count()).toBe(1);
    // three variants; SLA routing picks v2 (fastest of those with accuracy >= 85%)
    expect(await model.locator("tr.variant").count()).toBe(3);
    expect(await model.locator("tr.variant.chosen").getAttribute("data-version")).toBe("2");
    expect(await model.locator(".routing").textContent()).toContain("Routing now: v2");
    expect(await model.locator("svg.chart circle").count()).toBe(3);

    const experiment = page.locator(`section.experiment[data-experiment="${experimentId}"]`);
    expect(await experiment.locator("h3").textContent()).toContain("dense vs 50% sparse <i>&</i>");
    expect(await experiment.locator("h3 i").count()).toBe(0);
    expect(await experiment.locator(".status").first().textContent()).toBe("running");
    const arms = experiment.locator("table.arms tbody tr");
    expect(await arms.count()).toBe(2);
    expect(await arms.nth(0).getAttribute("data-arm")).toBe("A (v1)");
    expect(await arms.nth(1).getAttribute("data-arm")).toBe("B (v3)");
    // latency bars (p50 and p95 per arm) and accuracy bars with Wilson whiskers
    const charts = experiment.locator("svg.chart");
    expect(await charts.count()).toBe(2);
    expect(await charts.nth(0).locator("rect.bar").count()).toBe(4);
    expect(await charts.nth(1).locator("rect.bar").count()).toBe(2);
    expect(await charts.nth(1).locator("path.whisker").count()).toBe(2);
    expect(await experiment.locator(".recommendation").textContent()).toMatch(/Recommendation: .+/);
    const srm = await experiment.locator(".srm").textContent();
    expect(srm).toMatch(/sample ratio \d+ \/ \d+/);

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    await page.close();
  }, 60_000);
});
