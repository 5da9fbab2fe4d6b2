/**
 * Inlines ONNX model-local functions (`ModelProto.functions`, IR ≥ 8) into the main graph, the way onnx's
 * `onnx.inliner.inline_local_functions` does: every node whose (domain, op_type) names a local function is
 * replaced by that function's body, with
 *
 * - formal inputs/outputs bound to the call's actual values (a missing optional input binds to ""),
 * - every value the body computes renamed to a name unique in the model (`<call node>/<value>`), and body node
 *   names scoped by the call node's name, so torch's `/encoder/layer.0/...`-style names stay readable,
 * - attribute references (`ref_attr_name`) resolved against the call's attributes, then the function's
 *   declared defaults (`FunctionProto.attribute_proto`, IR 9), else dropped as the spec says,
 * - nested calls expanded recursively (a function calling itself, directly or not, is refused),
 * - opset imports checked: a function's body is read at the model's default-domain opset once inlined, so a
 *   function importing an older opset is inlined only when no op of its body changed meaning between the two
 *   (`MEANING_CHANGED_AT`, from the ONNX operator changelog; onnxscript's torch_lib is written against opset 18
 *   and torch ≥ 2.5 exports its functions into models at opset 20 and later), and refused otherwise, as is one
 *   importing a newer opset than the model's; other domains it imports are added to the model's.
 *
 * The torch dynamo exporter (torch.onnx.dynamo_export, torch ≥ 2.1) writes one function per module call in a
 * `pkg.transformers...`/`pkg.torch...` domain and onnxscript's torch_lib functions in
 * `pkg.onnxscript.torch_lib`, nested; everything downstream (Graph, recognition, autodiff) reads plain nodes.
 *
 * Hand-written: onnx's inliner is C++/Python only. onnx-proto (the protobufjs code the codec uses) predates
 * IR 9, so `attribute_proto` and `overload` are read from the raw bytes here (`readFunctionExtras`).
 */
import type { onnx } from "onnx-proto";
import * as onnxProto from "onnx-proto";
import protobuf from "protobufjs/minimal";
import { meaningChangedBetween, NEWEST_CHECKED_OPSET } from "./opset";

const onnxValues: typeof onnx =
  (onnxProto as unknown as { default?: { onnx: typeof onnx } }).default?.onnx ??
  (onnxProto as unknown as { onnx: typeof onnx }).onnx;

export class InlineError extends Error {
  override name = "InlineError";
}

/** What protobufjs's onnx-proto drops from a FunctionProto (IR 9/10 fields). */
export interface FunctionExtras {
  /** Declared attribute defaults (`attribute_proto`, field 11). */
  defaults: onnx.IAttributeProto[];
  /** `overload` (field 13, IR 10); "" when absent. */
  overload: string;
}

export interface InlineReport {
  /** Local functions the model declared. */
  functions: number;
  /** Call nodes expanded, nested ones included. */
  calls: number;
}

const MODEL_FUNCTIONS_FIELD = 25;
const FUNCTION_ATTRIBUTE_PROTO_FIELD = 11;
const FUNCTION_OVERLOAD_FIELD = 13;
const LENGTH_DELIMITED = 2;

/** The IR ≥ 9 fields of each `ModelProto.functions` entry, in file order, read from the model's bytes. */
export function readFunctionExtras(bytes: Uint8Array): FunctionExtras[] {
  const out: FunctionExtras[] = [];
  const model = protobuf.Reader.create(bytes);
  while (model.pos < model.len) {
    const tag = model.uint32();
    if (tag >>> 3 !== MODEL_FUNCTIONS_FIELD || (tag & 7) !== LENGTH_DELIMITED) {
      model.skipType(tag & 7);
      continue;
    }
    const fn = protobuf.Reader.create(model.bytes());
    const extras: FunctionExtras = { defaults: [], overload: "" };
    while (fn.pos < fn.len) {
      const t = fn.uint32();
      const field = t >>> 3;
      if (field === FUNCTION_ATTRIBUTE_PROTO_FIELD && (t & 7) === LENGTH_DELIMITED)
        extras.defaults.push(onnxValues.AttributeProto.decode(fn.bytes()));
      else if (field === FUNCTION_OVERLOAD_FIELD && (t & 7) === LENGTH_DELIMITED)
        extras.overload = fn.string();
      else fn.skipType(t & 7);
    }
    out.push(extras);
  }
  return out;
}

