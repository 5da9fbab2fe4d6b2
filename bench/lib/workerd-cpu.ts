/**
 * CPU time of the workerd processes that wrangler's unstable_dev started for this process (bench:edge and
 * bench/edge-ab.ts): on a shared machine, CPU time per request moves far less with load than wall time does.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/**
 * The workerd processes among this process's descendants. wrangler may hold more than one (it restarts workerd
 * when the configuration settles), so CPU time is summed over all of them; an idle one adds nothing.
 */
export function workerdPids(): number[] {
  const parent = new Map<number, number>();
  const comm = new Map<number, string>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      comm.set(Number(d), stat.slice(stat.indexOf("(") + 1, close));
      parent.set(Number(d), Number(stat.slice(close + 2).split(" ")[1]));
    } catch {}
  }
  const isMine = (pid: number): boolean => {
    for (let p = parent.get(pid); p; p = parent.get(p)) if (p === process.pid) return true;
    return false;
  };
  const found = [...comm].filter(([pid, name]) => name === "workerd" && isMine(pid)).map(([pid]) => pid);
  if (found.length === 0) throw new Error("no workerd child process found");
  return found;
}

/**
 * CPU time (user + system, all threads) of a process, in ms, from /proc/<pid>/stat. The kernel counts it in clock
 * ticks (10 ms), so per-request CPU is the total over all timed requests of a cell divided by their number.
 */
export function processCpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {} // exited: it does no more work
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}
const CLOCK_TICKS_PER_S = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/**
 * CPU time (user + system) of each thread of a process, in ms, by thread id, with the thread's name
 * (/proc/<pid>/task/<tid>/{stat,comm}). A profiled isolate shares its process with V8's sampler thread, so the
 * isolate's own CPU is its thread's, not the process's.
 */
export function threadCpuMs(pid: number): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      out.set(Number(tid), { name, ms: ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_S });
    } catch {}
  }
  return out;
}
