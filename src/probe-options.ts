/**
 * Options of {@link HealthProbe}: documented types, one frozen defaults
 * object, and one `resolveProbeOptions()` that validates and merges with `??`
 * (so `0` stays expressible).
 *
 * @module
 */
import type { CheckFunction } from './checks/check.js';
import { resolveCheck, type CheckSpec } from './checks/resolve-check.js';
import { resolveClock, type Clock } from './clock.js';
import * as v from './validate.js';
import { MAX_TIMER_MS } from './limits.js';

/**
 * How a {@link HealthProbe} checks its backends. Intervals and timeouts are in
 * ms. The names follow HAProxy: `interval` is `inter`, `fastInterval` is
 * `fastinter`, `downInterval` is `downinter`.
 */
export interface HealthProbeOptions {
  /**
   * The check: a built-in type (`tcp`, `tls`, `http`, `https`) with its
   * options, or an async function `(backend, { signal }) => Promise<void>`.
   * @default { type: 'tcp' }
   */
  readonly check?: CheckSpec | undefined;
  /**
   * Time from the start of one check of a backend to the start of the next
   * while the backend is up and steady (a check that takes longer than what
   * is left of the period is followed at once by the next).
   * @default 2000
   */
  readonly interval?: number | undefined;
  /**
   * Time one check may take before it fails with `PROBE_TIMEOUT` (layer
   * `timeout`). At most `interval`: a check slower than the period it is
   * meant to sample would make the period meaningless.
   * @default 1000, or `interval` when that is smaller
   */
  readonly timeout?: number | undefined;
  /**
   * Random spread of each delay, as a fraction of it: a delay `d` becomes a
   * value in `[d × (1 − jitter), d × (1 + jitter)]`, so backends (and several
   * proxies probing the same backends) drift apart rather than probing in
   * lockstep. The first check of each backend is spread over
   * `[0, interval × jitter]`, and first checks start at least 1 ms apart
   * (1,000 backends spread their first round over a second).
   * @default 0.1
   */
  readonly jitter?: number | undefined;
  /**
   * Consecutive passing checks that bring a down backend up.
   * @default 2
   */
  readonly rise?: number | undefined;
  /**
   * Consecutive failing checks that bring an up backend down.
   * @default 3
   */
  readonly fall?: number | undefined;
  /**
   * Delay between checks while a backend is down (and no success run is under way).
   * @default interval
   */
  readonly downInterval?: number | undefined;
  /**
   * Delay between checks while a verdict is changing: failures seen while up,
   * or successes while down, short of `fall` or `rise`.
   * @default interval
   */
  readonly fastInterval?: number | undefined;
  /**
   * Checks running at once, across all backends. Checks past it wait their
   * turn; their timeout starts when they start.
   * @default 64
   */
  readonly concurrency?: number | undefined;
  /**
   * Passive health: when attached to a pool, count each failed dial the pool
   * reports that the backend caused (`connectFailed`: refused, reset, timed
   * out) as a failed check of that backend, as HAProxy's `observe layer4`
   * does: real traffic then brings a dead backend down before the next probe
   * round instead of sending reconnecting clients to it first. A dial that
   * failed in this process (EMFILE, ENOBUFS...) never counts (`checkSkipped`),
   * and neither does a stalled write (`writeStalled` triggers a check
   * instead). `false` counts only the probe's own checks.
   * @default true
   */
  readonly countConnectFailures?: boolean | undefined;
  /**
   * Start scheduling checks at once. When `false`, nothing is checked on a
   * timer until `start()` (`checkNow()` still works).
   * @default true
   */
  readonly autoStart?: boolean | undefined;
  /**
   * The clock timers and durations are read from.
   * @default systemClock
   */
  readonly clock?: Clock | undefined;
  /**
   * Source of randomness for `jitter`, returning values in `[0, 1)`.
   * @default Math.random
   */
  readonly random?: (() => number) | undefined;
}

/**
 * {@link HealthProbeOptions} validated, every field resolved: what
 * {@link resolveProbeOptions} returns.
 */
export interface ResolvedProbeOptions {
  readonly check: CheckFunction;
  readonly interval: number;
  readonly timeout: number;
  readonly jitter: number;
  readonly rise: number;
  readonly fall: number;
  readonly downInterval: number;
  readonly fastInterval: number;
  readonly concurrency: number;
  readonly countConnectFailures: boolean;
  readonly autoStart: boolean;
  readonly clock: Clock;
  readonly random: () => number;
}

/**
 * Defaults of {@link HealthProbeOptions}. `timeout`, `downInterval` and
 * `fastInterval` are derived from `interval` when not given.
 */
export const healthProbeDefaults = Object.freeze({
  check: Object.freeze({ type: 'tcp' } as const),
  interval: 2000,
  timeout: 1000,
  jitter: 0.1,
  rise: 2,
  fall: 3,
  concurrency: 64,
  countConnectFailures: true,
  autoStart: true,
} as const);

const probeKeys = [
  'check',
  'interval',
  'timeout',
  'jitter',
  'rise',
  'fall',
  'downInterval',
  'fastInterval',
  'concurrency',
  'countConnectFailures',
  'autoStart',
  'clock',
  'random',
] as const;

// Node's timers hold at most a signed 32-bit delay.

/**
 * Validates probe options and fills in defaults. Throws `INVALID_ARGUMENT`
 * naming the option.
 */
export function resolveProbeOptions(options: HealthProbeOptions = {}): ResolvedProbeOptions {
  const raw = v.object('options', options);
  v.knownKeys('', raw, probeKeys);
  const d = healthProbeDefaults;

  const interval = v.integer('interval', options.interval ?? d.interval, 1, MAX_TIMER_MS);
  const timeout = v.integer('timeout', options.timeout ?? Math.min(d.timeout, interval), 1, MAX_TIMER_MS);
  if (timeout > interval) throw v.invalid('timeout', `an integer from 1 to \`interval\` (${interval})`, timeout);
  const clock = resolveClock(options.clock);

  return Object.freeze({
    check: resolveCheck(options.check ?? d.check),
    interval,
    timeout,
    jitter: v.number('jitter', options.jitter ?? d.jitter, 0, 1),
    rise: v.integer('rise', options.rise ?? d.rise, 1, 1000),
    fall: v.integer('fall', options.fall ?? d.fall, 1, 1000),
    downInterval: v.integer('downInterval', options.downInterval ?? interval, 1, MAX_TIMER_MS),
    fastInterval: v.integer('fastInterval', options.fastInterval ?? interval, 1, MAX_TIMER_MS),
    concurrency: v.integer('concurrency', options.concurrency ?? d.concurrency, 1, Infinity),
    countConnectFailures: v.boolean('countConnectFailures', options.countConnectFailures ?? d.countConnectFailures),
    autoStart: v.boolean('autoStart', options.autoStart ?? d.autoStart),
    clock,
    random: options.random === undefined ? Math.random : v.func<() => number>('random', options.random),
  });
}
