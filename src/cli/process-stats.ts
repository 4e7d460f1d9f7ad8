/**
 * What `/metrics` says about the process itself: CPU seconds, resident
 * memory, open descriptors against their limit (Linux `/proc`; absent
 * elsewhere), start time and event-loop delay (`perf_hooks`'
 * `monitorEventLoopDelay`). Read on a scrape, never on the data path; in
 * multi-core mode each process reports its own and the primary labels them.
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** One process's figures, as {@link renderMetrics} writes them (structured-clone safe). */
export interface ProcessFigures {
  /** `main` (one process), `primary`, or `worker-N`. */
  readonly process: string;
  readonly cpuSeconds: number;
  readonly residentBytes: number;
  /** Open file descriptors; `undefined` where `/proc/self/fd` is not there. */
  readonly openFds: number | undefined;
  /** The soft limit on descriptors (`ulimit -n`); `undefined` when unknown. */
  readonly maxFds: number | undefined;
  /** Unix time the process started, in seconds. */
  readonly startTimeSeconds: number;
  /** Event-loop delay since start, in seconds: quantiles 0.5, 0.9, 0.99 and the largest. */
  readonly loopDelay: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number; readonly sum: number; readonly count: number };
}

/** The soft `Max open files` of this process, from `/proc/self/limits`. */
function maxFds(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'latin1')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

function openFds(): number | undefined {
  try {
    // The listing itself holds one descriptor while it runs.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

/**
 * Samples the event loop from construction to {@link ProcessStats.close}.
 *
 * @example
 * ```ts
 * const proc = new ProcessStats('main');
 * renderMetrics(pool.stats(), probeStats.snapshot(), { processes: [proc.snapshot()] });
 * proc.close();
 * ```
 */
export class ProcessStats {
  readonly #name: string;
  readonly #delay: IntervalHistogram;
  readonly #startTime = Math.round(Date.now() / 1000 - process.uptime());

  constructor(name: string) {
    this.#name = name;
    // 20 ms resolution: a cheap timer, fine enough for the lag an operator acts on.
    this.#delay = monitorEventLoopDelay({ resolution: 20 });
    this.#delay.enable();
  }

  snapshot(): ProcessFigures {
    const cpu = process.cpuUsage();
    const h = this.#delay;
    const s = (ns: number): number => (Number.isFinite(ns) ? ns / 1e9 : 0);
    const count = h.count;
    return {
      process: this.#name,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      residentBytes: process.memoryUsage.rss(),
      openFds: openFds(),
      maxFds: maxFds(),
      startTimeSeconds: this.#startTime,
      loopDelay: {
        p50: count > 0 ? s(h.percentile(50)) : 0,
        p90: count > 0 ? s(h.percentile(90)) : 0,
        p99: count > 0 ? s(h.percentile(99)) : 0,
        max: count > 0 ? s(h.max) : 0,
        sum: count > 0 ? s(h.mean) * count : 0,
        count,
      },
    };
  }

  /** Stops sampling. Idempotent. */
  close(): void {
    this.#delay.disable();
  }
}
