import { describe, expect, it } from "vitest";
import { encodeBitset } from "../../src/core/evidence";
import { Rng } from "../../src/core/random";
import { pairedDifferenceInterval } from "../../src/gateway/paired";
import { type RoutableVariant, type Sla, selectVariant } from "../../src/gateway/routing";

const v = (
  version: number,
  accuracy: number,
  latencyP50Ms: number,
  params: number,
  status: RoutableVariant["status"] = "active",
): RoutableVariant => ({ version, accuracy, latencyP50Ms, params, status, sparsity: 0 });

const sla = (min: number, extra: Partial<Sla> = {}): Sla => ({
  metric: "accuracy",
  min,
  maxLatencyMs: null,
  strict: false,
  ...extra,
});

// dense (v1), 20% (v2), 40% (v3), 50% (v4, too lossy), staged 60% (v5, fastest but not active)
const family = [
  v(1, 0.95, 10, 1000),
  v(2, 0.94, 8, 800),
  v(3, 0.93, 6, 600),
  v(4, 0.85, 5, 500),
  v(5, 0.99, 1, 100, "staged"),
];

describe("selectVariant", () => {
  const cases: {
    name: string;
    variants: RoutableVariant[];
    sla: Sla | null;
    requested?: number;
    cooling?: number[];
    chosen: number | null;
    order: number[];
    outcome: string;
  }[] = [
    {
      name: "no SLA: fastest active variant",
      variants: family,
      sla: null,
      chosen: 4,
      order: [4, 3, 2, 1],
      outcome: "met",
    },
    {
      name: "SLA 0.9 drops the lossy variant, serves the fastest remaining",
      variants: family,
      sla: sla(0.9),
      chosen: 3,
      order: [3, 2, 1, 4],
      outcome: "met",
    },
    {
      name: "SLA is inclusive (accuracy == min qualifies)",
      variants: family,
      sla: sla(0.94),
      chosen: 2,
      order: [2, 1, 3, 4],
      outcome: "met",
    },
    {
      name: "a request may raise the bar",
      variants: family,
      sla: sla(0.9),
      requested: 0.945,
      chosen: 1,
      order: [1, 2, 3, 4],
      outcome: "met",
    },
    {
      name: "a request may not lower the bar",
      variants: family,
      sla: sla(0.94),
      requested: 0.5,
      chosen: 2,
      order: [2, 1, 3, 4],
      outcome: "met",
    },
    {
      name: "equal latency: fewer parameters wins",
      variants: [v(1, 0.9, 5, 900), v(2, 0.9, 5, 700), v(3, 0.9, 6, 100)],
      sla: sla(0.8),
      chosen: 2,
      order: [2, 1, 3],
      outcome: "met",
    },
    {
      name: "nothing meets the SLA: most accurate active, unmet",
      variants: family,
      sla: sla(0.97),
      chosen: 1,
      order: [1, 2, 3, 4],
      outcome: "unmet",
    },
    {
      name: "nothing meets a strict SLA: refused",
      variants: family,
      sla: sla(0.97, { strict: true }),
      chosen: null,
      order: [],
      outcome: "refused",
    },
    {
      name: "strict SLA met: fallbacks are only qualifying variants",
      variants: family,
      sla: sla(0.94, { strict: true }),
      chosen: 2,
      order: [2, 1],
      outcome: "met",
    },
    {
      name: "SLA maximum latency drops slow variants",
      variants: family,
      sla: sla(0.9, { maxLatencyMs: 7 }),
      chosen: 3,
      order: [3, 1, 2, 4],
      outcome: "met",
    },
    {
      name: "a cooling variant is tried after the healthy ones",
      variants: family,
      sla: sla(0.9),
      cooling: [3],
      chosen: 2,
      order: [2, 1, 3, 4],
      outcome: "met",
    },
    {
      name: "everything cooling: still served, in policy order",
      variants: family.slice(0, 2),
      sla: sla(0.9),
      cooling: [1, 2],
      chosen: 2,
      order: [2, 1],
      outcome: "met",
    },
    {
      name: "no active variant: unavailable",
      variants: [v(1, 0.99, 1, 1, "staged"), v(2, 0.99, 1, 1, "retired")],
      sla: sla(0.5),
      chosen: null,
      order: [],
      outcome: "unavailable",
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const d = selectVariant(c.variants, {
        sla: c.sla,
        requestedMinAccuracy: c.requested,
        coolingDown: new Set(c.cooling ?? []),
      });
      expect(d.chosen).toBe(c.chosen);
      expect(d.order).toEqual(c.order);
      expect(d.outcome).toBe(c.outcome);
    });
  }

  it("explains every candidate", () => {
    const d = selectVariant(family, { sla: sla(0.9), requestedMinAccuracy: 0.935 });
    const byVersion = Object.fromEntries(d.candidates.map((c) => [c.version, c]));
    expect(d.sla).toEqual({
      minAccuracy: 0.935,
      taskMin: 0.9,
      requestedMin: 0.935,
      margin: null,
      confidence: 0.95,
      maxLatencyMs: null,
      strict: false,
    });
    expect(byVersion[2].verdict).toBe("chosen");
    expect(byVersion[1].verdict).toBe("eligible");
    expect(byVersion[3].verdict).toBe("below_sla");
    expect(byVersion[3].why).toMatch(/93\.00% < required 93\.50%/);
    expect(byVersion[5].verdict).toBe("inactive");
    expect(d.meetsSla).toEqual({ 2: true, 1: true, 3: false, 4: false });
    expect(d.reason).toMatch(/v2 has the lowest onnxruntime-node p50 latency/);
  });

  it("treats (sparsity, precision) as coordinates: an int8 twin competes on its own measurements", () => {
    const fp32 = { ...v(3, 0.93, 6, 600), sparsity: 0.4, precision: "fp32" as const };
    const int8 = { ...v(6, 0.93, 4.5, 600), sparsity: 0.4, precision: "int8" as const };
    const legacy = v(1, 0.95, 10, 1000); // registered before precision existed
    const d = selectVariant([legacy, fp32, int8], { sla: sla(0.9) });
    expect(d.chosen).toBe(6);
    const byVersion = Object.fromEntries(d.candidates.map((c) => [c.version, c]));
    expect([byVersion[6].sparsity, byVersion[6].precision]).toEqual([0.4, "int8"]);
    expect([byVersion[3].sparsity, byVersion[3].precision]).toEqual([0.4, "fp32"]);
    expect(byVersion[1].precision).toBe("fp32");
  });
});

