/**
 * Request variables shared by the serving middleware and the inference handlers (Hono `c.set` / `c.get`):
 * the experiment hook pins an arm's version here, and the routed infer/classify handler serves that version
 * as if the request had named it. One module, so neither side imports the other.
 */
export const PINNED_VERSION = "pinnedVersion";

export type ServingVariables = {
  /** The version a running experiment's arm pinned for this routed request (absent: route by SLA). */
  [PINNED_VERSION]?: string;
};
