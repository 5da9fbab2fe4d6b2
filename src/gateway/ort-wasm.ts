/**
 * onnxruntime-web inside workerd: the one place that knows how.
 *
 * workerd refuses to compile WebAssembly from bytes at run time (no `WebAssembly.compile`/`instantiate(bytes)`),
 * but ORT's emscripten loader always instantiates from bytes. wrangler, however, compiles an *imported* `.wasm`
 * file ahead of time and hands the Worker a `WebAssembly.Module`. So:
 *   1. import ORT's own wasm binary (the 1.30 build is `ort-wasm-simd-threaded.wasm`; with numThreads = 1 it runs
 *      single-threaded and never spawns a worker);
 *   2. set `env.wasm.wasmBinary` to a non-empty placeholder so the loader neither fetches nor streams, and goes
 *      straight to `WebAssembly.instantiate(bytes, imports)`;
 *   3. intercept that call and instantiate the precompiled module with the loader's imports instead.
 * The `ort.wasm.bundle.min.mjs` entry (`onnxruntime-web/wasm`) inlines the emscripten glue, so nothing is fetched
 * or dynamically imported, and it needs no DOM or Web Worker.
 */

import ortWasmModule from "onnxruntime-web/ort-wasm-simd-threaded.wasm";
import * as ort from "onnxruntime-web/wasm";

export { ort };

let configured = false;

/**
 * Configures ORT once per isolate and returns it. The wasm backend itself initialises on the first
 * `InferenceSession.create`, which is when the loader calls the intercepted `WebAssembly.instantiate`.
 */
export function loadOrt(): typeof ort {
  if (configured) return ort;
  const original = WebAssembly.instantiate.bind(WebAssembly) as (
    source: BufferSource | WebAssembly.Module,
    imports?: WebAssembly.Imports,
  ) => Promise<unknown>;
  // Byte sources (the only kind workerd would reject anyway) get ORT's precompiled module; a Module passes
  // through. The loader expects the `{ instance, module }` shape that instantiate(bytes) resolves to. The patch
  // stays in place: the loader may be re-entered if initialisation is retried.
  const instantiate = async (source: BufferSource | WebAssembly.Module, imports?: WebAssembly.Imports) => {
    if (source instanceof WebAssembly.Module) return original(source, imports);
    const instance = (await original(ortWasmModule, imports)) as WebAssembly.Instance;
    return { instance, module: ortWasmModule };
  };
  (WebAssembly as { instantiate: unknown }).instantiate = instantiate;

  ort.env.wasm.numThreads = 1; // no threads: a Worker isolate cannot spawn the pthread workers
  ort.env.wasm.proxy = false; // and no Web Worker proxy either
  ort.env.wasm.wasmBinary = new Uint8Array([0]); // placeholder meaning "the binary is here, don't fetch it"
  ort.env.logLevel = "fatal"; // a run failing on bad input is reported to the caller, not logged per request
  configured = true;
  return ort;
}
