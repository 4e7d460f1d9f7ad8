/**
 * The balancer's log: one readable line per backend state change (time,
 * backend, from -> to, reason, connections torn down), a line when a
 * backend's checks start or stop failing, and everything else that happens per
 * connection aggregated into a periodic line of counters. A `markDown` that
 * tears down 1,000 connections is one line, not 1,000.
 *
 * @module
 */
import type {
  Backend,
  CheckResult,
  ConnectionClosedInfo,
  ConnectError,
  ConnectTimeoutError,
  DownChange,
  FailoverProxyError,
  PoolMember,
  StateChange,
  UpstreamPool,
} from '../index.js';
import { formatAddress } from './address.js';
import type { CheckResultSource } from './probe-stats.js';

/** What the log needs of a `HealthProbe`: its results, and the last one of a backend. */
export interface ProbeLike extends CheckResultSource {
  health(id: string): { readonly lastResult: CheckResult | undefined } | undefined;
}

/** Options of an {@link EventLog}. */
export interface EventLogOptions {
  /** Where lines go (without the trailing newline). */
  readonly write: (line: string) => void;
  /** @default Date.now */
  readonly now?: (() => number) | undefined;
  /**
   * How often aggregated counters are written, in ms, when anything was counted.
   * @default 10000
   */
  readonly summaryInterval?: number | undefined;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function counts(record: Map<string, number>): string {
  return Array.from(record, ([k, n]) => `${k} ${n}`).join(', ');
}

function bump(record: Map<string, number>, key: string, by = 1): void {
  const n = (record.get(key) ?? 0) + by;
  if (n === 0) record.delete(key);
  else record.set(key, n);
}

/** One backend's teardowns for one reason, as a map key (an id holds no NUL). */
function teardownKey(id: string, reason: string): string {
  return `${id}\0${reason}`;
}

/** A check failure in a few words: its code and message. */
export function describeCheck(result: Pick<CheckResult, 'ok' | 'error' | 'durationMs' | 'outcome' | 'message'>): string {
  if (result.ok) return `passed in ${Math.round(result.durationMs)} ms`;
  if (result.outcome === 'leaving') return result.message ?? 'the backend said it is leaving';
  const e = result.error;
  return e === undefined ? 'failed' : `${e.code}: ${e.message}`;
}

/**
 * Writes the balancer's log lines for one pool and its probe.
 *
 * @example
 * ```ts
 * const log = new EventLog(pool, probe, { write: (line) => console.log(line) });
 * log.info('listening on 0.0.0.0:6443');
 * // ... on shutdown:
 * log.close();
 * ```
 */
export class EventLog {
  readonly #pool: UpstreamPool;
  readonly #probe: ProbeLike | undefined;
  readonly #write: (line: string) => void;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  /** Closed connections by reason, not yet reported (transition teardowns are reported with their transition). */
  readonly #closed = new Map<string, number>();
  /**
   * Closes counted in {@link EventLog.#closed} since the last flush, by
   * backend and reason: a teardown of up to the pool's `teardown.syncMax`
   * members closes them inside the call, before the transition's event.
   */
  readonly #recent = new Map<string, number>();
  /**
   * Closes a transition's line reported before they came, by backend and
   * reason: past `teardown.syncMax` the sockets are closed in slices on the
   * next turns, after the event. Each one that comes is not counted again.
   */
  readonly #owed = new Map<string, number>();
  readonly #connectFailures = new Map<string, number>();
  readonly #refused = new Map<string, number>();
  /** Checks and dials that failed in this process (EMFILE...), by code: no verdict, reported in the summary. */
  readonly #local = new Map<string, number>();
  /** How the last check of each backend ended. */
  readonly #lastOutcome = new Map<string, CheckResult['outcome']>();
  #summaryStart: number;
  #closedLog = false;

