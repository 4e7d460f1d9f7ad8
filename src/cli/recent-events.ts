/**
 * A bounded ring of the pool's recent backend events (state changes on either
 * axis, additions, removals, tunable updates), for `GET /api/events` and the
 * status page. The log writes the same facts as lines; this keeps the last
 * few as data.
 *
 * @module
 */
import type { Backend, BackendUpdate, StateChange, UpstreamPool } from '../index.js';

/** One event in the ring: plain, JSON-safe data. */
export interface RecentEvent {
  /** Increases by one per event, from 1: a poller asks for what is newer than the last it saw. */
  readonly seq: number;
  /** Clock time, ms since epoch. */
  readonly at: number;
  readonly backend: string;
  readonly kind: 'state' | 'added' | 'removed' | 'updated';
  /** Which axis changed (`state` events). */
  readonly axis?: 'health' | 'admin';
  /** The derived one-word state before and after (`state` events). */
  readonly from?: string;
  readonly to?: string;
  readonly health?: string;
  readonly admin?: string;
  readonly reason?: string;
  /** The health cause's code (`PROBE_TIMEOUT`, `marked-down`...). */
  readonly cause?: string;
  /** Connections taken out by this change. */
  readonly tornDown?: number;
  /** Changed tunables (`updated` events). */
  readonly changed?: Readonly<Record<string, unknown>>;
}

/** Options of {@link RecentEvents}. */
export interface RecentEventsOptions {
  /**
   * Events kept; the oldest go first.
   * @default 200
   */
  readonly size?: number | undefined;
  /** @default Date.now */
  readonly now?: (() => number) | undefined;
}

/**
 * Keeps the last `size` backend events of a pool.
 *
 * @example
 * ```ts
 * const recent = new RecentEvents(pool, { size: 100 });
 * recent.since(0); // every event kept, oldest first
 * recent.close();
 * ```
 */
export class RecentEvents {
  readonly #pool: UpstreamPool;
  readonly #size: number;
  readonly #now: () => number;
  readonly #ring: RecentEvent[] = [];
  #seq = 0;
  #closed = false;

  readonly #onState = (backend: Backend, change: StateChange): void =>
    this.#push({
      backend: backend.id,
      kind: 'state',
      axis: change.axis,
      from: change.from,
      to: change.to,
      health: change.health,
      admin: change.admin,
      reason: change.reason,
      cause: change.cause.code,
      ...(change.tornDown !== undefined && { tornDown: change.tornDown }),
    });
  readonly #onAdded = (backend: Backend): void => this.#push({ backend: backend.id, kind: 'added' });
  readonly #onRemoved = (backend: Backend): void => this.#push({ backend: backend.id, kind: 'removed' });
  readonly #onUpdated = (backend: Backend, changed: BackendUpdate): void =>
    // maxConnections may be Infinity, which JSON cannot carry: null means no cap.
    this.#push({ backend: backend.id, kind: 'updated', changed: { ...changed } });

  constructor(pool: UpstreamPool, options: RecentEventsOptions = {}) {
    this.#pool = pool;
    this.#size = options.size ?? 200;
    this.#now = options.now ?? Date.now;
    pool.on('backendStateChanged', this.#onState);
    pool.on('backendAdded', this.#onAdded);
    pool.on('backendRemoved', this.#onRemoved);
    pool.on('backendUpdated', this.#onUpdated);
  }

  /** Events with a `seq` above `after`, oldest first. */
  since(after: number): RecentEvent[] {
    return this.#ring.filter((e) => e.seq > after);
  }

  /** Stops listening; the events kept stay readable. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.off('backendStateChanged', this.#onState);
    this.#pool.off('backendAdded', this.#onAdded);
    this.#pool.off('backendRemoved', this.#onRemoved);
    this.#pool.off('backendUpdated', this.#onUpdated);
  }

  #push(event: Omit<RecentEvent, 'seq' | 'at'>): void {
    this.#ring.push({ seq: ++this.#seq, at: this.#now(), ...event });
    if (this.#ring.length > this.#size) this.#ring.shift();
  }
}
