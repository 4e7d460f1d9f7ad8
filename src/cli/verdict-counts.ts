/**
 * Health verdicts (transitions of the health axis) per backend, by the cause
 * code that decided them (`probe-passed`, `PROBE_TIMEOUT`, `CONNECT_FAILED`,
 * `marked-down`…): `failover_proxy_backend_verdicts_total`. Counted where the
 * verdicts are made: the pool in one process, the primary's control pool
 * with `--workers` (the workers only apply them, so nothing is summed twice).
 *
 * @module
 */
import type { Backend, StateChange, UpstreamPool } from '../index.js';

/** `backend -> "health cause" -> count`. */
export type VerdictCountsSnapshot = Readonly<Record<string, readonly { readonly health: string; readonly cause: string; readonly count: number }[]>>;

/**
 * Counts a pool's health verdicts.
 *
 * @example
 * ```ts
 * const verdicts = new VerdictCounts(pool);
 * verdicts.snapshot()['b1']; // [{ health: 'down', cause: 'PROBE_TIMEOUT', count: 2 }]
 * ```
 */
export class VerdictCounts {
  readonly #pool: UpstreamPool;
  readonly #counts = new Map<string, Map<string, { health: string; cause: string; count: number }>>();
  readonly #onHealth = (backend: Backend, change: StateChange): void => {
    if (change.axis !== 'health') return;
    let perBackend = this.#counts.get(backend.id);
    if (perBackend === undefined) {
      perBackend = new Map();
      this.#counts.set(backend.id, perBackend);
    }
    const key = `${change.health} ${change.cause.code}`;
    const entry = perBackend.get(key);
    if (entry === undefined) perBackend.set(key, { health: change.health, cause: change.cause.code, count: 1 });
    else entry.count++;
  };

  constructor(pool: UpstreamPool) {
    this.#pool = pool;
    pool.on('backendUp', this.#onHealth);
    pool.on('backendDown', this.#onHealth);
  }

  snapshot(): VerdictCountsSnapshot {
    const out: Record<string, { health: string; cause: string; count: number }[]> = {};
    for (const [id, perBackend] of this.#counts) out[id] = [...perBackend.values()].map((e) => ({ ...e }));
    return out;
  }

  /** Stops counting. */
  close(): void {
    this.#pool.off('backendUp', this.#onHealth);
    this.#pool.off('backendDown', this.#onHealth);
  }
}