  readonly #onUp = (backend: Backend, change: StateChange): void => this.#transition(backend, change, undefined);
  readonly #onDraining = (backend: Backend, change: StateChange): void => this.#transition(backend, change, undefined);
  readonly #onLeaving = (backend: Backend, change: StateChange): void => this.#transition(backend, change, undefined);
  readonly #onDown = (backend: Backend, change: DownChange): void => this.#transition(backend, change, change.tornDown);
  readonly #onConnectionClosed = (member: PoolMember, info: ConnectionClosedInfo): void => {
    const key = teardownKey(member.backend?.id ?? '', info.reason);
    if ((this.#owed.get(key) ?? 0) > 0) {
      bump(this.#owed, key, -1);
      return;
    }
    bump(this.#closed, info.reason);
    bump(this.#recent, key);
  };
  readonly #onConnectFailed = (backend: Backend, _error: ConnectError | ConnectTimeoutError): void => bump(this.#connectFailures, backend.id);
  readonly #onPinFailed = (error: FailoverProxyError): void => bump(this.#refused, error.code);
  readonly #onAdded = (backend: Backend): void => this.info(`backend ${backend.id} added (${formatAddress(backend)})`);
  readonly #onRemoved = (backend: Backend): void => this.info(`backend ${backend.id} removed`);
  readonly #onChecked = (result: CheckResult): void => this.#checked(result);
  readonly #onSkipped = (_backend: unknown, result: CheckResult): void => {
    const cause = result.error?.cause as { code?: unknown; cause?: { code?: unknown } } | undefined;
    const code = cause?.code ?? cause?.cause?.code;
    bump(this.#local, typeof code === 'string' ? code : 'local');
  };

  constructor(pool: UpstreamPool, probe: ProbeLike | undefined, options: EventLogOptions) {
    this.#pool = pool;
    this.#probe = probe;
    this.#write = options.write;
    this.#now = options.now ?? Date.now;
    this.#summaryStart = this.#now();
    pool.on('backendUp', this.#onUp);
    pool.on('backendDraining', this.#onDraining);
    pool.on('backendLeaving', this.#onLeaving);
    pool.on('backendDown', this.#onDown);
    pool.on('backendMaintenance', this.#onDown);
    pool.on('connectionClosed', this.#onConnectionClosed);
    pool.on('connectFailed', this.#onConnectFailed);
    pool.on('pinFailed', this.#onPinFailed);
    pool.on('backendAdded', this.#onAdded);
    pool.on('backendRemoved', this.#onRemoved);
    probe?.on('checked', this.#onChecked);
    probe?.on('checkSkipped', this.#onSkipped);
    this.#timer = setInterval(() => this.flush(), options.summaryInterval ?? 10_000).unref();
  }

  /** Writes one line, stamped with the ISO time. */
  info(message: string): void {
    this.#write(`${new Date(this.#now()).toISOString()} ${message}`);
  }

  /** Writes the aggregated counters now, if anything was counted since the last time. */
  flush(): void {
    const parts: string[] = [];
    if (this.#closed.size > 0) parts.push(`connections closed: ${counts(this.#closed)}`);
    if (this.#connectFailures.size > 0) parts.push(`connect failures: ${counts(this.#connectFailures)}`);
    if (this.#refused.size > 0) parts.push(`clients refused: ${counts(this.#refused)}`);
    if (this.#local.size > 0) parts.push(`checks and dials failed here, no verdict: ${counts(this.#local)}`);
    const now = this.#now();
    if (parts.length > 0) {
      const seconds = Math.max(0, Math.round((now - this.#summaryStart) / 1000));
      this.info(`in the last ${seconds} s: ${parts.join('; ')}`);
    }
    this.#closed.clear();
    // A transition's own closes come in its call or after it, never across a flush.
    this.#recent.clear();
    this.#connectFailures.clear();
    this.#refused.clear();
    this.#local.clear();
    this.#summaryStart = now;
  }

  /** Stops listening, flushes the counters, clears the timer. Idempotent. */
  close(): void {
    if (this.#closedLog) return;
    this.#closedLog = true;
    clearInterval(this.#timer);
    const pool = this.#pool;
    pool.off('backendUp', this.#onUp);
    pool.off('backendDraining', this.#onDraining);
    pool.off('backendLeaving', this.#onLeaving);
    pool.off('backendDown', this.#onDown);
    pool.off('backendMaintenance', this.#onDown);
    pool.off('connectionClosed', this.#onConnectionClosed);
    pool.off('connectFailed', this.#onConnectFailed);
    pool.off('pinFailed', this.#onPinFailed);
    pool.off('backendAdded', this.#onAdded);
    pool.off('backendRemoved', this.#onRemoved);
    this.#probe?.off('checked', this.#onChecked);
    this.#probe?.off('checkSkipped', this.#onSkipped);
    this.flush();
  }

  #transition(backend: Backend, change: StateChange, tornDown: number | undefined): void {
    let reason = change.reason;
    // The probe calls markDown before it emits `checked`: ask it for the
    // result that made it decide.
    const last = this.#probe?.health(backend.id)?.lastResult;
    const fromProbe = reason === 'probe-failed' || reason === 'probe-leaving';
    if (fromProbe && this.#probe !== undefined && last !== undefined && !last.ok) reason += `: ${describeCheck(last)}`;
    // Without a probe here (a worker process: the probe runs in the primary),
    // the verdict's cause carries the same code and message.
    else if (fromProbe && this.#probe === undefined && (change.cause.source === 'probe' || change.cause.source === 'passive')) {
      reason += `: ${change.cause.code}: ${change.cause.message}`;
    }
    let line = `backend ${backend.id} ${change.from} -> ${change.to} (${reason})`;
    if (tornDown !== undefined) {
      line += `, ${plural(tornDown, 'connection')} torn down`;
      // Reported here; keep them out of the periodic counters: those closed
      // already come off, those still to close (in slices) are owed.
      const key = teardownKey(backend.id, change.reason);
      const seen = Math.min(tornDown, this.#recent.get(key) ?? 0);
      bump(this.#recent, key, -seen);
      bump(this.#closed, change.reason, -seen);
      if (tornDown > seen) bump(this.#owed, key, tornDown - seen);
    }
    this.info(line);
  }

  #checked(result: CheckResult): void {
    const id = result.backend.id;
    const previous = this.#lastOutcome.get(id);
    const outcome = result.outcome ?? (result.ok ? 'pass' : 'fail');
    this.#lastOutcome.set(id, outcome);
    if (previous === outcome || (previous === undefined && outcome === 'pass')) return;
    if (outcome === 'pass') this.info(`check of ${id} passed again (${describeCheck(result)})`);
    else if (outcome === 'leaving') this.info(`check of ${id} says it is leaving (${describeCheck(result)})`);
    else this.info(`check of ${id} failed (${describeCheck(result)})`);
  }
}
