/**
 * Stand-ins, for the Node program only (tsconfig.json), for the Workers globals that src/registry and src/http
 * name. The CLI's registry client (src/trainer-node/registry-client.ts) imports the registry app's *type*
 * (`RegistryApp`) for `hono/client`; that pulls the registry's sources into the Node typecheck, where
 * @cloudflare/workers-types cannot be loaded beside @types/node (their fetch, Request and FormData clash).
 * The route schema the client uses (paths, inputs, JSON outputs) names none of these, so `any` costs it nothing;
 * the Worker program (tsconfig.worker.json, which excludes this file) checks the registry against the real types.
 * A registry module that starts using another Workers global needs it added here.
 */
// biome-ignore lint/suspicious/noExplicitAny: a stand-in the Node program never calls (see above)
type D1Database = any;
// biome-ignore lint/suspicious/noExplicitAny: a stand-in the Node program never calls (see above)
type R2Bucket = any;
// biome-ignore lint/suspicious/noExplicitAny: a stand-in the Node program never calls (see above)
type RateLimit = any;
// biome-ignore lint/suspicious/noExplicitAny: a stand-in the Node program never calls (see above)
type ExecutionContext = any;
type ReadableStreamReadResult<T> = import("node:stream/web").ReadableStreamReadResult<T>;

declare module "crypto" {
  namespace webcrypto {
    interface SubtleCrypto {
      /** workerd's constant-time comparison (src/registry/auth.ts). */
      timingSafeEqual(a: ArrayBuffer | ArrayBufferView, b: ArrayBuffer | ArrayBufferView): boolean;
    }
  }
}
