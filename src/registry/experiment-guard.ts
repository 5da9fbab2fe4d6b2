/**
 * A variant in a running experiment must keep serving its arm: the registry refuses to retire or delete it
 * (409) until the experiment is stopped or promoted. Called by the registry's PATCH and DELETE variant routes.
 */
import { and, eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { ApiError } from "./errors";
import { experimentArms, experiments } from "./experiments-schema";

/** Running experiments that have the variant as one of their arms. */
export async function runningExperimentsWithVariant(
  d1: D1Database,
  variantId: number,
): Promise<{ id: number; name: string }[]> {
  return drizzle(d1)
    .selectDistinct({ id: experiments.id, name: experiments.name })
    .from(experimentArms)
    .innerJoin(experiments, eq(experiments.id, experimentArms.experimentId))
    .where(and(eq(experimentArms.variantId, variantId), eq(experiments.status, "running")))
    .all();
}

/** Throws 409 `variant_in_experiment` when the variant is an arm of a running experiment. */
export async function assertVariantNotInRunningExperiment(
  d1: D1Database,
  variantId: number,
  label: string,
  action: "retired" | "deleted",
): Promise<void> {
  const running = await runningExperimentsWithVariant(d1, variantId);
  if (running.length > 0) {
    const names = running.map((e) => `#${e.id} '${e.name}'`).join(", ");
    throw new ApiError(
      409,
      "variant_in_experiment",
      `${label} cannot be ${action}: it is an arm of running experiment ${names}; stop or promote it first`,
      "version",
    );
  }
}