describe("which runtime's latency ranks the variants", () => {
  // The reference encoder's shape of the problem: onnxruntime-node ranks the int8 twin slowest, the edge
  // runtime (onnxruntime-web wasm) ranks it fastest.
  const withEdge = (x: RoutableVariant, edge: number | null): RoutableVariant => ({
    ...x,
    edgeLatencyP50Ms: edge,
  });
  const dense = withEdge(v(1, 0.95, 30, 1000), 40);
  const fp32 = withEdge(v(2, 0.94, 20, 600), 24);
  const int8 = withEdge({ ...v(3, 0.94, 48.5, 600), precision: "int8" }, 15);

  it("edge figures reverse the onnxruntime-node ranking: the edge decides, and says so", () => {
    const d = selectVariant([dense, fp32, int8], { sla: sla(0.9) });
    expect(d.chosen).toBe(3);
    expect(d.order).toEqual([3, 2, 1]);
    expect(d.latency).toMatchObject({ runtime: "edge", field: "edgeLatencyP50Ms" });
    expect(d.latency.why).toMatch(/onnxruntime-web wasm/);
    expect(d.reason).toMatch(/v3 has the lowest onnxruntime-web wasm p50 latency/);
    const byVersion = Object.fromEntries(d.candidates.map((c) => [c.version, c]));
    expect([byVersion[3].latencyP50Ms, byVersion[3].edgeLatencyP50Ms]).toEqual([48.5, 15]);
    // Without any edge figure the same family ranks by onnxruntime-node (the order before edge figures existed).
    const node = selectVariant(
      [dense, fp32, int8].map((x) => withEdge(x, null)),
      { sla: sla(0.9) },
    );
    expect(node.order).toEqual([2, 1, 3]);
  });

  it("one variant without an edge figure: onnxruntime-node figures decide for all, and the explanation names it", () => {
    const d = selectVariant([dense, fp32, withEdge(int8, null)], { sla: sla(0.9) });
    expect(d.chosen).toBe(2);
    expect(d.order).toEqual([2, 1, 3]);
    expect(d.latency).toMatchObject({ runtime: "node", field: "latencyP50Ms", lacking: [3] });
    expect(d.latency.why).toMatch(/v3 has no onnxruntime-web wasm figure/);
    expect(d.reason).toMatch(
      /lowest onnxruntime-node p50 latency .*\(v3 has no onnxruntime-web wasm figure\)/,
    );
  });

  it("a non-active variant without an edge figure does not take the edge figures away", () => {
    const staged = withEdge(v(4, 0.99, 1, 100, "staged"), null);
    expect(selectVariant([dense, fp32, int8, staged], { sla: sla(0.9) }).latency.runtime).toBe("edge");
  });

  it("an SLA maximum latency is judged on the same figure", () => {
    // 25 ms: the int8 twin (48.5 ms native, 15 ms wasm) and fp32 (20 / 24) pass on the edge; dense (30 / 40) does not.
    const d = selectVariant([dense, fp32, int8], { sla: sla(0.9, { maxLatencyMs: 25 }) });
    const byVersion = Object.fromEntries(d.candidates.map((c) => [c.version, c]));
    expect([byVersion[1].verdict, byVersion[2].verdict, byVersion[3].verdict]).toEqual([
      "over_latency",
      "eligible",
      "chosen",
    ]);
    expect(byVersion[1].why).toMatch(/onnxruntime-web wasm p50 40 ms > SLA maximum 25 ms/);
    // On onnxruntime-node figures (one variant lacks an edge one) the int8 twin is the one over 25 ms.
    const node = selectVariant([dense, fp32, withEdge(int8, null)], { sla: sla(0.9, { maxLatencyMs: 25 }) });
    expect(node.candidates.find((c) => c.version === 3)!.verdict).toBe("over_latency");
    expect(node.candidates.find((c) => c.version === 3)!.why).toMatch(/onnxruntime-node p50 48.5 ms/);
    expect(node.chosen).toBe(2);
  });
});

