/**
 * What the balancer remembers of its health checks, per backend, for `/stats`
 * and `/metrics`: results by layer, the last result, and a latency histogram.
 * Counters are plain numbers updated from the probe's `checked` event.
 *
 * @module
 */
import type { CheckResult } from '../index.js';

/** Upper bounds (seconds) of the check-latency histogram buckets, Prometheus style. */
export const latencyBuckets: readonly number[] = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/** How a check ended: `ok`, `leaving` (answered: shutting down, still serving), or the layer that failed (`local`: failed in this process, no verdict). */
export type CheckOutcome = 'ok' | 'leaving' | 'connect' | 'tls' | 'protocol' | 'timeout' | 'custom' | 'local';

/** Every outcome, in the order metrics list them. */
export const checkOutcomes: readonly CheckOutcome[] = Object.freeze(['ok', 'leaving', 'connect', 'tls', 'protocol', 'timeout', 'custom', 'local']);

/** The last check of a backend, as `/stats` shows it. */
export interface LastCheck {
  readonly ok: boolean;
  /** Clock time the check finished (ms since epoch). */
  readonly at: number;
  readonly durationMs: number;
  /** `PROBE_TIMEOUT`… when it failed; `probe-leaving` when the backend said it is leaving. */
  readonly code: string | undefined;
  readonly layer: string | undefined;
  readonly message: string | undefined;
  /** A failed dial of real traffic counted as a check, not a probe. */
  readonly passive: boolean;
}

/** Probe figures of one backend. */
export interface BackendProbeStats {
  /** Checks by outcome (active checks and, if counted, failed dials). */
  readonly results: Readonly<Record<CheckOutcome, number>>;
  readonly last: LastCheck | undefined;
  /** Cumulative counts per bucket of {@link latencyBuckets}, then `+Inf`. Active checks only. */
  readonly latencyBuckets: readonly number[];
  readonly latencySumSeconds: number;
  readonly latencyCount: number;
}

class Entry {
  readonly results: Record<CheckOutcome, number> = { ok: 0, leaving: 0, connect: 0, tls: 0, protocol: 0, timeout: 0, custom: 0, local: 0 };
  last: LastCheck | undefined = undefined;
  /** Non-cumulative: one slot per bucket plus +Inf; made cumulative on read. */
  readonly buckets = new Array<number>(latencyBuckets.length + 1).fill(0);
  sum = 0;
  count = 0;
}

/** A source of check results: a `HealthProbe`. */
export interface CheckResultSource {
  on(event: 'checked', fn: (result: CheckResult) => void): unknown;
  on(event: 'checkSkipped', fn: (backend: unknown, result: CheckResult) => void): unknown;
  off(event: 'checked', fn: (result: CheckResult) => void): unknown;
  off(event: 'checkSkipped', fn: (backend: unknown, result: CheckResult) => void): unknown;
}

/**
 * Accumulates check results per backend id.
 *
 * @example
 * ```ts
 * const stats = new ProbeStats();
 * stats.attach(probe);
 * stats.snapshot()['127.0.0.2:6443']?.last?.ok;
 * ```
 */
export class ProbeStats {
  readonly #entries = new Map<string, Entry>();
  #source: CheckResultSource | undefined;
  readonly #onChecked = (result: CheckResult): void => this.record(result);
  // A local failure (EMFILE...) is counted under `local` but is not the backend's last result.
  readonly #onSkipped = (_backend: unknown, result: CheckResult): void => {
    this.#entry(result.backend.id).results.local++;
  };

  /** Starts counting the results of `source`. */
  attach(source: CheckResultSource): void {
    this.detach();
    this.#source = source;
    source.on('checked', this.#onChecked);
    source.on('checkSkipped', this.#onSkipped);
  }

  /** Stops counting. */
  detach(): void {
    this.#source?.off('checked', this.#onChecked);
    this.#source?.off('checkSkipped', this.#onSkipped);
    this.#source = undefined;
  }

  /** Counts one result. */
  record(result: CheckResult): void {
    const entry = this.#entry(result.backend.id);
    const error = result.error;
    const layer = error?.layer;
    const outcome: CheckOutcome = result.ok ? 'ok' : result.outcome === 'leaving' ? 'leaving' : (layer ?? 'custom');
    entry.results[outcome] = (entry.results[outcome] ?? 0) + 1;
    const passive = (result as { passive?: boolean }).passive === true;
    entry.last = {
      ok: result.ok,
      at: result.at,
      durationMs: result.durationMs,
      code: error?.code ?? (result.outcome === 'leaving' ? 'probe-leaving' : undefined),
      layer,
      message: error?.message ?? result.message,
      passive,
    };
    // A counted dial failure took no probe time: keep it out of latency.
    if (passive) return;
    const seconds = result.durationMs / 1000;
    let i = 0;
    while (i < latencyBuckets.length && seconds > latencyBuckets[i]!) i++;
    entry.buckets[i]!++;
    entry.sum += seconds;
    entry.count++;
  }

  #entry(id: string): Entry {
    let entry = this.#entries.get(id);
    if (entry === undefined) {
      entry = new Entry();
      this.#entries.set(id, entry);
    }
    return entry;
  }

  /** Forgets a backend (it left the pool). */
  forget(id: string): void {
    this.#entries.delete(id);
  }

  /** The last result of a backend, if it was checked. */
  last(id: string): LastCheck | undefined {
    return this.#entries.get(id)?.last;
  }

  /** A copy of every backend's figures, keyed by backend id. */
  snapshot(): Record<string, BackendProbeStats> {
    const out: Record<string, BackendProbeStats> = {};
    for (const [id, e] of this.#entries) {
      let running = 0;
      out[id] = {
        results: { ...e.results },
        last: e.last,
        latencyBuckets: e.buckets.map((n) => (running += n)),
        latencySumSeconds: e.sum,
        latencyCount: e.count,
      };
    }
    return out;
  }
}
