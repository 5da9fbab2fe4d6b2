import { describe, expect, it } from "vitest";
import {
  assignArm,
  assignRequest,
  bucketOf,
  bucketRanges,
  chooseArm,
  fnv1a32,
} from "../../src/gateway/experiments/assign.ts";
import { normalQuantile } from "../../src/gateway/experiments/stats.ts";

describe("fnv1a32", () => {
  // Test vectors from the FNV reference test suite (Landon Curt Noll, test_fnv.c, FNV-1a 32-bit).
  it.each([
    ["", 0x811c9dc5],
    ["a", 0xe40c292c],
    ["b", 0xe70c2de5],
    ["foo", 0xa9f37ed7],
    ["foobar", 0xbf9cf968],
  ])("fnv1a32(%j) = %s", (input, expected) => {
    expect(fnv1a32(input)).toBe(expected);
  });
});

describe("bucketOf (GrowthBook hash v2)", () => {
  // GrowthBook SDK specification, packages/sdk-js/test/cases.json: "hash" cases with hashVersion 2, and the
  // buckets reported by its "creates experiments properly" and "stickyBucket" cases.
  it.each([
    ["seed", "a", 0.0505],
    ["seed", "b", 0.2696],
    ["foo", "ab", 0.2575],
    ["foo", "def", 0.2019],
    ["89123klj", "8952klfjas09ujkasdf", 0.124],
    ["90850943850283058242805", "123", 0.7516],
    ["()**(%$##$%#$#", '___)((*":&', 0.0128],
    ["feature", "123", 0.5231],
    ["feature-exp", "d123", 0.6468],
    ["feature-exp", "i123", 0.9943],
  ])("bucketOf(%j, %j) = %s", (seed, unit, expected) => {
    expect(bucketOf(seed, unit)).toBe(expected);
  });
});

describe("bucketRanges / chooseArm", () => {
  it("normalises weights into contiguous ranges that end at 1", () => {
    // GrowthBook cases.json getBucketRange "uneven weights, 3 variations": [0.2, 0.3, 0.5]
    const ranges = bucketRanges([0.2, 0.3, 0.5]);
    expect(ranges[0][0]).toBe(0);
    expect(ranges[0][1]).toBeCloseTo(0.2, 12);
    expect(ranges[1][1]).toBeCloseTo(0.5, 12);
    expect(ranges[2]).toEqual([ranges[1][1], 1]);
    // Unnormalised weights give the same split.
    const scaled = bucketRanges([2, 3, 5]);
    scaled.forEach((r, i) => {
      expect(r[0]).toBeCloseTo(ranges[i][0], 12);
      expect(r[1]).toBeCloseTo(ranges[i][1], 12);
    });
  });

  it("ranges are half-open; a zero-weight arm never receives a unit", () => {
    // GrowthBook cases.json chooseVariation: 0.5 on [[0,0.5],[0.5,1]] -> 1; "zero range" -> 2
    expect(
      chooseArm(0.5, [
        [0, 0.5],
        [0.5, 1],
      ]),
    ).toBe(1);
    expect(
      chooseArm(0.5, [
        [0, 0.5],
        [0.5, 0.5],
        [0.5, 1],
      ]),
    ).toBe(2);
    expect(chooseArm(0, bucketRanges([0, 1]))).toBe(1);
  });

  it("rejects unusable weights with a message naming the field", () => {
    expect(() => bucketRanges([])).toThrow(/weights/);
    expect(() => bucketRanges([0, 0])).toThrow(/weights/);
    expect(() => bucketRanges([1, -1])).toThrow(/weights\[1\]/);
    expect(() => bucketRanges([1, Number.NaN])).toThrow(/weights\[1\]/);
  });
});

describe("assignArm", () => {
  const experiment = { seed: "exp-42", arms: [{ weight: 0.3 }, { weight: 0.7 }] };

  it("is sticky: the same unit gets the same arm whatever the call order", () => {
    const units = Array.from({ length: 500 }, (_, i) => `user-${i}`);
    const forward = units.map((u) => assignArm(experiment, u));
    const backward = [...units]
      .reverse()
      .map((u) => assignArm(experiment, u))
      .reverse();
    const interleaved = units.map((u, i) => (i % 2 === 0 ? assignArm(experiment, u) : -1));
    expect(backward).toEqual(forward);
    interleaved.forEach((arm, i) => {
      if (arm !== -1) expect(arm).toBe(forward[i]);
    });
    // a fresh copy of the experiment (e.g. loaded in another isolate) agrees too
    const copy = JSON.parse(JSON.stringify(experiment));
    expect(units.map((u) => assignArm(copy, u))).toEqual(forward);
  });

  it("a different seed reshuffles units (experiments are independent)", () => {
    const other = { ...experiment, seed: "exp-43" };
    const units = Array.from({ length: 2000 }, (_, i) => `user-${i}`);
    const same = units.filter((u) => assignArm(experiment, u) === assignArm(other, u)).length;
    // independent 30/70 splits agree with probability 0.3² + 0.7² = 0.58
    expect(same / units.length).toBeGreaterThan(0.53);
    expect(same / units.length).toBeLessThan(0.63);
  });

  it("weight accuracy: 10,000 units split within the binomial 99.9% interval", () => {
    for (const weights of [
      [0.5, 0.5],
      [0.3, 0.7],
      [0.1, 0.2, 0.7],
    ]) {
      const exp = { seed: `weights-${weights.join("-")}`, arms: weights.map((weight) => ({ weight })) };
      const n = 10_000;
      const counts = new Array(weights.length).fill(0);
      for (let i = 0; i < n; i++) counts[assignArm(exp, `unit-${i}`)]++;
      const z = normalQuantile(1 - 0.001 / 2);
      weights.forEach((w, arm) => {
        const halfWidth = z * Math.sqrt(n * w * (1 - w));
        expect(Math.abs(counts[arm] - n * w)).toBeLessThan(halfWidth);
      });
    }
  });
});

describe("assignRequest", () => {
  const experiment = { seed: "exp-7", arms: [{ weight: 1 }, { weight: 1 }] };

  it("is sticky with a unit id and agrees with assignArm", () => {
    const a = assignRequest(experiment, "alice");
    expect(a.sticky).toBe(true);
    expect(a.arm).toBe(assignArm(experiment, "alice"));
    expect(a.bucket).toBe(bucketOf("exp-7", "alice"));
  });

  it("without a unit id draws at random and says so", () => {
    const draws = [0.1, 0.9];
    const first = assignRequest(experiment, undefined, () => draws[0]);
    const second = assignRequest(experiment, "", () => draws[1]);
    expect(first).toEqual({ arm: 0, bucket: 0.1, sticky: false });
    expect(second).toEqual({ arm: 1, bucket: 0.9, sticky: false });
    // the default source is the platform CSPRNG: both arms show up over many requests
    const arms = new Set(Array.from({ length: 200 }, () => assignRequest(experiment, null).arm));
    expect(arms).toEqual(new Set([0, 1]));
  });
});