/** A variant with per-example evidence on one shared split: `correct[i]` from `right(i)`. */
function withEvidence(
  base: RoutableVariant,
  size: number,
  right: (i: number) => boolean,
  sha = "a".repeat(64),
) {
  const correct = Array.from({ length: size }, (_, i) => right(i));
  return {
    ...base,
    accuracy: correct.filter(Boolean).length / size,
    evidence: { evalSet: "t/test", evalSha256: sha, size, correct },
  };
}

describe("margin SLA: non-inferiority proven on paired evidence", () => {
  const n = 600;
  const dense = withEvidence(v(1, 0, 10, 1000), n, (i) => i % 10 !== 0); // 90%
  // Same mistakes as dense plus 3 more: 89.5%, 3 discordant examples, all against it.
  const close = withEvidence(v(2, 0, 6, 600), n, (i) => i % 10 !== 0 && i !== 1 && i !== 2 && i !== 3);
  // 89.5% too, but its mistakes are unrelated to dense's: many discordant examples, a wide paired interval.
  const noisy = withEvidence(v(3, 0, 5, 500), n, (i) => i % 10 !== 5 && i !== 7 && i !== 8 && i !== 9);

  it("the cheapest variant whose paired lower bound is above -margin wins; an equal point estimate with more disagreement does not", () => {
    const d = selectVariant([dense, close, noisy], { sla: sla(0, { margin: 0.02 }) });
    const by = Object.fromEntries(d.candidates.map((c) => [c.version, c]));
    expect(close.accuracy).toBe(noisy.accuracy);
    expect(by[3].verdict).toBe("below_margin");
    expect(by[3].margin!.discordant).toEqual({ variantOnly: 60, bestOnly: 63 });
    expect(d.chosen).toBe(2);
    expect(by[2].margin!.paired).toBe(true);
    expect(by[2].margin!.discordant).toEqual({ variantOnly: 0, bestOnly: 3 });
    expect(by[2].margin!.interval[0]).toBeGreaterThan(-0.02);
    expect(by[2].why).toContain("Bonferroni over 2");
    expect(d.reason).toContain("proven within 2.00 pts");
  });

  it("without a margin the point estimates decide, as before", () => {
    const d = selectVariant([dense, close, noisy], { sla: sla(0.89) });
    expect(d.chosen).toBe(3);
  });

  it("variants on different eval splits are compared unpaired, and the explanation says so", () => {
    const other = { ...close, evidence: { ...close.evidence, evalSha256: "b".repeat(64) } };
    const d = selectVariant([dense, other], { sla: sla(0, { margin: 0.02 }) });
    const c = d.candidates.find((x) => x.version === 2)!;
    expect(c.margin!.paired).toBe(false);
    expect(c.why).toContain("unpaired");
    // The unpaired interval ignores the agreement, so it is much wider than the paired one.
    expect(c.margin!.interval[0]).toBeLessThan(-0.02);
    expect(c.verdict).toBe("below_margin");
  });

  it("a variant without evidence is never proven within a margin", () => {
    const bare = { ...close, evidence: undefined };
    const d = selectVariant([dense, bare], { sla: sla(0, { margin: 0.05 }) });
    expect(d.candidates.find((x) => x.version === 2)!.verdict).toBe("below_margin");
    expect(d.chosen).toBe(1);
  });
});

