/**
 * The registry's explicit invalidation signal: every route that writes the registry (models, variants, aliases,
 * SLAs, experiments) publishes a change after its write succeeded, and every per-isolate cache of registry data
 * (the gateway's catalog, the running-experiment cache, live feedback, verified API keys) subscribes. No cache
 * guesses writes from request paths.
 *
 * The signal reaches this isolate at once. Other isolates learn of a write through the generation counter that
 * every write bumps in its own D1 transaction (src/registry/generation.ts): each isolate polls it and publishes
 * a change on its own signal when it moved.
 */
import type { MiddlewareHandler } from "hono";

/** What changed: one model, or (no model) anything, e.g. a task's SLA, which every model of the task reads. */
export interface RegistryChange {
  model?: string;
}

export type RegistryChangeListener = (change: RegistryChange) => void;

/**
 * One isolate's set of subscribed caches. The Worker has one (`registrySignal`); a test that simulates two
 * isolates in one gives each app its own.
 */
export class RegistrySignal {
  private readonly listeners = new Set<RegistryChangeListener>();

  /** Subscribes a cache; returns the unsubscribe function. */
  on(listener: RegistryChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(change: RegistryChange = {}): void {
    for (const listener of this.listeners) listener(change);
  }
}

/** This isolate's signal. */
export const registrySignal = new RegistrySignal();

export type RegistrySignalVariables = { registrySignal?: RegistrySignal };

/** Subscribes a cache to this isolate's signal; returns the unsubscribe function. */
export function onRegistryChange(listener: RegistryChangeListener): () => void {
  return registrySignal.on(listener);
}

export function publishRegistryChange(change: RegistryChange = {}): void {
  registrySignal.publish(change);
}

/**
 * Route middleware for a registry write: after the handler answered with a 2xx, publishes a change (the whole
 * registry: writes are rare, and a variant or experiment write can change what any cached model serves) on the
 * request's signal (`c.var.registrySignal`, set by the app), else this isolate's.
 */
export const publishesRegistryChange: MiddlewareHandler<{ Variables: RegistrySignalVariables }> = async (
  c,
  next,
) => {
  await next();
  if (c.res.status >= 200 && c.res.status < 300) (c.get("registrySignal") ?? registrySignal).publish();
};
