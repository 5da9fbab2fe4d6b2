/**
 * bench:edge's JSON when a run measures only some models (`--models reference`) or skips the bundle
 * (`--no-bundle`): the models and bundle it did not measure are kept from the previous bench-results/edge.json
 * instead of being dropped. Each model entry carries the run that measured it (`run`: command, time, machine,
 * load), so a merged file says which figures came from which run.
 */
// biome-ignore lint/suspicious/noExplicitAny: the bench JSON is read back untyped.
type Json = any;

/** The run a model entry came from: its own `run`, or (older files) the file's top-level fields. */
const runOf = (file: Json, model: Json) =>
  model.run ?? {
    command: file.command,
    generatedAt: file.generatedAt,
    machine: file.machine,
    loadAverage: file.loadAverage,
  };

export function mergeEdgeResults(previous: Json | undefined, fresh: Json): Json {
  const run = {
    command: fresh.command,
    generatedAt: fresh.generatedAt,
    machine: fresh.machine,
    loadAverage: fresh.loadAverage,
  };
  const measured = fresh.models.map((m: Json) => ({ ...m, run }));
  if (!previous?.models) return { ...fresh, models: measured };
  const names = new Set(measured.map((m: Json) => m.model));
  const kept = previous.models
    .filter((m: Json) => !names.has(m.model))
    .map((m: Json) => ({ ...m, run: runOf(previous, m) }));
  // The previous file's model order, then any model it did not have.
  const order = [...previous.models.map((m: Json) => m.model), ...measured.map((m: Json) => m.model)];
  const models = [...kept, ...measured].sort((a, b) => order.indexOf(a.model) - order.indexOf(b.model));
  return { ...fresh, models, bundle: fresh.bundle ?? previous.bundle ?? null };
}
