/**
 * Products of dims as dim symbols, for shape inference (shape-inference.ts). A flatten of [batch, 16, H] to
 * [-1, H] has the leading dim `16*batch`, and a Reshape of that back to [-1, 16, H'] infers `batch` again: only
 * with the product named can an importer prove that a constant flatten/restore pair (tf2onnx's tensordot,
 * `[16, 32]` → `[1, 16, 96]` at a fixed batch) keeps the batch, instead of losing it in a fresh unknown.
 *
 * A dim is a number or a string. A string is a monomial: an optional positive integer coefficient and symbol
 * factors, joined by `*`, factors sorted, coefficient first and omitted when 1 (`16*batch`,
 * `batch*sequence`). Canonical, so equal products are equal strings and broadcasting/equality checks work on
 * them unchanged. Fresh symbols (`?n`, a dim nothing can name) take part in the arithmetic, but a product that
 * keeps one together with other factors is not written out (undefined: the caller gives it a fresh symbol), so
 * a `?` prefix keeps meaning "unknown".
 */
export type Dim = number | string;

interface Monomial {
  coef: number;
  /** Sorted symbol factors, repeated for powers. */
  factors: string[];
}

const INTEGER = /^\d+$/;

function monomial(d: Dim): Monomial | undefined {
  if (typeof d === "number") return Number.isInteger(d) && d >= 0 ? { coef: d, factors: [] } : undefined;
  if (d === "") return undefined;
  let coef = 1;
  const factors: string[] = [];
  for (const part of d.split("*")) {
    // A dim_param that merely contains `*` in an odd place (`a**b`) is one opaque symbol.
    if (part === "") return { coef: 1, factors: [d] };
    if (INTEGER.test(part)) coef *= Number(part);
    else factors.push(part);
  }
  return { coef, factors: factors.sort() };
}

function multiply(ms: Monomial[]): Monomial {
  return {
    coef: ms.reduce((a, m) => a * m.coef, 1),
    factors: ms.flatMap((m) => m.factors).sort(),
  };
}

/** `a / b` when it is a monomial (b's factors all in a, coefficients dividing); undefined otherwise. */
function divide(a: Monomial, b: Monomial): Monomial | undefined {
  if (b.coef === 0 || a.coef % b.coef !== 0) return undefined;
  const left = [...a.factors];
  for (const f of b.factors) {
    const i = left.indexOf(f);
    if (i < 0) return undefined;
    left.splice(i, 1);
  }
  return { coef: a.coef / b.coef, factors: left };
}

function format(m: Monomial): Dim | undefined {
  if (m.factors.length === 0 || m.coef === 0) return m.coef;
  const fresh = m.factors.some((f) => f.startsWith("?"));
  if (fresh && (m.factors.length > 1 || m.coef !== 1)) return undefined;
  return [...(m.coef === 1 ? [] : [String(m.coef)]), ...m.factors].join("*");
}

function monomials(dims: Dim[]): Monomial[] | undefined {
  const ms = dims.map(monomial);
  return ms.every((m) => m !== undefined) ? (ms as Monomial[]) : undefined;
}

/** The product of `dims` as a dim (a number when all are numbers); undefined when it cannot be named. */
export function productDim(dims: Dim[]): Dim | undefined {
  const ms = monomials(dims);
  return ms ? format(multiply(ms)) : undefined;
}

/**
 * product(num) / product(den) as a dim when the division is exact in every factor (`16*batch*96 / (16*96)` is
 * `batch`); undefined otherwise.
 */
export function quotientDim(num: Dim[], den: Dim[]): Dim | undefined {
  const n = monomials(num);
  const d = monomials(den);
  if (!n || !d) return undefined;
  const q = divide(multiply(n), multiply(d));
  return q ? format(q) : undefined;
}

/** True when symbol `sym` is a factor of `d` (`batch` of `batch`, `16*batch`, `batch*sequence`). */
export function hasFactor(d: Dim | undefined, sym: string): boolean {
  if (d === undefined || typeof d === "number") return false;
  return d === sym || !!monomial(d)?.factors.includes(sym);
}

/** `d` with symbol `sym` replaced by `value` (`16*batch` at batch 2 is 32); undefined when not nameable. */
export function substituteDim(d: Dim, sym: string, value: number): Dim | undefined {
  const m = monomial(d);
  if (!m?.factors.includes(sym)) return d;
  const factors = m.factors.filter((f) => f !== sym);
  const power = m.factors.length - factors.length;
  return format({ coef: m.coef * value ** power, factors });
}
