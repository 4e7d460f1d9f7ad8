/**
 * The scheduler of health checks: when each backend is checked, how many
 * checks run at once, and what a verdict does to a pool. The check itself
 * (I/O) lives in `checks/`, the verdict (a rise/fall counter) in
 * `health-state.ts`; this file only connects them, as HAProxy keeps the three
 * apart.
 *
 * Over 600 lines, knowingly: one class holds the timer queue, the runs in
 * flight, the stall credit and the pool reports, which all share the probe's
 * own per-backend entry (not the pool's record, which the backend table
 * owns). Splitting them means giving that entry one owner inside the probe
 * first, as the pool's record got; not done yet.
 *
 * @module
 */
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import PQueue from 'p-queue';
import { resolveBackend, sameIdentity, type Backend, type BackendInput } from './backend.js';
import type { BackendHealth, HealthCause } from './backend-status.js';
import { ConnectionSlot } from './checks/connection-slot.js';
import { socketError } from './checks/socket-supervision.js';
import {
  CheckError,
  codeInChain,
  type CheckLayer,
  ConnectTimeoutError,
  DuplicateBackendError,
  InvalidArgumentError,
  ProbeClosedError,
  UnknownBackendError,
} from './errors.js';
import { publishChecked } from './diagnostics.js';
import type { CheckResult, HealthProbeEvents } from './events.js';
import { isLeaving } from './checks/check.js';
import { HealthState, type CheckOutcome, type HealthVerdict, type InitialHealth } from './health-state.js';
import { localErrorCode } from './local-errors.js';
import { resolveProbeOptions, type HealthProbeOptions, type ResolvedProbeOptions } from './probe-options.js';
import { QueuedTimer, TimerQueue } from './timer-queue.js';
import { MAX_TIMER_MS } from './limits.js';
import { noop } from './noop.js';

const log = createDebug('failover-proxy:probe');

// Node's timers hold at most a signed 32-bit delay.
/**
 * Lateness of the probe's timer that is ordinary jitter, not a stall: Node
 * timers fire a millisecond or two late on an idle loop, and a few more on a
 * busy one.
 */
const STALL_TOLERANCE = 10;
/** The most a check is started early to share a wake-up with others (see `coalesce` below). */
const MAX_COALESCE = 10;
/**
 * The least time between two backends' first checks. Periods run from start
 * to start, so the phases of the first round last: first checks of 1,000
 * backends all within `interval × jitter` (100 ms) kept coming back as one
 * burst every interval, and an HTTPS check on a new connection costs this
 * process 1.3–2.4 ms of CPU (a TLS handshake under OpenSSL 3.5; a request
 * on a kept connection 0.2–0.35 ms): the burst held the event loop for
 * hundreds of ms (bench/probe-cost.ts). One per ms spreads 1,000 first
 * checks over a second, as HAProxy spreads its first checks over `inter`.
 */
const FIRST_CHECK_SPACING = 1;
/**
 * Checks started (and deadlines fired) per wake-up of the probe's timer at
 * most; the rest start on the next wake-up, after the loop has read its
 * sockets. Coalescing (a tenth of the jitter) and a stall (every check due
 * meanwhile) otherwise start dozens in one turn, each dial a TLS handshake
 * to come. Eight per 1 ms timer still starts up to 8,000 checks a second.
 */
const MAX_STARTS_PER_PASS = 8;

/**
 * The reason a probe passes to `markDown` when a backend crosses `fall`.
 * Not in the root export: callers compare with the string `'probe-failed'`.
 *
 * @internal
 */
export const PROBE_FAILED = 'probe-failed';
/**
 * The reason a probe passes to `markUp` when a backend crosses `rise`.
 * Not in the root export: callers compare with the string `'probe-passed'`.
 *
 * @internal
 */
export const PROBE_PASSED = 'probe-passed';
/**
 * The reason a probe passes to `markLeaving` when a backend has answered
 * `leaving` (and not passed) `fall` times in a row: it is shutting down
 * gracefully and still serves.
 *
 * @example
 * ```ts
 * pool.on('backendLeaving', (backend, change) => { if (change.reason === PROBE_LEAVING) note(backend.id); });
 * ```
 */
export const PROBE_LEAVING = 'probe-leaving';
/**
 * What the probe reads of a backend in its {@link ProbeTarget}: only the
 * health axis. Admin states (drain, maintenance) are the pool's business.
 *
 * @example
 * ```ts
 * const status: ProbeTargetStatus = { health: 'unknown' };
 * ```
 */
export interface ProbeTargetStatus {
  readonly health: BackendHealth;
}