const isDefaultDomain = (d: string | null | undefined) => !d || d === "ai.onnx";

/** Why the body of a function at default-domain opset `from` would mean something else at `to`, or null. */
function opsetMismatch(proto: onnx.IFunctionProto, from: number, to: number): string | null {
  if (from > to) return `it uses opset ${from} of the default domain, newer than the model's ${to}`;
  if (to > NEWEST_CHECKED_OPSET)
    return `it uses opset ${from} of the default domain and the model ${to}, past the opsets checked here (≤ ${NEWEST_CHECKED_OPSET})`;
  for (const n of proto.node ?? []) {
    if (!isDefaultDomain(n.domain)) continue;
    const at = meaningChangedBetween(n.opType ?? "", from, to);
    if (at !== undefined)
      return `it uses opset ${from} of the default domain, the model ${to}, and ${n.opType} changed meaning at opset ${at}`;
  }
  return null;
}
const keyOf = (domain: string | null | undefined, name: string | null | undefined) =>
  `${isDefaultDomain(domain) ? "" : domain}::${name ?? ""}`;

interface LocalFunction {
  proto: onnx.IFunctionProto;
  defaults: Map<string, onnx.IAttributeProto>;
}

function versionOf(imports: onnx.IOperatorSetIdProto[] | null | undefined, domain: string) {
  const o = (imports ?? []).find((i) =>
    isDefaultDomain(domain) ? isDefaultDomain(i.domain) : i.domain === domain,
  );
  if (!o) return undefined;
  const v = o.version as number | { toNumber(): number } | null | undefined;
  return typeof v === "number" ? v : v ? v.toNumber() : 0;
}

/** Names every value and node of the model already uses, so inlined names can be made unique. */
function takenNames(graph: onnx.IGraphProto): Set<string> {
  const s = new Set<string>();
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])])
    s.add(v.name ?? "");
  for (const t of graph.initializer ?? []) s.add(t.name ?? "");
  for (const n of graph.node ?? []) {
    s.add(n.name ?? "");
    for (const v of [...(n.input ?? []), ...(n.output ?? [])]) s.add(v);
  }
  return s;
}

class Inliner {
  calls = 0;
  private readonly stack: string[] = [];
  constructor(
    private readonly functions: Map<string, LocalFunction>,
    private readonly taken: Set<string>,
  ) {}

  private unique(name: string): string {
    let n = name;
    for (let i = 1; this.taken.has(n); i++) n = `${name}_${i}`;
    this.taken.add(n);
    return n;
  }

  /** `nodes` with every local-function call expanded, recursively. */
  expand(nodes: onnx.INodeProto[]): onnx.INodeProto[] {
    const out: onnx.INodeProto[] = [];
    for (const n of nodes) {
      const fn = this.functions.get(keyOf(n.domain, n.opType));
      if (fn) out.push(...this.expandCall(n, fn));
      else out.push(n);
    }
    return out;
  }

