/**
 * Options of {@link Discovery}: documented, defaults in one frozen object,
 * validated and merged in one place.
 *
 * @module
 */
import type { BackendInput } from '../backend.js';
import { systemClock, type Clock } from '../clock.js';
import type { BackendStatus } from '../backend-status.js';
import type { ReconcileOptions, ReconcileResult, DrainOptions } from '../pool-call-options.js';
import * as v from '../validate.js';
import type { DiscoverySource } from './source.js';
import { MAX_TIMER_MS } from '../limits.js';

/** What the layer needs of a pool: {@link UpstreamPool} fits. */
export interface DiscoveryPool {
  reconcile(specs: readonly BackendInput[], options?: ReconcileOptions): ReconcileResult;
  drain(id: string, options?: DrainOptions): Promise<void>;
  markReady(id: string, reason?: string): void;
  status(id: string): BackendStatus | undefined;
  readonly closed: boolean;
}

/** Options of {@link Discovery}. */
export interface DiscoveryOptions {
  /** The pool whose membership the layer owns (through `reconcile`). */
  readonly pool: DiscoveryPool;
  /** Where backends come from. Names must be unique. */
  readonly sources: readonly DiscoverySource[];
  /**
   * Bootstrap backends, always in the set whatever the sources say (the
   * address you would type by hand; KubePrism's "external endpoint").
   * @default []
   */
  readonly static?: readonly BackendInput[] | undefined;
  /**
   * Quiet time after a source's change before it is applied, in ms: an
   * apiserver adds, removes and re-adds itself while it starts.
   * @default 1000
   */
  readonly debounce?: number | undefined;
  /**
   * Longest a change waits under continuous churn, in ms.
   * @default 5000
   */
  readonly maxDelay?: number | undefined;
  /**
   * Deadline for a backend that left the list (or turned `draining`) to lose
   * its connections, in ms; then it is removed.
   * @default 30000
   */
  readonly drainTimeout?: number | undefined;
  /** A JSON file that keeps each source's last good list across restarts (never shadows `static`). */
  readonly stateFile?: string | undefined;
  /** Time source for the debounce. @default systemClock */
  readonly clock?: Clock | undefined;
}

/** @internal */
export interface ResolvedDiscoveryOptions {
  readonly pool: DiscoveryPool;
  readonly sources: readonly DiscoverySource[];
  readonly static: readonly BackendInput[];
  readonly debounce: number;
  readonly maxDelay: number;
  readonly drainTimeout: number;
  readonly stateFile: string | undefined;
  readonly clock: Clock;
}

/** Defaults of {@link DiscoveryOptions}. */
export const discoveryDefaults = Object.freeze({ debounce: 1000, maxDelay: 5000, drainTimeout: 30_000 });


/** Validates and fills in defaults. Throws `INVALID_ARGUMENT`. */
export function resolveDiscoveryOptions(options: DiscoveryOptions): ResolvedDiscoveryOptions {
  const raw = v.object('options', options);
  v.knownKeys('options', raw, ['pool', 'sources', 'static', 'debounce', 'maxDelay', 'drainTimeout', 'stateFile', 'clock']);
  const pool = options.pool;
  if (typeof pool !== 'object' || pool === null || typeof pool.reconcile !== 'function') throw v.invalid('pool', 'an UpstreamPool', pool);
  const sources: readonly DiscoverySource[] = options.sources;
  if (!isArray(sources)) throw v.invalid('sources', 'an array of discovery sources', options.sources);
  const names = new Set<string>();
  sources.forEach((s, i) => {
    v.object(`sources[${i}]`, s);
    const name = v.string(`sources[${i}].name`, s.name);
    if (name === 'static') throw v.invalid(`sources[${i}].name`, 'a name other than `static`', name);
    if (names.has(name)) throw v.invalid(`sources[${i}].name`, 'a unique name', name);
    names.add(name);
    v.func(`sources[${i}].start`, (s as unknown as Record<string, unknown>).start);
    v.func(`sources[${i}].close`, (s as unknown as Record<string, unknown>).close);
  });
  const statics: readonly BackendInput[] = options.static ?? [];
  if (!isArray(statics)) throw v.invalid('static', 'an array of backends', statics);
  const debounce = v.integer('debounce', options.debounce ?? discoveryDefaults.debounce, 0, MAX_TIMER_MS);
  const maxDelay = v.integer('maxDelay', options.maxDelay ?? Math.max(discoveryDefaults.maxDelay, debounce), debounce, MAX_TIMER_MS);
  return Object.freeze({
    pool,
    sources: Object.freeze([...sources]),
    static: Object.freeze([...statics]),
    debounce,
    maxDelay,
    drainTimeout: v.integer('drainTimeout', options.drainTimeout ?? discoveryDefaults.drainTimeout, 0, MAX_TIMER_MS),
    stateFile: options.stateFile === undefined ? undefined : v.string('stateFile', options.stateFile),
    clock: options.clock ?? systemClock,
  });
}

/** `Array.isArray` without widening to `any[]`. */
function isArray(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}
