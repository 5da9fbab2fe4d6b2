/**
 * Waiting on another request's work without waiting on its promise.
 *
 * workerd ties every promise to the request (I/O context) that created it. A request that awaits a promise only
 * another request's I/O will settle has no I/O of its own outstanding, and workerd cancels it with a 500 "the
 * Worker's code had hung and would never generate a response" (and if the other request ends first, its
 * continuations are dropped). So per-isolate state shared by requests holds only plain values (flags, settled
 * results), and a request that must wait for another's work polls that state on its own timer: the timer is
 * its own I/O, so workerd sees it alive, and it never touches the other request's promise.
 */

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class WaitTimeout extends Error {
  override name = "WaitTimeout";
}

/**
 * Resolves once `ready()` returns true, checking it now and then every `pollMs` on this request's own timer;
 * throws WaitTimeout after `timeoutMs`.
 */
export async function waitFor(
  ready: () => boolean,
  opts: { pollMs: number; timeoutMs: number; what: string },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  while (!ready()) {
    if (Date.now() >= deadline)
      throw new WaitTimeout(`gave up waiting for ${opts.what} after ${opts.timeoutMs} ms`);
    await sleep(opts.pollMs);
  }
}

/**
 * Mutual exclusion within an isolate for work that must not interleave across requests (onnxruntime-web's wasm
 * calls). The holder is a plain flag, not a promise chain, so waiters poll it on their own timers. Uncontended,
 * `run` takes the lock synchronously. A holder whose request was cancelled mid-hold never lets go; after
 * `staleMs` a waiter takes the lock over rather than wait forever.
 */
export class IsolateLock {
  private holder: { since: number } | null = null;

  constructor(
    private readonly what: string,
    private readonly pollMs = 1,
    private readonly staleMs = 30_000,
  ) {}

  async run<T>(work: () => Promise<T> | T): Promise<T> {
    const free = () => this.holder === null || Date.now() - this.holder.since >= this.staleMs;
    // The stale rule always ends the wait; the timeout only guards against a clock that never advances.
    if (!free()) await waitFor(free, { pollMs: this.pollMs, timeoutMs: this.staleMs * 2, what: this.what });
    const mine = { since: Date.now() };
    this.holder = mine;
    try {
      return await work();
    } finally {
      if (this.holder === mine) this.holder = null;
    }
  }
}
