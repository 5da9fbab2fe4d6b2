import { describe, expect, it } from "vitest";
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
      maxLatencyMs: null,
      strict: false,
    });
    expect(byVersion[2].verdict).toBe("chosen");
    expect(byVersion[1].verdict).toBe("eligible");
    expect(byVersion[3].verdict).toBe("below_sla");
    expect(byVersion[3].why).toMatch(/93\.00% < required 93\.50%/);
    expect(byVersion[5].verdict).toBe("inactive");
    expect(d.meetsSla).toEqual({ 2: true, 1: true, 3: false, 4: false });
    expect(d.reason).toMatch(/v2 has the lowest p50 latency/);
  });
});
