/**
 * A CPU profile of the Worker's isolate, read through the V8 inspector that `wrangler dev --inspector-port`
 * exposes (Chrome DevTools Protocol over a websocket: `Profiler.start` / `Profiler.stop`), and its samples
 * attributed to the module that was running.
 *
 * Why a profile: workerd's clock (`performance.now()`, `Date.now()`) has whole-millisecond resolution under
 * wrangler dev and counts wall time, so a sub-millisecond stage in `server-timing` reads 0 or 1 and its mean
 * over many requests is the stage's wall time, preemption by other processes included: on a loaded machine it
 * measures the load as much as the code. V8's sampler records which function is on the isolate's thread every
 * `intervalUs`; a sample is taken only while the thread runs, and a thread preempted between two samples
 * yields one sample with a long time delta, not many. So the number of samples in a module, times the
 * interval, is the CPU the isolate spent there (the time deltas would add the preemption back in).
 *
 * Attribution is by source position: the bundle wrangler serves is one script whose esbuild module comments
 * (`// node_modules/hono/dist/hono-base.js`, `// src/gateway/oip.ts`) open each module's lines; wasm frames are
 * onnxruntime-web's kernels. A sample counts for the innermost frame that lies in a known module, so a
 * built-in (`JSON.stringify`, `crypto.subtle.digest`) counts for the code that called it.
 */
import { WebSocket } from "undici";

interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  parent?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One CDP session on the Worker's inspector. */
export class Inspector {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly scripts = new Map<string, string>();

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener("message", (event) => {
      const msg = JSON.parse(String(event.data));
      if (msg.method === "Debugger.scriptParsed") this.scripts.set(msg.params.scriptId, msg.params.url);
      if (msg.id === undefined) return;
      const waiter = this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(`inspector: ${msg.error.message}`));
      else waiter.resolve(msg.result);
    });
  }

  /** Connects to the first target that wrangler's inspector proxy lists at `port` (the Worker). */
  static async connect(port: number): Promise<Inspector> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as {
          webSocketDebuggerUrl?: string;
        }[];
        const target = targets.find((t) => t.webSocketDebuggerUrl);
        if (target?.webSocketDebuggerUrl) {
          // wrangler's inspector proxy admits only local origins (DNS-rebinding guard)
          const ws = new WebSocket(target.webSocketDebuggerUrl, { headers: { Origin: "http://localhost" } });
          await new Promise<void>((resolve, reject) => {
            ws.addEventListener("open", () => resolve());
            ws.addEventListener("error", () =>
              reject(new Error(`inspector: cannot connect on port ${port}`)),
            );
          });
          return new Inspector(ws);
        }
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      if (Date.now() > deadline) throw new Error(`inspector: no target listed on port ${port}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
  }

  /** The sources of the scripts the isolate has parsed (the Worker's bundle among them), by script id. */
  async scriptSources(): Promise<Map<string, { url: string; source: string }>> {
    await this.send("Debugger.enable");
    // scriptParsed events for the scripts already loaded arrive before enable's answer
    const out = new Map<string, { url: string; source: string }>();
    for (const [scriptId, url] of this.scripts) {
      if (url.startsWith("wasm://")) continue;
      const { scriptSource } = await this.send<{ scriptSource: string }>("Debugger.getScriptSource", {
        scriptId,
      });
      out.set(scriptId, { url, source: scriptSource });
    }
    await this.send("Debugger.disable");
    return out;
  }

  async startProfile(intervalUs: number): Promise<void> {
    await this.send("Profiler.enable");
    await this.send("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.send("Profiler.start");
  }

  async stopProfile(): Promise<CpuProfile> {
    const { profile } = await this.send<{ profile: CpuProfile }>("Profiler.stop");
    await this.send("Profiler.disable");
    return profile;
  }

  close(): void {
    this.ws.close();
  }
}

/** Line ranges of an esbuild bundle's modules, from its `// <path>` module comments. */
export function moduleRanges(source: string): { line: number; module: string }[] {
  const out: { line: number; module: string }[] = [];
  const lines = source.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^\/\/ ((?:node_modules|src|\.\.)\/\S+|\S+\.(?:ts|js|mjs|cjs|json))$/.exec(lines[i]);
    if (m) out.push({ line: i, module: m[1] });
  }
  return out;
}

