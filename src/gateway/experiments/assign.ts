/**
 * Deterministic, sticky assignment of experiment units (users, API keys) to arms.
 *
 * Scheme: GrowthBook's hash version 2, so that a unit's bucket can be reproduced by any GrowthBook SDK.
 *   bucket(seed, unit) = (fnv1a32(String(fnv1a32(seed + unit))) mod 10000) / 10000   ∈ [0, 1)
 * The bucket falls into one of the weighted ranges built from the arm weights (normalised to sum to 1), so the
 * same (seed, unit) always lands on the same arm, in any isolate, independent of call order.
 * The double hash decorrelates seeds that share a prefix (GrowthBook's reason for v2).
 *
 * Runtime-agnostic: runs in workerd and Node. Hand-written because FNV-1a is ten lines and the GrowthBook SDK
 * would bring a feature-flag engine we do not use.
 */

const FNV32_OFFSET_BASIS = 0x811c9dc5;
const FNV32_PRIME = 0x01000193;

/**
 * FNV-1a, 32 bit. Iterates UTF-16 code units (as GrowthBook's SDKs do); for ASCII input this is exactly the
 * byte-wise FNV-1a of the spec.
 */
export function fnv1a32(text: string): number {
  let hash = FNV32_OFFSET_BASIS;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, FNV32_PRIME);
  }
  return hash >>> 0;
}

/** GrowthBook hash v2: a unit's position in [0, 1), with a resolution of 1/10000. */
export function bucketOf(seed: string, unitId: string): number {
  return (fnv1a32(String(fnv1a32(seed + unitId))) % 10000) / 10000;
}

/** Half-open interval [start, end) of the unit line owned by one arm. */
export type BucketRange = readonly [start: number, end: number];

/**
 * Contiguous ranges covering [0, 1), one per arm, sized by normalised weight. The last range ends at exactly 1
 * so that rounding in the cumulative sum never leaves a bucket unassigned.
 */
export function bucketRanges(weights: readonly number[]): BucketRange[] {
  if (weights.length < 1) throw new Error("weights: at least one arm is required");
  for (const [i, w] of weights.entries()) {
    if (!Number.isFinite(w) || w < 0)
      throw new Error(`weights[${i}]: must be a finite number >= 0, got ${w}`);
  }
  const total = weights.reduce((s, w) => s + w, 0);
  if (!(total > 0)) throw new Error("weights: at least one weight must be > 0");
  const ranges: BucketRange[] = [];
  let start = 0;
  weights.forEach((w, i) => {
    const end = i === weights.length - 1 ? 1 : start + w / total;
    ranges.push([start, end]);
    start = end;
  });
  return ranges;
}

/** Index of the range holding `bucket` (ranges are half-open; empty ranges never match). */
export function chooseArm(bucket: number, ranges: readonly BucketRange[]): number {
  for (let i = 0; i < ranges.length; i++) {
    const [start, end] = ranges[i];
    if (bucket >= start && bucket < end) return i;
  }
  throw new Error(`bucket ${bucket} lies outside the arm ranges`);
}

/** What assignment needs to know about an experiment. */
export interface AssignableExperiment {
  /** Hash seed; fixed for the life of the experiment (e.g. its id). */
  seed: string;
  /** One weight per arm, in arm order; normalised, so [1, 1] and [0.5, 0.5] are the same split. */
  arms: readonly { weight: number }[];
}

export interface ArmAssignment {
  arm: number;
  /** The unit's position in [0, 1) (for sticky assignments) or the random draw (otherwise). */
  bucket: number;
  /** false when the request carried no unit id and was assigned at random; such requests are counted apart. */
  sticky: boolean;
}

/** Sticky arm index for a unit: a pure function of (seed, unit id, weights). */
export function assignArm(experiment: AssignableExperiment, unitId: string): number {
  return chooseArm(bucketOf(experiment.seed, unitId), bucketRanges(experiment.arms.map((a) => a.weight)));
}

/** Uniform draw in [0, 1) from the platform CSPRNG (Web Crypto exists in workerd and Node >= 19). */
function randomUnit(): number {
  const word = new Uint32Array(1);
  crypto.getRandomValues(word);
  return word[0] / 2 ** 32;
}

/**
 * Assignment for a request: sticky when it has a unit id, otherwise a fresh random draw flagged `sticky: false`
 * (such a request cannot be kept on one arm, so analysis must not count it as a unit).
 */
export function assignRequest(
  experiment: AssignableExperiment,
  unitId: string | null | undefined,
  random: () => number = randomUnit,
): ArmAssignment {
  const ranges = bucketRanges(experiment.arms.map((a) => a.weight));
  if (unitId !== undefined && unitId !== null && unitId !== "") {
    const bucket = bucketOf(experiment.seed, unitId);
    return { arm: chooseArm(bucket, ranges), bucket, sticky: true };
  }
  const bucket = random();
  return { arm: chooseArm(bucket, ranges), bucket, sticky: false };
}
