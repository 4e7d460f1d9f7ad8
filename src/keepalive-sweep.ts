/**
 * TCP keepalive for a pool's pinned connections, switched on by a sweep once
 * a connection has lived through one sweep period, rather than as it opens.
 *
 * Why: keepalive is four `setsockopt` calls per socket (libuv sets
 * `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and `TCP_KEEPCNT`), eight
 * per pair, about a tenth of a short connection's CPU here
 * (docs/benchmarks.md, section 3). Keepalive only matters to a connection
 * that stays idle for `keepAliveInitialDelay` (30 s by default), so a
 * connection that closes within a second never needs it. Its first probe
 * comes at most two periods later than if it had been set at once.
 *
 * Two generations of connections: those opened since the last sweep, and
 * those opened in the period before, which the sweep switches on. A closed
 * connection is dropped from its generation at once, so nothing holds it
 * for the GC. The timer runs only while a generation holds a connection.
 *
 * @module
 * @internal
 */
import type { Socket } from 'node:net';
import type { Clock } from './clock.js';

/** What the sweep needs of a connection: its two sockets. @internal */
export interface KeepAliveTarget {
  readonly client: Socket;
  readonly upstream: Socket;
  readonly closed: boolean;
}

/** How often the sweep runs, in ms: a connection gets keepalive 1–2 periods after it opened. */
export const KEEPALIVE_SWEEP_MS = 1000;

/** @internal */
export class KeepAliveSweep {
  readonly #delay: number;
  readonly #clock: Clock;
  readonly #period: number;
  /** Opened since the last sweep. */
  #young = new Set<KeepAliveTarget>();
  /** Opened in the period before: switched on at the next sweep. */
  #due = new Set<KeepAliveTarget>();
  /** The clock's handle of the pending sweep (opaque: only `armed` says whether one is pending). */
  #timer: unknown = undefined;
  #armed = false;
  #closed = false;

  /** `delay`: idle time before the first probe, in ms (the `keepAliveInitialDelay` option). */
  constructor(delay: number, clock: Clock, period = KEEPALIVE_SWEEP_MS) {
    this.#delay = delay;
    this.#clock = clock;
    this.#period = period;
  }

  /** A connection opened: it gets keepalive once it has lived a period, unless it closes first. */
  add(target: KeepAliveTarget): void {
    if (this.#closed || target.closed) return;
    this.#young.add(target);
    if (!this.#armed) this.#arm();
  }

  /** A connection closed before its turn: drop it. */
  forget(target: KeepAliveTarget): void {
    if (!this.#young.delete(target)) this.#due.delete(target);
  }

  /** Stops the sweep (the pool closed); connections still waiting get no keepalive. Idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#armed) this.#clock.clearTimeout(this.#timer);
    this.#armed = false;
    this.#timer = undefined;
    this.#young.clear();
    this.#due.clear();
  }

  /** Connections waiting for keepalive, both generations. */
  get pending(): number {
    return this.#young.size + this.#due.size;
  }

  #arm(): void {
    this.#armed = true;
    this.#timer = this.#clock.setTimeout(() => this.#sweep(), this.#period);
  }

  #sweep(): void {
    this.#armed = false;
    this.#timer = undefined;
    const due = this.#due;
    this.#due = this.#young;
    this.#young = new Set();
    for (const target of due) {
      if (target.closed) continue;
      enable(target.client, this.#delay);
      enable(target.upstream, this.#delay);
    }
    if (this.#due.size > 0) this.#arm();
  }
}

function enable(socket: Socket, delay: number): void {
  // A TLSSocket over a duplex that is not a TCP socket has nothing to set.
  try {
    socket.setKeepAlive(true, delay);
  } catch {
    /* not a TCP socket */
  }
}
