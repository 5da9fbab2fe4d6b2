/**
 * Products of dims as dim symbols, for shape inference (shape-inference.ts). A flatten of [batch, 16, H] to
 * [-1, H] has the leading dim `batch*16`, and a Reshape of that back to [-1, 16, H'] infers `batch` again: only
 * with the product named can an importer prove that a constant flatten/restore pair (tf2onnx's tensordot,
 * `[16, 32]` → `[1, 16, 96]` at a fixed batch) keeps the batch, instead of losing it in a fresh unknown.
 *
 * A dim is a number or a string. A string is a product of factors joined by `*`, written in row-major order,
 * outermost first: `batch*16` is what flattening [batch, 16] gives, and `16*batch` what flattening [16, batch]
 * gives. The order is kept because it is the layout: the two have the same size, but only the first can be
 * split back into [batch, 16] without mixing rows of different batch items, and a Reshape's -1 is inferred
 * by peeling the other output dims off the front and the back of the input's factors in that order, never by
 * cancelling factors wherever they are. Adjacent numbers merge (`batch*4*8` is `batch*32`) and 1s drop, so
 * equal layouts are equal strings and equality checks elsewhere work on them unchanged. Fresh symbols (`?n`,
 * a dim nothing can name) take part in the arithmetic, but a product that keeps one together with other
 * factors is not written out (undefined: the caller gives it a fresh symbol), so a `?` prefix keeps meaning
 * "unknown".
 */
export type Dim = number | string;

/** Factors outermost first; adjacent numbers merged, no 1s. */
type Factors = (number | string)[];

const INTEGER = /^\d+$/;

function merged(fs: Factors): Factors {
  const out: Factors = [];
  for (const f of fs) {
    if (f === 1) continue;
    const last = out.at(-1);
    if (typeof f === "number" && typeof last === "number") out[out.length - 1] = last * f;
    else out.push(f);
  }
  return out;
}

function factors(d: Dim): Factors | undefined {
  if (typeof d === "number") return Number.isInteger(d) && d >= 0 ? merged([d]) : undefined;
  if (d === "") return undefined;
  const parts = d.split("*");
  // A dim_param that merely contains `*` in an odd place (`a**b`) is one opaque symbol.
  if (parts.includes("")) return [d];
  return merged(parts.map((p) => (INTEGER.test(p) ? Number(p) : p)));
}

function format(fs: Factors): Dim | undefined {
  const m = merged(fs);
  if (m.includes(0)) return 0;
  if (m.length === 0) return 1;
  if (m.length === 1 && typeof m[0] === "number") return m[0];
  if (m.some((f) => typeof f === "string" && f.startsWith("?")) && m.length > 1) return undefined;
  return m.join("*");
}

function concat(dims: Dim[]): Factors | undefined {
  const out: Factors = [];
  for (const d of dims) {
    const f = factors(d);
    if (!f) return undefined;
    out.push(...f);
  }
  return merged(out);
}

/** The product of `dims` in row-major order (a number when all are numbers); undefined when not nameable. */
export function productDim(dims: Dim[]): Dim | undefined {
  const f = concat(dims);
  return f ? format(f) : undefined;
}

/** Removes `d`'s factors from the front (or the back) of `total`, in layout order; false when they are not there. */
function peel(total: Factors, d: Dim, fromBack: boolean): boolean {
  const fs = factors(d);
  if (!fs) return false;
  for (const f of fromBack ? [...fs].reverse() : fs) {
    const i = fromBack ? total.length - 1 : 0;
    const t = total[i];
    if (typeof f === "string") {
      if (t !== f) return false;
      total.splice(i, 1);
    } else {
      // A number splits the outermost (innermost) run of numbers: [batch, 32] peels 4 from the back as [batch, 8].
      if (typeof t !== "number" || f === 0 || t % f !== 0) return false;
      if (t === f) total.splice(i, 1);
      else total[i] = t / f;
    }
  }
  return true;
}

/**
 * The dim q such that `input`'s elements, in row-major order, are `before ++ [q] ++ after` (a Reshape's -1):
 * `before` peeled off the front of the input's factors and `after` off the back. `[-1, 16, 96]` on
 * `[batch*16, 96]` is `batch`; on `[16*batch, 96]` there is none (the 16 is not innermost), so undefined.
 */
export function inferredDim(input: Dim[], before: Dim[], after: Dim[]): Dim | undefined {
  const total = concat(input);
  if (!total || total.includes(0)) return undefined;
  for (const d of before) if (!peel(total, d, false)) return undefined;
  for (const d of [...after].reverse()) if (!peel(total, d, true)) return undefined;
  return format(total);
}

/** True when `sym` is the outermost factor of `dims` in layout order (`[1, batch*16, H]`, not `[16*batch, H]`). */
export function leadsWith(dims: Dim[], sym: string): boolean {
  return concat(dims)?.[0] === sym;
}

/** True when symbol `sym` is a factor of `d` (`batch` of `batch`, `batch*16`, `sequence*batch`). */
export function hasFactor(d: Dim | undefined, sym: string): boolean {
  if (d === undefined || typeof d === "number") return false;
  return d === sym || !!factors(d)?.includes(sym);
}

/** `d` with symbol `sym` replaced by `value` (`batch*16` at batch 2 is 32); undefined when not nameable. */
export function substituteDim(d: Dim, sym: string, value: number): Dim | undefined {
  const fs = factors(d);
  if (!fs?.includes(sym)) return d;
  return format(fs.map((f) => (f === sym ? value : f)));
}