  private expandCall(call: onnx.INodeProto, fn: LocalFunction): onnx.INodeProto[] {
    const id = keyOf(fn.proto.domain, fn.proto.name);
    const where = call.name || call.output?.[0] || id;
    if (this.stack.includes(id))
      throw new InlineError(
        `${where}: local function ${id} calls itself (${[...this.stack, id].join(" → ")})`,
      );
    const formalIn = fn.proto.input ?? [];
    const formalOut = fn.proto.output ?? [];
    const actualIn = call.input ?? [];
    const actualOut = call.output ?? [];
    if (actualIn.length > formalIn.length || actualOut.length > formalOut.length)
      throw new InlineError(
        `${where}: calls local function ${id} with ${actualIn.length} inputs / ${actualOut.length} outputs; it declares ${formalIn.length} / ${formalOut.length}`,
      );
    const rename = new Map<string, string>();
    for (const [i, f] of formalIn.entries()) rename.set(f, actualIn[i] ?? "");
    // An output the call does not take gets an internal name like any other body value.
    formalOut.forEach((f, i) => {
      if (actualOut[i]) rename.set(f, actualOut[i]);
    });
    const scope = call.name || fn.proto.name || "inlined";
    const valueName = (v: string) => {
      if (!v) return v;
      let r = rename.get(v);
      if (r === undefined) {
        r = this.unique(`${scope}/${v}`);
        rename.set(v, r);
      }
      return r;
    };
    const callAttrs = new Map((call.attribute ?? []).map((a) => [a.name ?? "", a]));
    const body: onnx.INodeProto[] = [];
    for (const [i, inner] of (fn.proto.node ?? []).entries()) {
      const attribute: onnx.IAttributeProto[] = [];
      for (const a of inner.attribute ?? []) {
        if (!a.refAttrName) {
          attribute.push(a);
          continue;
        }
        const bound = callAttrs.get(a.refAttrName) ?? fn.defaults.get(a.refAttrName);
        // Not given and no default: the attribute is left unset (the op's own default applies).
        if (bound) attribute.push({ ...bound, name: a.name, refAttrName: undefined });
      }
      body.push({
        ...inner,
        name: this.unique(`${scope}/${inner.name || `${inner.opType}_${i}`}`),
        input: (inner.input ?? []).map(valueName),
        output: (inner.output ?? []).map(valueName),
        attribute,
      });
    }
    this.calls++;
    this.stack.push(id);
    try {
      return this.expand(body);
    } finally {
      this.stack.pop();
    }
  }
}

/**
 * Inlines every local function of `model` in place (its graph then holds standard-domain or other-domain ops
 * only, and `functions` is emptied). `bytes`: the file the message was decoded from, for the IR ≥ 9 fields
 * onnx-proto does not decode (attribute defaults, overloads); without it, attributes without a value at the
 * call are left unset.
 */
export function inlineLocalFunctions(model: onnx.IModelProto, bytes?: Uint8Array): InlineReport {
  const protos = model.functions ?? [];
  if (protos.length === 0) return { functions: 0, calls: 0 };
  const graph = model.graph;
  if (!graph) throw new InlineError("the model has local functions but no graph");
  const extras = bytes ? readFunctionExtras(bytes) : [];
  const modelOpset = versionOf(model.opsetImport, "");
  const functions = new Map<string, LocalFunction>();
  for (const [i, proto] of protos.entries()) {
    const id = keyOf(proto.domain, proto.name);
    if (functions.has(id) || extras[i]?.overload)
      throw new InlineError(`local function ${id}: overloaded local functions are not supported`);
    const fnOpset = versionOf(proto.opsetImport, "");
    const mismatch =
      fnOpset !== undefined && modelOpset !== undefined && fnOpset !== modelOpset
        ? opsetMismatch(proto, fnOpset, modelOpset)
        : null;
    if (mismatch)
      throw new InlineError(
        `local function ${id}: ${mismatch}: inlining would change what its ops mean; export with one opset`,
      );
    functions.set(id, {
      proto,
      defaults: new Map((extras[i]?.defaults ?? []).map((a) => [a.name ?? "", a])),
    });
  }
  const inliner = new Inliner(functions, takenNames(graph));
  graph.node = inliner.expand(graph.node ?? []);

  // Domains the inlined ops use must be imported by the model; the functions' own domains no longer are used.
  const imports = [...(model.opsetImport ?? [])];
  const usedDomains = new Set(graph.node.map((n) => (isDefaultDomain(n.domain) ? "" : (n.domain ?? ""))));
  for (const proto of protos)
    for (const o of proto.opsetImport ?? []) {
      const d = isDefaultDomain(o.domain) ? "" : (o.domain ?? "");
      if (usedDomains.has(d) && versionOf(imports, d) === undefined)
        imports.push({ domain: d, version: o.version });
    }
  const functionDomains = new Set(protos.map((p) => p.domain ?? ""));
  model.opsetImport = imports.filter((o) => {
    const d = isDefaultDomain(o.domain) ? "" : (o.domain ?? "");
    return d === "" || usedDomains.has(d) || !functionDomains.has(d);
  });
  model.functions = [];
  return { functions: protos.length, calls: inliner.calls };
}
