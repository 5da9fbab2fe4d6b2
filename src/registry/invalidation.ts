/**
 * The registry's explicit invalidation signal: every route that writes the registry (models, variants, aliases,
 * SLAs, experiments) publishes a change after its write succeeded, and every per-isolate cache of registry data
 * (the gateway's catalog, the running-experiment cache) subscribes. No cache guesses writes from request paths.
 *
 * The signal reaches this isolate at once; other isolates see a write when their cached value's TTL runs out
 * (catalog 5 s, running experiments 5 s; see docs/worker-architecture.md).
 */
import type { MiddlewareHandler } from "hono";

/** What changed: one model, or (no model) anything, e.g. a task's SLA, which every model of the task reads. */
export interface RegistryChange {
  model?: string;
}

export type RegistryChangeListener = (change: RegistryChange) => void;

const listeners = new Set<RegistryChangeListener>();

/** Subscribes a cache; returns the unsubscribe function. */
export function onRegistryChange(listener: RegistryChangeListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function publishRegistryChange(change: RegistryChange = {}): void {
  for (const listener of listeners) listener(change);
}

/**
 * Route middleware for a registry write: after the handler answered with a 2xx, publishes a change (the whole
 * registry: writes are rare, and a variant or experiment write can change what any cached model serves).
 */
export const publishesRegistryChange: MiddlewareHandler = async (c, next) => {
  await next();
  if (c.res.status >= 200 && c.res.status < 300) publishRegistryChange();
};
