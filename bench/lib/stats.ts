/**
 * Small statistics for benchmark rounds: medians of per-round figures and
 * percentiles of pooled samples. Nothing here knows about time or sockets.
 *
 * @module
 */

/** The median of `values` (the mean of the middle two for an even count); `NaN` when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The `p`-th percentile (0–100) of `values`, nearest-rank: the smallest value
 * with at least `p`% of the samples at or below it. `NaN` when empty.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** Several percentiles at once, sorting only once. */
export function percentiles(values: readonly number[] | Float64Array, ps: readonly number[]): number[] {
  if (values.length === 0) return ps.map(() => NaN);
  const sorted = Float64Array.from(values).sort();
  return ps.map((p) => sorted[Math.min(Math.max(1, Math.ceil((p / 100) * sorted.length)), sorted.length) - 1]!);
}

/** The largest value, `NaN` when empty. */
export function max(values: readonly number[]): number {
  let m = NaN;
  for (const v of values) if (!(v <= m)) m = v;
  return m;
}

/** `a / b`, or `NaN` when either is not a finite number or `b` is 0. */
export function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN;
}

/**
 * Runs `rounds` rounds in which every contender runs once, the order rotating
 * from round to round, so slow drifts of a shared, noisy machine (another
 * process starting, thermal state) fall on every contender alike.
 *
 * @example
 * ```ts
 * const results = await alternate(['a', 'b'], 3, async (name, round) => measure(name));
 * ```
 */
export async function alternate<K extends string, R>(
  contenders: readonly K[],
  rounds: number,
  fn: (contender: K, round: number) => Promise<R>,
): Promise<Map<K, R[]>> {
  const out = new Map<K, R[]>();
  for (const c of contenders) out.set(c, []);
  for (let round = 0; round < rounds; round++) {
    const n = contenders.length;
    for (let i = 0; i < n; i++) {
      const c = contenders[(i + round) % n]!;
      out.get(c)!.push(await fn(c, round));
    }
  }
  return out;
}
