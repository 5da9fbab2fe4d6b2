/** Request bodies and parameters of the experiment API (zod; failures name the field). */
import { z } from "zod";
import { PositiveIdParam } from "../../http/params";
import { EXPERIMENT_STATUSES } from "../../registry/experiments-schema";
import { AliasName, ModelName } from "../../registry/validation";
import { MAX_FEEDBACK_TOKEN_LENGTH } from "../feedback-token";

export const ExperimentId = PositiveIdParam;

const Arm = z
  .object({
    version: z.number().int().positive(),
    weight: z.number().finite().positive(),
  })
  .strict();

/** Headers that carry credentials or are shared by everyone must not be units (their values would be stored). */
const FORBIDDEN_UNIT_HEADERS = new Set(["authorization", "cookie", "x-api-key", "host", "content-type"]);

export const Unit = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "must be a request header name (e.g. x-sluice-user) or 'api-key'")
  .refine((u) => !FORBIDDEN_UNIT_HEADERS.has(u), "this header cannot be a unit; use 'api-key' for API keys");

export const Design = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("fixed"), plannedUnits: z.number().int().positive() }).strict(),
  z.object({ kind: z.literal("sequential"), plannedUnits: z.number().int().positive().optional() }).strict(),
]);

export const Guardrails = z
  .object({
    maxErrorRate: z.number().gt(0).lt(1).optional(),
    maxP95Ms: z.number().finite().positive().optional(),
  })
  .strict();

const Arms = z
  .array(Arm)
  .min(2, "an experiment needs at least two arms")
  .max(8)
  .superRefine((arms, ctx) => {
    arms.forEach((a, i) => {
      if (arms.findIndex((b) => b.version === a.version) !== i) {
        ctx.addIssue({
          code: "custom",
          message: `version ${a.version} is already arm ${i}`,
          path: [i, "version"],
        });
      }
    });
  });

export const CreateExperimentBody = z
  .object({
    model: ModelName,
    name: z.string().trim().min(1).max(100),
    arms: Arms,
    unit: Unit.default("x-sluice-user"),
    primaryMetric: z.enum(["accuracy", "latency"]),
    guardrails: Guardrails.default({}),
    alpha: z.number().gt(0).lt(0.5).default(0.05),
    design: Design,
    /** index of the control arm (default 0, the first) */
    controlArm: z.number().int().min(0).default(0),
    /** absolute accuracy margin for non-inferiority against control (0: against the task SLA only) */
    nonInferiorityMargin: z.number().min(0).lt(1).default(0),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.controlArm >= b.arms.length) {
      ctx.addIssue({
        code: "custom",
        message: `must be an arm index below ${b.arms.length}`,
        path: ["controlArm"],
      });
    }
  });
export type CreateExperimentBody = z.infer<typeof CreateExperimentBody>;

/** Only drafts can change; a started experiment's arms and weights are frozen (a change is a new experiment). */
export const PatchExperimentBody = z
  .object({ name: z.string().trim().min(1).max(100).optional(), arms: Arms.optional() })
  .strict();

export const PromoteBody = z
  .object({
    /** override the analysis: promote this arm (index or letter) */
    arm: z.union([z.number().int().min(0), z.string().regex(/^[A-Z]$/)]).optional(),
    /** alias to point at the winner (default `production`) */
    alias: AliasName.default("production"),
  })
  .strict();

export const ListExperimentsQuery = z
  .object({ model: ModelName.optional(), status: z.enum(EXPERIMENT_STATUSES).optional() })
  .strict();

export const FeedbackBody = z
  .object({
    requestId: z
      .string()
      .min(1)
      .max(MAX_FEEDBACK_TOKEN_LENGTH)
      .describe(
        "the response's x-sluice-request-id: an experiment's request id (e<experiment>-<hex>), or the signed feedback token of a request served outside an experiment (r1.…)",
      ),
    label: z.string().min(1).max(256),
  })
  .strict();