/**
 * The events a {@link HealthProbe} follows on a {@link ProbeTarget}.
 *
 * @example
 * ```ts
 * class MyPool extends EventEmitter<ProbeTargetEvents> implements ProbeTarget { ... }
 * ```
 */
export interface ProbeTargetEvents {
  backendAdded: [backend: Backend];
  backendRemoved: [backend: Backend];
  /** A dial to the backend failed (refused, timed out, TLS; or a local error, which counts for nothing). */
  connectFailed: [backend: Backend, error: Error];
  /** A member's writes toward the backend stalled: evidence, never a verdict; it triggers a check. */
  writeStalled: [backend: Backend, member: unknown];
}

/**
 * What {@link HealthProbe.attach} needs from a pool. `UpstreamPool` satisfies
 * it; so does any eventemitter3 emitter with these methods.
 *
 * @example
 * ```ts
 * const target: ProbeTarget = new UpstreamPool({ initialState: 'probe' });
 * probe.attach(target);
 * ```
 */
export interface ProbeTarget {
  /** Every backend now in the pool. */
  backends(): Iterable<Backend>;
  /** A backend's health, or `undefined` when it is not in the pool. */
  status(id: string): ProbeTargetStatus | undefined;
  /** Records the verdict `down`; must take every member pinned to the backend out before returning. */
  markDown(id: string, reason: string, cause?: HealthCause): number;
  /** Records the verdict `up`. */
  markUp(id: string, reason: string, cause?: HealthCause): void;
  /**
   * Records the verdict `leaving`: no new connections, existing ones stay.
   * Optional: a target without it gets `markDown` instead (it knows only up and down).
   */
  markLeaving?(id: string, reason: string, cause?: HealthCause): void;
  on(event: 'backendAdded' | 'backendRemoved', fn: (backend: Backend) => void): unknown;
  on(event: 'connectFailed', fn: (backend: Backend, error: Error) => void): unknown;
  on(event: 'writeStalled', fn: (backend: Backend, member: unknown) => void): unknown;
  off(event: 'backendAdded' | 'backendRemoved', fn: (backend: Backend) => void): unknown;
  off(event: 'connectFailed', fn: (backend: Backend, error: Error) => void): unknown;
  off(event: 'writeStalled', fn: (backend: Backend, member: unknown) => void): unknown;
}

/**
 * A snapshot of what the probe knows about one backend.
 *
 * @example
 * ```ts
 * const h = probe.health('10.0.0.3:6443');
 * if (h?.changing) console.log(`${h.consecutiveFailures} failures in a row`);
 * ```
 */
export interface ProbeHealth {
  /** `unknown` until the first result of a backend that started so. */
  readonly verdict: InitialHealth;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
  /** A run against the verdict is under way (checks are then `fastInterval` apart). */
  readonly changing: boolean;
  /** The last result, active or passive. */
  readonly lastResult: CheckResult | undefined;
  /** A check of this backend is running or queued. */
  readonly checking: boolean;
  /** Checks and dials that failed here, not at the backend (layer `local`), since it was added: no verdict. */
  readonly localErrors: number;
  /** Checks started early by evidence (a stalled write toward the backend) since it was added. */
  readonly triggeredChecks: number;
}

/** One check of one backend, from queued to settled; shared by every caller of `checkNow`. */
interface Run {
  readonly promise: Promise<CheckResult>;
  readonly resolve: (result: CheckResult) => void;
  readonly reject: (error: Error) => void;
  /** Set while the check runs (not while it waits in the queue). */
  controller: AbortController | undefined;
  settled: boolean;
}

interface Entry {
  readonly backend: Backend;
  readonly health: HealthState;
  /** Added by `attach` (and so removed by `detach` and the pool's `backendRemoved`). */
  readonly fromPool: boolean;
  /** The next scheduled check, in the probe's one timer queue. */
  readonly timer: QueuedTimer;
  /** Where the check keeps its connection to the backend between checks. */
  readonly connection: ConnectionSlot;
  run: Run | undefined;
  lastResult: CheckResult | undefined;
  removed: boolean;
  localErrors: number;
  triggeredChecks: number;
  /** Clock time of the last check started by evidence; at most one per `interval`. */
  lastTriggeredAt: number;
}


function createRun(): Run {
  let resolve!: (result: CheckResult) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<CheckResult>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Scheduled runs have nobody awaiting them; a `checkNow()` caller still sees
  // the rejection through its own reference.
  promise.catch(noop);
  return { promise, resolve, reject, controller: undefined, settled: false };
}

/** A pool's health of a backend is where the probe's counter starts. */
function initialFrom(status: ProbeTargetStatus | undefined): InitialHealth {
  return status?.health ?? 'unknown';
}

