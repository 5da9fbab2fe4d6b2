/** JSON shapes the registry answers with (rows -> API objects; internal ids never leave the Worker). */
import type { ApiKeyRow, ModelRow, TaskSlaRow, VariantRow } from "./schema";
import type { AliasWithVersion } from "./store";

export function modelView(m: ModelRow) {
  return {
    name: m.name,
    task: m.task,
    labels: m.labels,
    io: m.io,
    latestVersion: m.lastVersion,
    createdAt: m.createdAt,
  };
}

export function variantView(model: ModelRow, v: VariantRow, opts: { manifest?: boolean } = {}) {
  return {
    model: model.name,
    version: v.version,
    status: v.status,
    sparsity: v.sparsity,
    precision: v.precision,
    params: v.params,
    accuracy: v.accuracy,
    latencyP50Ms: v.latencyP50Ms,
    edgeLatencyP50Ms: v.edgeLatencyP50Ms,
    sha256: v.sha256,
    bytes: v.bytes,
    artifactKey: v.artifactKey,
    tokenizerSha256: v.tokenizerSha256,
    tokenizerKey: v.tokenizerKey,
    createdAt: v.createdAt,
    ...(opts.manifest ? { manifest: v.manifest } : {}),
  };
}
export type VariantView = ReturnType<typeof variantView>;

export function aliasView(model: ModelRow, a: AliasWithVersion) {
  return { model: model.name, alias: a.alias, version: a.version, updatedAt: a.updatedAt };
}

export function slaView(s: TaskSlaRow) {
  return {
    task: s.task,
    metric: s.metric,
    min: s.min,
    ...(s.margin !== null ? { margin: s.margin, confidence: s.confidence } : {}),
    ...(s.maxLatencyMs !== null ? { maxLatencyMs: s.maxLatencyMs } : {}),
    strict: s.strict,
    updatedAt: s.updatedAt,
  };
}

export function apiKeyView(k: ApiKeyRow) {
  return {
    id: k.id,
    prefix: k.prefix,
    scopes: k.scopes,
    models: k.models,
    createdAt: k.createdAt,
    revokedAt: k.revokedAt,
  };
}