/** The module a 0-based line of the bundle belongs to (the last module comment above it). */
function moduleAt(
  ranges: { line: number; module: string }[],
  line: number,
): { line: number; module: string } | undefined {
  let lo = 0;
  let hi = ranges.length - 1;
  let found: { line: number; module: string } | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid].line <= line) {
      found = ranges[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

export interface Attribution {
  /** Samples taken while the isolate ran code (not idle). */
  busySamples: number;
  idleSamples: number;
  /** Busy samples per module (`(wasm)`, `(gc)`, `(program)` and `(native)` for what has no module). */
  byModule: Record<string, number>;
  /** Busy samples per innermost function of a known module, `module:function:line in the module:column`. */
  byFunction: Record<string, number>;
  /** Busy samples with this function of the project's own code (`src/`) anywhere on the stack. */
  inclusive: Record<string, number>;
}

/**
 * Attributes each sample to the innermost frame that lies in a module of the bundle (or to wasm, GC or the
 * VM's own work). `sources` are the isolate's scripts (Inspector.scriptSources).
 */
export function attribute(
  profile: CpuProfile,
  sources: Map<string, { url: string; source: string }>,
): Attribution {
  const ranges = new Map([...sources].map(([id, s]) => [id, moduleRanges(s.source)]));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const memo = new Map<number, { module: string; fn: string }>();
  const resolve = (id: number): { module: string; fn: string } => {
    const cached = memo.get(id);
    if (cached) return cached;
    const f = byId.get(id)!.callFrame;
    let out: { module: string; fn: string } | undefined;
    if (f.functionName === "(idle)") out = { module: "(idle)", fn: "" };
    else if (f.functionName === "(garbage collector)") out = { module: "(gc)", fn: "" };
    else if (f.functionName === "(program)") out = { module: "(program)", fn: "" };
    else if (f.url.startsWith("wasm://")) out = { module: "(wasm)", fn: f.functionName };
    else {
      const r = ranges.get(f.scriptId);
      const at = r ? moduleAt(r, f.lineNumber) : undefined;
      // the function's line within its module, so two anonymous functions of one module stay apart
      if (at)
        out = {
          module: at.module,
          fn: `${f.functionName || "(anonymous)"}:${f.lineNumber - at.line}:${f.columnNumber}`,
        };
    }
    if (!out) {
      const parent = parentOf.get(id);
      out = parent === undefined ? { module: "(native)", fn: f.functionName } : resolve(parent);
      if (out.module === "(root)") out = { module: "(native)", fn: f.functionName };
    }
    if (f.functionName === "(root)") out = { module: "(root)", fn: "" };
    memo.set(id, out);
    return out;
  };
  // the project's own frames on a node's stack (src/ modules), innermost first
  const ownMemo = new Map<number, string[]>();
  const ownFrames = (id: number): string[] => {
    const cached = ownMemo.get(id);
    if (cached) return cached;
    const n = byId.get(id)!;
    const parent = parentOf.get(id);
    const above = parent === undefined ? [] : ownFrames(parent);
    const r = ranges.get(n.callFrame.scriptId);
    const at = r ? moduleAt(r, n.callFrame.lineNumber) : undefined;
    const out =
      at?.module.startsWith("src/") === true
        ? [
            `${at.module}:${n.callFrame.functionName || "(anonymous)"}:${n.callFrame.lineNumber - at.line}`,
            ...above,
          ]
        : above;
    ownMemo.set(id, out);
    return out;
  };
  const byModule: Record<string, number> = {};
  const byFunction: Record<string, number> = {};
  const inclusive: Record<string, number> = {};
  let busy = 0;
  let idle = 0;
  for (const id of profile.samples) {
    const { module, fn } = resolve(id);
    if (module === "(idle)" || module === "(root)") {
      idle++;
      continue;
    }
    busy++;
    byModule[module] = (byModule[module] ?? 0) + 1;
    const key = `${module}:${fn}`;
    byFunction[key] = (byFunction[key] ?? 0) + 1;
    for (const f of new Set(ownFrames(id))) inclusive[f] = (inclusive[f] ?? 0) + 1;
  }
  return { busySamples: busy, idleSamples: idle, byModule, byFunction, inclusive };
}