/** A check result as the plain, JSON-safe cause the pool records. */
function causeOf(result: CheckResult): HealthCause {
  const leaving = result.outcome === 'leaving';
  return {
    source: result.passive ? 'passive' : 'probe',
    code: result.error?.code ?? (leaving ? PROBE_LEAVING : PROBE_PASSED),
    layer: result.error?.layer,
    message: result.error?.message ?? (leaving ? (result.message ?? 'the backend is leaving') : 'check passed'),
    durationMs: result.durationMs,
    at: result.at,
  };
}

/**
 * Checks backends on a schedule and turns results into verdicts with a
 * rise/fall counter per backend (as HAProxy's `inter`, `fastinter`,
 * `downinter`, `rise`, `fall`). Standalone, it reports verdicts as events;
 * attached to a pool, it takes backends down and up in the pool, synchronously
 * with the verdict.
 *
 * Guarantees: one check per backend at a time (`checkNow()` joins a running
 * check), at most `concurrency` checks at once, every check bounded by
 * `timeout`, and nothing left behind after `stop()`.
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * import { HealthProbe, UpstreamPool } from 'failover-proxy';
 *
 * const pool = new UpstreamPool({ initialState: 'probe', backends: [{ host: '10.0.0.1', port: 6443 }] });
 * const probe = new HealthProbe({
 *   check: { type: 'https', path: '/readyz', ca: readFileSync('ca.crt') },
 *   interval: 2000, fastInterval: 500, downInterval: 5000, rise: 2, fall: 3,
 * });
 * probe.attach(pool);
 * probe.on('unhealthy', (backend, result) => console.warn(backend.id, result.error?.code));
 * ```
 */
export class HealthProbe extends EventEmitter<HealthProbeEvents> {
  readonly #options: ResolvedProbeOptions;
  readonly #queue: PQueue;
  readonly #entries = new Map<string, Entry>();
  readonly #running = new Set<Promise<void>>();
  /** Every scheduled check and every running check's timeout, behind one clock timer. */
  readonly #timers: TimerQueue;
  #started: boolean;
  #closed = false;
  #stopping: Promise<void> | undefined;
  #pool: ProbeTarget | undefined;
  /** Clock time before which no other first check starts (see FIRST_CHECK_SPACING). */
  #nextFirstAt = -Infinity;

