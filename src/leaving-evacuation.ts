/**
 * What happens to the connections of a backend that is `leaving` (it said it
 * is shutting down gracefully and still serves): nothing, for a grace
 * period, because the backend ends them itself, at its own pace (a
 * kube-apiserver spreads the end of its watches over
 * `--shutdown-watch-termination-grace-period`). Whatever is still open once
 * the grace ran out is closed gracefully, oldest first, one member per
 * `1000 / rate` ms, as the {@link Rebalancer} moves connections: never all at
 * once, so the clients' reconnects and re-lists are spread too.
 *
 * @module
 * @internal
 */
import createDebug from 'debug';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { Clock } from './clock.js';
import type { PoolMember } from './pool-member.js';

const log = createDebug('failover-proxy:pool');

/** The teardown reason of a member closed because its backend's leaving grace ran out. @internal */
export const LEAVING_GRACE = 'leaving-grace';

/** Settings shared by a pool's evacuations. @internal */
export interface EvacuationSettings {
  readonly clock: Clock;
  /** ms a leaving backend keeps its members before any is closed. */
  readonly grace: number;
  /** Members closed per second at most, after the grace. */
  readonly rate: number;
  /** Grace of each member's own graceful close, in ms. */
  readonly closeTimeout: number;
}

/**
 * One leaving backend's evacuation: a grace timer, then a paced close of its
 * members. Stopped when the backend's health changes, it is removed, or the
 * pool closes.
 *
 * @internal
 */
export class Evacuation {
  readonly #entry: ReadonlyBackendEntry;
  readonly #settings: EvacuationSettings;
  #timer: unknown;
  #stopped = false;
  /** Members this evacuation asked to close (a graceful close takes a while to leave the registry). */
  readonly #asked = new WeakSet<PoolMember>();
  /** Members closed so far by this evacuation. */
  moved = 0;
  /** Whether the grace ran out (members are being closed, or were). */
  graceOver = false;

  constructor(entry: ReadonlyBackendEntry, settings: EvacuationSettings) {
    this.#entry = entry;
    this.#settings = settings;
    this.#timer = settings.clock.setTimeout(() => this.#graceOver(), settings.grace);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== undefined) this.#settings.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #graceOver(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    this.graceOver = true;
    if (log.enabled) log('%s: leaving grace over, %d members left', this.#entry.backend.id, this.#entry.members.size);
    this.#step();
  }

  /** Closes one member, then waits `1000 / rate` ms for the next. */
  #step(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    let next: PoolMember | undefined;
    // Oldest first (registry order is insertion order); a member already
    // asked to close is skipped.
    for (const member of this.#entry.members) {
      if (!member.closed && !this.#asked.has(member)) {
        next = member;
        break;
      }
    }
    if (next === undefined) {
      this.stop();
      return;
    }
    this.#asked.add(next);
    this.moved++;
    if (log.enabled) log('%s: leaving grace over, closing %s', this.#entry.backend.id, next.id);
    next.close(LEAVING_GRACE, { timeout: this.#settings.closeTimeout });
    this.#timer = this.#settings.clock.setTimeout(() => this.#step(), Math.max(1, Math.round(1000 / this.#settings.rate)));
  }
}

/**
 * A pool's evacuations, one per leaving backend: started when a backend's
 * health becomes `leaving`, stopped when it changes again, the backend is
 * removed, or the pool closes.
 *
 * @internal
 */
export class Evacuations {
  readonly #running = new Map<ReadonlyBackendEntry, Evacuation>();
  readonly #settings: EvacuationSettings;

  constructor(settings: EvacuationSettings) {
    this.#settings = settings;
  }

  start(entry: ReadonlyBackendEntry): void {
    if (!this.#running.has(entry)) this.#running.set(entry, new Evacuation(entry, this.#settings));
  }

  stop(entry: ReadonlyBackendEntry): void {
    const evacuation = this.#running.get(entry);
    if (evacuation === undefined) return;
    evacuation.stop();
    this.#running.delete(entry);
  }

  stopAll(): void {
    for (const evacuation of this.#running.values()) evacuation.stop();
    this.#running.clear();
  }
}
