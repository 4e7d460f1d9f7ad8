/**
 * Write-stall detection. Node has no `TCP_USER_TIMEOUT` (HAProxy's `tcp-ut`):
 * a pinned connection whose backend vanished while the client was sending
 * keeps queueing bytes until the kernel gives up, about 15 minutes later.
 * This watches for writes that do not drain: a member with bytes queued
 * toward one side and no progress for `timeout` ms is torn down with reason
 * `write-stalled`. A stall toward the backend is evidence, not a verdict (a
 * client can cause it by pipelining behind a request the backend does not
 * read meanwhile): an attached probe checks that backend at once.
 *
 * It costs nothing on the data path: one timer for the whole pool sweeps the
 * members every `timeout / 4` and reads counters the sockets keep anyway.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import { InvalidArgumentError } from './errors.js';
import type { PoolMember } from './pool-member.js';
import * as v from './validate.js';
import { MAX_TIMER_MS } from './limits.js';

const log = createDebug('failover-proxy:stall');
/** Lateness of a sweep that is ordinary timer jitter, not a stall of this process. */
const LOOP_STALL_TOLERANCE = 20;

/**
 * The key of the pool's method that tears a stalled member down. Not
 * exported from the package: only the detector calls it, so no caller can
 * make a pool report stalls that did not happen.
 *
 * @internal
 */
export const kReportWriteStall: unique symbol = Symbol('failover-proxy.reportWriteStall');

/** What the detector needs of a pool (an {@link UpstreamPool}). */
export interface WriteStallPool {
  members(): Iterable<PoolMember>;
  /** Tears the member down (`write-stalled`); `towardBackend` says whether the backend is the side that stopped reading. */
  [kReportWriteStall](member: PoolMember, towardBackend: boolean): void;
  readonly closed: boolean;
}

/** Options of a {@link WriteStallDetector}. */
export interface WriteStallDetectorOptions {
  /**
   * How long queued writes toward one side may make no progress, in ms.
   * Keep it a few seconds above the probe's detection time (`interval × fall
   * + timeout`), so the probe normally acts first.
   * @default 15000
   */
  readonly timeout?: number | undefined;
  /** Time source. @default Date.now */
  readonly now?: (() => number) | undefined;
}

/** A side with writes queued: how far it had got, and since when it has not moved. */
interface Mark {
  client: number;
  upstream: number;
  clientSince: number;
  upstreamSince: number;
}

/**
 * Sweeps a pool's pairs for writes that stopped draining.
 *
 * @example
 * ```ts
 * const detector = new WriteStallDetector(pool, { timeout: 15_000 });
 * // …
 * detector.close();
 * ```
 */
export class WriteStallDetector {
  readonly #pool: WriteStallPool;
  readonly #timeout: number;
  readonly #now: () => number;
  readonly #marks = new Map<PoolMember, Mark>();
  #timer: NodeJS.Timeout | undefined;
  readonly #every: number;
  #lastSweep: number | undefined;
  /** Members torn down for stalled writes so far. */
  stalls = 0;

  constructor(pool: WriteStallPool, options: WriteStallDetectorOptions = {}) {
    v.knownKeys('options', v.object('options', options), ['timeout', 'now']);
    if (typeof pool !== 'object' || pool === null || typeof pool[kReportWriteStall] !== 'function') {
      throw new InvalidArgumentError('Expected `pool` to be an UpstreamPool');
    }
    this.#pool = pool;
    this.#timeout = v.integer('timeout', options.timeout ?? 15_000, 100, MAX_TIMER_MS);
    this.#now = options.now === undefined ? Date.now : v.func<() => number>('now', options.now);
    this.#every = Math.max(25, Math.floor(this.#timeout / 4));
    this.#timer = setInterval(() => this.sweep(), this.#every);
    this.#timer.unref();
  }

  /** One pass over the members (the timer calls it; tests may too). */
  sweep(): void {
    if (this.#pool.closed) {
      this.close();
      return;
    }
    const now = this.#now();
    const seen = this.#marks;
    // A sweep that comes late saw this process stalled (its loop blocked, or
    // no CPU): sockets made no progress because nothing ran, not because a
    // peer stopped reading. That time is given back, as the probe does for checks.
    const lost = this.#lastSweep === undefined ? 0 : now - this.#lastSweep - this.#every;
    this.#lastSweep = now;
    if (lost > LOOP_STALL_TOLERANCE) {
      if (log.enabled) log('sweep %d ms late: this process was stalled; not counted against any member', lost);
      for (const mark of seen.values()) {
        mark.clientSince += lost;
        mark.upstreamSince += lost;
      }
    }
    for (const member of this.#pool.members()) {
      const { client, upstream } = member as PoolMember & { client?: Socket; upstream?: Socket };
      if (client === undefined || upstream === undefined) continue; // only pairs forward bytes
      const cq = client.writableLength;
      const uq = upstream.writableLength;
      const mark = seen.get(member);
      if (cq === 0 && uq === 0) {
        if (mark !== undefined) seen.delete(member);
        continue;
      }
      // Bytes handed to the kernel so far: written minus still queued.
      const cDone = client.bytesWritten - cq;
      const uDone = upstream.bytesWritten - uq;
      if (mark === undefined) {
        seen.set(member, { client: cDone, upstream: uDone, clientSince: now, upstreamSince: now });
        continue;
      }
      if (cq === 0 || cDone !== mark.client) {
        mark.client = cDone;
        mark.clientSince = now;
      }
      if (uq === 0 || uDone !== mark.upstream) {
        mark.upstream = uDone;
        mark.upstreamSince = now;
      }
      const towardBackend = uq > 0 && now - mark.upstreamSince >= this.#timeout;
      const towardClient = cq > 0 && now - mark.clientSince >= this.#timeout;
      if (towardBackend || towardClient) {
        seen.delete(member);
        this.stalls++;
        if (log.enabled) log('%s: writes toward the %s stalled for %d ms', member.id, towardBackend ? 'backend' : 'client', this.#timeout);
        this.#pool[kReportWriteStall](member, towardBackend);
      }
    }
    // Forget members that left.
    for (const member of seen.keys()) if (member.closed) seen.delete(member);
  }

  /** Stops sweeping. Idempotent. */
  close(): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
    this.#marks.clear();
  }
}