  /**
   * @param options see {@link HealthProbeOptions}; throws `INVALID_ARGUMENT`.
   * @example
   * ```ts
   * const probe = new HealthProbe({ check: { type: 'tcp' }, interval: 1000 });
   * ```
   */
  constructor(options: HealthProbeOptions = {}) {
    super();
    this.#options = resolveProbeOptions(options);
    this.#queue = new PQueue({ concurrency: this.#options.concurrency });
    const { timeout, interval, fastInterval, downInterval, jitter } = this.#options;
    this.#timers = new TimerQueue(this.#options.clock, {
      tolerance: STALL_TOLERANCE,
      // Stalls are sampled at a tenth of the timeout while checks run: a check
      // is never charged more than that much of a stall it lived through.
      sampleEvery: Math.floor(timeout / 10),
      // Checks falling due together run in one wake-up: one started a few ms
      // early (a tenth of the jitter, at most 10 ms) changes nothing that the
      // jitter does not already blur. No jitter, no coalescing: exact times.
      coalesce: Math.min(MAX_COALESCE, Math.floor((Math.min(interval, fastInterval, downInterval) * jitter) / 10)),
      maxPerPass: MAX_STARTS_PER_PASS,
    });
    this.#started = this.#options.autoStart;
  }

  /**
   * Starts checking a backend; returns it resolved. Its first check comes
   * within `interval × jitter` (when started), and at least 1 ms after the
   * previous backend's first check (so within a second for 1,000 added at once). It starts `unknown`: the first
   * result decides.
   *
   * @throws `INVALID_ARGUMENT`, `DUPLICATE_BACKEND`, `PROBE_CLOSED`
   * @example
   * ```ts
   * const backend = probe.add({ host: '10.0.0.3', port: 6443 });
   * ```
   */
  add(spec: Backend | BackendInput): Backend {
    this.#assertOpen();
    const backend = resolveBackend(spec);
    if (this.#entries.has(backend.id)) throw new DuplicateBackendError(backend.id, 'probe');
    this.#add(backend, 'unknown', false);
    return backend;
  }

  /**
   * Stops checking a backend. A check of it in flight is aborted, and a
   * `checkNow()` waiting on it rejects with `UNKNOWN_BACKEND`. Returns whether
   * the backend was being checked.
   *
   * @example
   * ```ts
   * probe.remove('10.0.0.3:6443');
   * ```
   */
  remove(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    this.#entries.delete(id);
    entry.removed = true;
    this.#clearTimer(entry);
    entry.connection.close();
    const run = entry.run;
    if (run !== undefined) {
      const error = new UnknownBackendError(id);
      if (run.controller !== undefined) run.controller.abort(error);
      else this.#settle(entry, run, error);
    }
    if (log.enabled) log('%s: removed', id);
    return true;
  }

  /**
   * Starts the schedule when built with `autoStart: false`; each backend's
   * first check is spread over `interval × jitter`. Does nothing when started.
   *
   * @throws `PROBE_CLOSED`
   * @example
   * ```ts
   * const probe = new HealthProbe({ autoStart: false });
   * probe.attach(pool);
   * probe.start();
   * ```
   */
  start(): void {
    this.#assertOpen();
    if (this.#started) return;
    this.#started = true;
    for (const entry of this.#entries.values()) {
      if (!entry.timer.pending && entry.run === undefined) this.#schedule(entry, this.#firstDelay());
    }
  }

  /**
   * Checks a backend now (or every backend, without `id`) and resolves with
   * the result once it is recorded and acted on. A check of that backend
   * already running or queued is joined, not duplicated. The schedule then
   * restarts from this result.
   *
   * Rejects with `UNKNOWN_BACKEND` for an id not probed (or removed during
   * the check), `PROBE_CLOSED` after (or during) `stop()`. A failing check
   * does not reject: the result says `ok: false`.
   *
   * @example
   * ```ts
   * const result = await probe.checkNow('10.0.0.3:6443');
   * if (!result.ok) console.log(result.error?.layer, result.error?.message);
   * const all = await probe.checkNow();
   * ```
   */
  checkNow(id: string): Promise<CheckResult>;
  checkNow(): Promise<CheckResult[]>;
  checkNow(id?: string): Promise<CheckResult | CheckResult[]> {
    if (this.#closed) return Promise.reject(new ProbeClosedError());
    if (id === undefined) return this.#checkAll();
    const entry = this.#entries.get(id);
    if (entry === undefined) return Promise.reject(new UnknownBackendError(String(id)));
    return this.#run(entry);
  }

  async #checkAll(): Promise<CheckResult[]> {
    const settled = await Promise.allSettled(Array.from(this.#entries.values(), (entry) => this.#run(entry)));
    if (this.#closed) throw new ProbeClosedError();
    // Backends removed meanwhile simply have no result.
    return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  }

  /**
   * Whether the backend's verdict is `up` (`false` while still `unknown`).
   *
   * @throws `UNKNOWN_BACKEND`
   * @example
   * ```ts
   * if (probe.isHealthy('10.0.0.3:6443')) route();
   * ```
   */
  isHealthy(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new UnknownBackendError(String(id));
    return entry.health.healthy;
  }

  /**
   * What the probe knows about a backend, or `undefined` when it is not probed.
   *
   * @example
   * ```ts
   * console.log(probe.health('10.0.0.3:6443')?.verdict); // 'up'
   * ```
   */
  health(id: string): ProbeHealth | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    const h = entry.health;
    return {
      verdict: h.verdict,
      consecutiveSuccesses: h.consecutiveSuccesses,
      consecutiveFailures: h.consecutiveFailures,
      changing: h.changing,
      lastResult: entry.lastResult,
      checking: entry.run !== undefined,
      localErrors: entry.localErrors,
      triggeredChecks: entry.triggeredChecks,
    };
  }

  /**
   * Follows a pool: probes every backend in it and those added later, stops
   * probing removed ones, and reports health verdicts with their cause. When
   * a backend crosses `fall` the probe calls
   * `pool.markDown(id, 'probe-failed', cause)` in the same tick as the verdict
   * (before `checked` and `unhealthy` are emitted), unless the pool's health
   * of it is already `down`; while the verdict stays down, a pool that has
   * the backend `up` again is corrected on the next failed check (checks win,
   * as in HAProxy). When a backend crosses `rise` (or an `unknown` one
   * passes) the probe calls `pool.markUp(id, 'probe-passed', cause)`. The
   * admin axis (drain, maintenance) is the pool's: it decides what a verdict
   * does there.
   *
   * Each backend's counter starts from the pool's health of it (`unknown`:
   * the first result decides).
   *
   * With `countConnectFailures` (the default), each `connectFailed` the pool
   * reports counts as a failed check (`passive: true` in the result), unless
   * this process caused it (EMFILE, ENOBUFS...: `checkSkipped`, no verdict).
   * A `writeStalled` never counts: a client can cause it. It starts a check
   * of the backend at once instead (`checkTriggered`), at most one per
   * backend per `interval`, never a second one while one runs.
   *
   * @throws `PROBE_CLOSED`; `INVALID_ARGUMENT` when already attached;
   * `DUPLICATE_BACKEND` when a backend added by hand has a pool backend's id
   * but another address (nothing is attached then)
   * @example
   * ```ts
   * const pool = new UpstreamPool({ initialState: 'probe', backends });
   * const probe = new HealthProbe({ check: { type: 'http', path: '/readyz' } });
   * probe.attach(pool);
   * ```
   */
  attach(pool: ProbeTarget): void {
    this.#assertOpen();
    if (this.#pool !== undefined) throw new InvalidArgumentError('The probe is already attached to a pool: call detach() first');
    if (typeof pool?.status !== 'function' || typeof pool.markDown !== 'function' || typeof pool.on !== 'function') {
      throw new InvalidArgumentError('Expected `pool` to be a ProbeTarget (backends, status, markDown, markUp, on, off)');
    }
    // A backend added by hand under an id the pool uses for another address
    // would report its verdicts against the pool's live backend: refuse.
    for (const backend of pool.backends()) {
      const mine = this.#entries.get(backend.id);
      if (mine !== undefined && !sameIdentity(mine.backend, backend)) {
        throw new DuplicateBackendError(backend.id, 'probe', ` for another address (${mine.backend.host}:${mine.backend.port})`);
      }
    }
    this.#pool = pool;
    pool.on('backendAdded', this.#onBackendAdded);
    pool.on('backendRemoved', this.#onBackendRemoved);
    pool.on('connectFailed', this.#onConnectFailed);
    pool.on('writeStalled', this.#onWriteStalled);
    for (const backend of pool.backends()) this.#onBackendAdded(backend);
    if (log.enabled) log('attached to a pool of %d backends', this.#entries.size);
  }

  /**
   * Stops following the pool: unsubscribes and stops probing the backends
   * that came from it. Backends added with `add()` stay.
   *
   * @example
   * ```ts
   * probe.detach();
   * ```
   */
  detach(): void {
    const pool = this.#pool;
    if (pool === undefined) return;
    this.#unsubscribe(pool);
    for (const entry of Array.from(this.#entries.values())) {
      if (entry.fromPool) this.remove(entry.backend.id);
    }
    log('detached');
  }

  /**
   * Stops everything: aborts running checks, drops queued ones, clears every
   * timer, detaches from the pool. Resolves once every aborted check has
   * settled (built-in checks settle after their socket closed), then emits
   * `stopped`. Idempotent: later calls return the same promise. Afterwards
   * `add`, `start`, `attach` throw and `checkNow` rejects with `PROBE_CLOSED`.
   *
   * @example
   * ```ts
   * process.once('SIGTERM', () => void probe.stop());
   * ```
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  /**
   * `await using probe = new HealthProbe()` stops it at the end of the scope.
   *
   * @example
   * ```ts
   * await using probe = new HealthProbe();
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (this.#pool !== undefined) this.#unsubscribe(this.#pool);
    // Queued checks never start; their runs are settled below.
    this.#queue.clear();
    const closed = new ProbeClosedError();
    for (const entry of this.#entries.values()) {
      this.#clearTimer(entry);
      entry.connection.close();
      const run = entry.run;
      if (run === undefined) continue;
      if (run.controller !== undefined) run.controller.abort(closed);
      else this.#settle(entry, run, closed);
    }
    this.#timers.close();
    await Promise.allSettled(this.#running);
    log('stopped');
    this.emit('stopped');
  }

  // ------------------------------------------------------------- internals

  #assertOpen(): void {
    if (this.#closed) throw new ProbeClosedError();
  }

  #unsubscribe(pool: ProbeTarget): void {
    pool.off('backendAdded', this.#onBackendAdded);
    pool.off('backendRemoved', this.#onBackendRemoved);
    pool.off('connectFailed', this.#onConnectFailed);
    pool.off('writeStalled', this.#onWriteStalled);
    this.#pool = undefined;
  }

  #add(backend: Backend, initial: InitialHealth, fromPool: boolean): void {
    const { rise, fall } = this.#options;
    const entry: Entry = {
      backend,
      health: new HealthState({ rise, fall, initial }),
      fromPool,
      timer: new QueuedTimer(() => void this.#run(entry)),
      connection: new ConnectionSlot(),
      run: undefined,
      lastResult: undefined,
      removed: false,
      localErrors: 0,
      triggeredChecks: 0,
      lastTriggeredAt: -Infinity,
    };
    this.#entries.set(backend.id, entry);
    if (log.enabled) log('%s: added (%s)', backend.id, initial);
    if (this.#started) this.#schedule(entry, this.#firstDelay());
  }

  readonly #onBackendAdded = (backend: Backend): void => {
    const mine = this.#entries.get(backend.id);
    if (mine !== undefined) {
      if (sameIdentity(mine.backend, backend)) {
        // Already probed (added by hand before attach): keep its history.
        if (log.enabled) log('%s: already probed, not re-added', backend.id);
        return;
      }
      // The pool added another address under a hand-added id: the pool's wins.
      if (log.enabled) log('%s: probed by hand at another address; now probing the pool\'s', backend.id);
      this.remove(backend.id);
    }
    this.#add(backend, initialFrom(this.#pool?.status(backend.id)), true);
  };

  readonly #onBackendRemoved = (backend: Backend): void => {
    if (this.#entries.get(backend.id)?.fromPool === true) this.remove(backend.id);
  };

  /**
   * A write toward the backend stopped draining. A client can cause that
   * (pipelining behind a long request the backend does not read meanwhile,
   * as Go's net/http does), so it is evidence, not a verdict: the pool tore
   * that one connection down, and the probe asks the backend itself now.
   */
  readonly #onWriteStalled = (backend: Backend): void => {
    const entry = this.#entries.get(backend.id);
    if (entry === undefined || entry.removed) return;
    const now = this.#options.clock.now();
    // One check in flight answers every stall; one per interval bounds what a
    // hostile client can make us send.
    if (entry.run !== undefined || now - entry.lastTriggeredAt < this.#options.interval) {
      if (log.enabled) log('%s: write stalled; a check ran or runs within the interval, none triggered', backend.id);
      return;
    }
    entry.lastTriggeredAt = now;
    entry.triggeredChecks++;
    if (log.enabled) log('%s: write stalled; checking it now', backend.id);
    void this.#run(entry);
    this.emit('checkTriggered', entry.backend, 'write-stalled');
  };

  readonly #onConnectFailed = (backend: Backend, error: Error): void => {
    const local = localErrorCode(error);
    const layer =
      local !== undefined
        ? 'local'
        : error instanceof ConnectTimeoutError
          ? 'timeout'
          : socketError(backend.id, 'connect', (error as { cause?: unknown }).cause ?? error).layer;
    if (layer === 'local') {
      const entry = this.#entries.get(backend.id);
      if (entry === undefined) return;
      const message = `Traffic to \`${backend.id}\` failed to connect here, not at the backend: ${error.message}`;
      this.#skipped(entry, { backend: entry.backend, ok: false, outcome: 'fail', error: new CheckError('local', message, { cause: error }), durationMs: 0, at: this.#options.clock.now(), passive: true });
      return;
    }
    this.#passiveFailure(backend, layer, `Traffic to \`${backend.id}\` failed to connect: ${error.message}`, error);
  };

  /** A check or dial that failed in this process: counted and reported, no verdict either way. */
  #skipped(entry: Entry, result: CheckResult): void {
    entry.localErrors++;
    if (log.enabled) log('%s: %s failed here, no verdict: %s', entry.backend.id, result.passive ? 'a dial' : 'the check', result.error?.message);
    this.emit('checkSkipped', entry.backend, result);
  }

  /** Traffic failed: counted as a failed check toward `fall` (HAProxy's `observe layer4`). */
  #passiveFailure(backend: Backend, layer: CheckLayer, message: string, error: Error | undefined): void {
    if (!this.#options.countConnectFailures) return;
    const entry = this.#entries.get(backend.id);
    if (entry === undefined) return;
    const now = this.#options.clock.now();
    this.#record(entry, {
      backend: entry.backend,
      ok: false,
      outcome: 'fail',
      error: new CheckError(layer, message, { cause: error }),
      message: undefined,
      durationMs: 0,
      at: now,
      passive: true,
    });
    // A passive failure can start a run against `up`: bring the next active
    // check forward to `fastInterval`, never push it back.
    if (this.#started && !entry.removed && entry.run === undefined) {
      const delay = this.#nextDelay(entry);
      if (!entry.timer.pending || now + delay < entry.timer.at) this.#schedule(entry, delay);
    }
  }

  #run(entry: Entry): Promise<CheckResult> {
    if (entry.run !== undefined) return entry.run.promise;
    const run = createRun();
    entry.run = run;
    // This check replaces the scheduled one; its result schedules the next.
    this.#clearTimer(entry);
    void this.#queue.add(() => {
      const task = this.#execute(entry, run);
      this.#running.add(task);
      return task.finally(() => this.#running.delete(task));
    });
    return run.promise;
  }

  async #execute(entry: Entry, run: Run): Promise<void> {
    // Removed, or the probe stopped, while queued.
    if (run.settled) return;
    const { clock, timeout, check } = this.#options;
    const timers = this.#timers;
    const id = entry.backend.id;
    const controller = new AbortController();
    run.controller = controller;
    // Built only when it fires: most checks pass, and an Error captures a stack.
    let timeoutError: CheckError | undefined;
    let expiring: NodeJS.Immediate | undefined;
    const startedAt = clock.now();
    const stalledAtStart = timers.stalledMs;
    const deadline = new QueuedTimer(() => {
      // Time this process was stalled (its loop blocked, or no CPU) since the
      // check started is not the backend's: the check gets it back, so a
      // starved process does not blame healthy backends (k3s #10240).
      const stalled = timers.stalledMs - stalledAtStart;
      const now = clock.now();
      if (startedAt + timeout + stalled > now) {
        timers.set(deadline, startedAt + timeout + stalled - now);
        return;
      }
      // Node runs due timers before it reads sockets: an answer that arrived
      // while the loop was busy is read first, then the timeout counts.
      expiring = setImmediate(() => {
        expiring = undefined;
        const note = stalled > 0 ? ` (not counting ${Math.round(stalled)} ms this process was stalled)` : '';
        timeoutError = new CheckError('timeout', `Check of \`${id}\` timed out after ${timeout} ms${note}`);
        controller.abort(timeoutError);
      });
    });
    timers.hold();
    timers.set(deadline, timeout);
    let error: CheckError | undefined;
    let leaving: string | undefined;
    try {
      const answer = await check(entry.backend, { signal: controller.signal, connection: entry.connection });
      if (isLeaving(answer)) leaving = String(answer.message);
    } catch (err) {
      // Whatever a check throws once its timeout fired, the cause is the timeout.
      error =
        timeoutError !== undefined
          ? timeoutError
          : err instanceof CheckError
            ? err
            : new CheckError(localErrorCode(err) === undefined ? 'custom' : 'local', String(err), { cause: err });
    } finally {
      timers.clear(deadline);
      timers.release();
      if (expiring !== undefined) clearImmediate(expiring);
      run.controller = undefined;
    }
    if (this.#closed) {
      this.#settle(entry, run, new ProbeClosedError());
      return;
    }
    if (entry.removed) {
      this.#settle(entry, run, new UnknownBackendError(id));
      return;
    }
    const at = clock.now();
    // A leaving backend that closes its listener (kube-apiserver does once its
    // --shutdown-delay-duration is over) refuses the check while it is still
    // ending the watches it holds: it said it was going, and a refusal is an
    // answer, not silence. It stays leaving, so its streams stay its own to
    // end (and the grace's); a timeout or a reset still makes it down.
    if (error !== undefined && entry.health.verdict === 'leaving' && error.layer === 'connect' && codeInChain(error, REFUSED) !== undefined) {
      leaving = `stopped listening while leaving: ${error.message}`;
      error = undefined;
    }
    const outcome: CheckOutcome = error !== undefined ? 'fail' : leaving !== undefined ? 'leaving' : 'pass';
    const result: CheckResult = {
      backend: entry.backend,
      ok: outcome === 'pass',
      outcome,
      error,
      message: error === undefined ? leaving : undefined,
      durationMs: at - startedAt,
      at,
      passive: false,
    };
    if (error?.layer === 'local') {
      // Nothing learnt about the backend: its counter and verdict stay as
      // they are, and the next check comes at the usual time.
      if (this.#started) this.#schedule(entry, Math.max(0, this.#nextDelay(entry) - result.durationMs));
      this.#settle(entry, run, result);
      this.#skipped(entry, result);
      return;
    }
    // Internal state first (verdict, next check), then the caller's promise,
    // then the pool and the events, all in this tick.
    const transition = this.#verdict(entry, result);
    // Periods run from start to start, as HAProxy's `inter`: a check that ran
    // into its timeout does not push the next one back by that timeout, which
    // would add (fall - 1) x timeout to the detection of a silent backend.
    if (this.#started) this.#schedule(entry, Math.max(0, this.#nextDelay(entry) - result.durationMs));
    this.#settle(entry, run, result);
    this.#act(entry, result, transition);
  }

  /** Records an active or passive result, acts on it and emits its events. */
  #record(entry: Entry, result: CheckResult): void {
    this.#act(entry, result, this.#verdict(entry, result));
  }

  #verdict(entry: Entry, result: CheckResult): HealthVerdict | undefined {
    const from = entry.health.verdict;
    const transition = entry.health.record(result.outcome);
    entry.lastResult = result;
    if (log.enabled) {
      const id = entry.backend.id;
      if (result.outcome === 'fail') {
        log('%s: check failed at %s%s: %s (%d in a row)', id, result.error?.layer, result.passive ? ' (passive)' : '', result.error?.message, entry.health.consecutiveFailures);
      } else if (result.outcome === 'leaving') log('%s: check says leaving: %s', id, result.message);
      if (transition === 'down') log('%s: %s -> down (%s, %d fails)', id, from, result.error?.code, entry.health.consecutiveFailures);
      else if (transition === 'leaving') log('%s: %s -> leaving (%s)', id, from, PROBE_LEAVING);
      else if (transition === 'up') log('%s: %s -> up (%s, %d passes)', id, from, PROBE_PASSED, entry.health.consecutiveSuccesses);
    }
    return transition;
  }

  /**
   * Tells the pool, then emits. No `await` between the verdict and the pool
   * call: by the time any listener (or any other I/O callback) runs, the
   * pool has already torn down the backend's connections.
   */
  #act(entry: Entry, result: CheckResult, transition: HealthVerdict | undefined): void {
    const pool = this.#pool;
    const id = entry.backend.id;
    const status = pool?.status(id);
    // Only the health axis is reported; the pool keeps drains and maintenance
    // apart and decides what a verdict does in each.
    if (pool !== undefined && status !== undefined) {
      if (!result.ok && entry.health.verdict === 'down') {
        // Also on later failures: someone may have marked it up since.
        if (status.health !== 'down') {
          const tornDown = pool.markDown(id, PROBE_FAILED, causeOf(result));
          if (log.enabled) log('%s: reported down to the pool (%s, %d members taken out)', id, result.error?.code, tornDown);
        }
      } else if (!result.ok && entry.health.verdict === 'leaving') {
        // The run that made it leaving may end with a failure (leaving,
        // timeout): any result that did not pass reports it. Also on later
        // ones: someone may have marked it up since.
        // A pool that has it down keeps it down: leaving brings nothing back.
        if (status.health === 'up' || status.health === 'unknown') {
          if (pool.markLeaving !== undefined) pool.markLeaving(id, PROBE_LEAVING, causeOf(result));
          else pool.markDown(id, PROBE_FAILED, causeOf(result));
          if (log.enabled) log('%s: reported leaving to the pool (%s)', id, result.message);
        }
      } else if (result.ok && entry.health.verdict === 'up' && (transition === 'up' || status.health === 'unknown')) {
        pool.markUp(id, PROBE_PASSED, causeOf(result));
        if (log.enabled) log('%s: reported up to the pool (%s)', id, PROBE_PASSED);
      }
    }
    this.emit('checked', result);
    publishChecked(this, result, transition);
    if (transition === 'down') this.emit('unhealthy', entry.backend, result);
    else if (transition === 'leaving') this.emit('leaving', entry.backend, result);
    else if (transition === 'up') this.emit('healthy', entry.backend, result);
  }

  #settle(entry: Entry, run: Run, outcome: CheckResult | Error): void {
    if (run.settled) return;
    run.settled = true;
    if (entry.run === run) entry.run = undefined;
    if (outcome instanceof Error) run.reject(outcome);
    else run.resolve(outcome);
  }

  #schedule(entry: Entry, delay: number): void {
    this.#timers.set(entry.timer, delay);
  }

  #clearTimer(entry: Entry): void {
    this.#timers.clear(entry.timer);
  }

  /**
   * The first check of a backend: spread over the jitter window, and no
   * sooner than FIRST_CHECK_SPACING after the previous backend's first check,
   * so a pool of many does not probe in one burst. Past one interval the
   * spacing starts over from now: a second layer rather than a first round
   * longer than the period.
   */
  #firstDelay(): number {
    const { interval, jitter, random, clock } = this.#options;
    const now = clock.now();
    let at = now + Math.max(0, Math.round(random() * jitter * interval));
    if (at < this.#nextFirstAt) at = this.#nextFirstAt - now < interval ? this.#nextFirstAt : at;
    this.#nextFirstAt = at + FIRST_CHECK_SPACING;
    return at - now;
  }

  #nextDelay(entry: Entry): number {
    const { interval, fastInterval, downInterval, jitter, random } = this.#options;
    const h = entry.health;
    const base = h.changing ? fastInterval : h.verdict === 'down' ? downInterval : interval;
    return Math.min(MAX_TIMER_MS, Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1)))));
  }
}


/** A refusal: the backend's host answered, with nothing listening. */
const REFUSED: ReadonlySet<string> = new Set(['ECONNREFUSED']);