describe("pairedDifferenceInterval (Newcombe 1998, method 10)", () => {
  it("covers the true difference at least at the nominal rate (simulated correlated pairs)", () => {
    // Truth: the first is right with p 0.9, the second copies it except on 4% of examples, where it flips.
    const rng = new Rng(11);
    const n = 300;
    let covered = 0;
    const trials = 2000;
    const truth = 0.9 - (0.9 * 0.96 + 0.1 * 0.04);
    for (let t = 0; t < trials; t++) {
      const c = { both: 0, firstOnly: 0, secondOnly: 0, neither: 0 };
      for (let i = 0; i < n; i++) {
        const a = rng.next() < 0.9;
        const b = rng.next() < 0.04 ? !a : a;
        if (a && b) c.both++;
        else if (a) c.firstOnly++;
        else if (b) c.secondOnly++;
        else c.neither++;
      }
      const [lo, hi] = pairedDifferenceInterval(c, 0.05);
      if (lo <= truth && truth <= hi) covered++;
    }
    expect(covered / trials).toBeGreaterThan(0.93);
  });

  it("is zero-width only at the extremes and never leaves [-1, 1]", () => {
    const [lo, hi] = pairedDifferenceInterval({ both: 50, firstOnly: 0, secondOnly: 0, neither: 50 }, 0.05);
    expect(lo).toBeLessThan(0);
    expect(hi).toBeGreaterThan(0);
    const [l2, h2] = pairedDifferenceInterval({ both: 0, firstOnly: 10, secondOnly: 0, neither: 0 }, 0.05);
    expect(l2).toBeGreaterThan(0.5);
    expect(h2).toBeLessThanOrEqual(1);
  });

  it("round-trips evidence through the manifest's bitset", () => {
    expect(encodeBitset([true, false, true, true, false, false, false, false, true])).toBe("DQE=");
  });
});
