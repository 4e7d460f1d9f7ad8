/**
 * Gradual rebalancing of long-lived connections. When a backend becomes
 * eligible again (recovered, drain ended, added, weight raised), the
 * connections that piled up on the others during its absence would stay
 * there for good: least-connections only places *new* connections. This
 * closes members on backends above their weighted share, gracefully (the
 * member's `close()`, reason `rebalanced`: the client sees a clean end of
 * stream and reconnects, and the picker sends it to the backend below its
 * share), at a bounded rate, until every backend is within a tolerance of
 * its share.
 *
 * Oldest first: the members that have been on a backend longest are the ones
 * placed while the returning backend was away, and every newer connection was
 * already placed by a picker that saw it; and oldest-first is deterministic,
 * so the moves can be reasoned about and tested.
 *
 * @module
 */
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { Backend } from './backend.js';
import type { BackendStatus } from './backend-status.js';
import { InvalidArgumentError } from './errors.js';
import type { PoolMember } from './pool-member.js';
import * as v from './validate.js';
import { MAX_TIMER_MS } from './limits.js';

const log = createDebug('failover-proxy:rebalance');

/** What a rebalancer needs of a pool ({@link UpstreamPool} has it). */
export interface RebalancerPool {
  backends(): Iterable<Backend>;
  status(id: string): BackendStatus | undefined;
  members(id: string): Iterable<PoolMember>;
  readonly closed: boolean;
  on(event: RebalanceTrigger | 'connectionOpened', fn: () => void, context?: unknown): unknown;
  off(event: RebalanceTrigger | 'connectionOpened', fn: () => void, context?: unknown): unknown;
}

type RebalanceTrigger = 'backendStateChanged' | 'backendAdded' | 'backendRemoved' | 'backendUpdated' | 'closed';
const triggers: readonly RebalanceTrigger[] = ['backendStateChanged', 'backendAdded', 'backendRemoved', 'backendUpdated'];

/** Options of a {@link Rebalancer}. */
export interface RebalancerOptions {
  /**
   * Members closed per second at most, all backends together.
   * @default 4
   */
  readonly rate?: number | undefined;
  /**
   * How far from its share a backend may be and count as balanced, as a
   * fraction of the share; at least one connection either way is always
   * tolerated.
   * @default 0.2
   */
  readonly tolerance?: number | undefined;
  /**
   * Members younger than this (ms) are never moved: a connection just placed
   * is not closed again.
   * @default 5000
   */
  readonly minAge?: number | undefined;
  /**
   * Every backend's health must have been stable this long (ms) before any
   * move: a flapping backend pauses rebalancing instead of pulling
   * connections back and forth.
   * @default 3000
   */
  readonly stableFor?: number | undefined;
  /**
   * Moves wait while a backend warming up (slow start) is below this share
   * of its weight: the first phase of slow start is for the reconnect storm,
   * not for moved connections.
   * @default 0.5
   */
  readonly warmthFloor?: number | undefined;
  /** Grace given to each moved member's graceful close, in ms. @default 5000 */
  readonly closeTimeout?: number | undefined;
  /** Time source (`now()`), for `minAge` and `stableFor`. @default Date */
  readonly now?: (() => number) | undefined;
}

/** Events of a {@link Rebalancer}. */
export interface RebalancerEvents {
  /** A member was closed to move its load; `from` is the backend above its share. */
  moved: [member: PoolMember, from: Backend];
  /** Backends are out of balance and moves start (or resume). */
  started: [];
  /** Every backend is within tolerance of its share again. */
  balanced: [];
  /** Moves are held back for now: a backend is unknown, flapping or warming up. */
  paused: [reason: string];
}

/**
 * How long a moved member's client is expected back, in ms. Until a new
 * connection arrives (or this passes), the move still counts toward the total
 * the shares are computed from and toward the backends below their share:
 * without that, moves outrun slow reconnects (each one shrinks the total and
 * the shares with it) and more than the surplus is moved.
 */
const RETURN_GRACE_MS = 5000;

/** @internal */
export const rebalancerDefaults = Object.freeze({
  rate: 4,
  tolerance: 0.2,
  minAge: 5000,
  stableFor: 3000,
  warmthFloor: 0.5,
  closeTimeout: 5000,
});

interface Load {
  readonly backend: Backend;
  readonly status: BackendStatus;
  share: number;
  /** Members counted: registered, minus those this rebalancer is closing. */
  count: number;
}

/**
 * Moves long-lived connections back toward their weighted shares when a
 * backend becomes eligible again. Works with any pool that has the
 * {@link RebalancerPool} shape (and from a custom balancer).
 *
 * @example
 * ```ts
 * const rebalancer = new Rebalancer(pool, { rate: 4, tolerance: 0.2 });
 * rebalancer.on('moved', (member, from) => log(`moved ${member.id} off ${from.id}`));
 * // later
 * rebalancer.close();
 * ```
 */
export class Rebalancer extends EventEmitter<RebalancerEvents> {
  readonly #pool: RebalancerPool;
  readonly #rate: number;
  readonly #tolerance: number;
  readonly #minAge: number;
  readonly #stableFor: number;
  readonly #warmthFloor: number;
  readonly #closeTimeout: number;
  readonly #now: () => number;
  /** Members this rebalancer closed that have not left the registry yet. */
  readonly #closing = new Set<PoolMember>();
  #timer: NodeJS.Timeout | undefined;
  #active = false;
  #pausedFor: string | undefined;
  #closed = false;
  /** One deadline per moved member whose client has not come back yet, oldest first. */
  readonly #returning: number[] = [];
  /** Members moved since the rebalancer was made. */
  moves = 0;

  constructor(pool: RebalancerPool, options: RebalancerOptions = {}) {
    super();
    const raw = v.object('options', options);
    v.knownKeys('options', raw, Object.keys(rebalancerDefaults).concat('now'));
    if (typeof pool !== 'object' || pool === null || typeof (pool).members !== 'function') {
      throw new InvalidArgumentError('Expected `pool` to be a pool (backends, status, members, on, off)');
    }
    const d = rebalancerDefaults;
    this.#rate = v.number('rate', options.rate ?? d.rate, 0.01, 10_000);
    this.#tolerance = v.number('tolerance', options.tolerance ?? d.tolerance, 0, 10);
    this.#minAge = v.integer('minAge', options.minAge ?? d.minAge, 0, MAX_TIMER_MS);
    this.#stableFor = v.integer('stableFor', options.stableFor ?? d.stableFor, 0, MAX_TIMER_MS);
    this.#warmthFloor = v.number('warmthFloor', options.warmthFloor ?? d.warmthFloor, 0, 1);
    this.#closeTimeout = v.integer('closeTimeout', options.closeTimeout ?? d.closeTimeout, 0, MAX_TIMER_MS);
    this.#now = options.now === undefined ? Date.now : v.func<() => number>('now', options.now);
    this.#pool = pool;
    for (const event of triggers) pool.on(event, this.#poke);
    pool.on('closed', this.#onPoolClosed);
    pool.on('connectionOpened', this.#onOpened);
    this.#poke();
  }

  /** Whether moves are under way (the backends are out of balance). */
  get active(): boolean {
    return this.#active;
  }

  /** Stops moving; members already closing finish. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const event of triggers) this.#pool.off(event, this.#poke);
    this.#pool.off('closed', this.#onPoolClosed);
    this.#pool.off('connectionOpened', this.#onOpened);
    this.#stopTimer();
    this.#closing.clear();
    this.#returning.length = 0;
  }

  /** `await using rebalancer = new Rebalancer(pool)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** Something changed: check the balance now (a timer keeps checking while out of balance). */
  readonly #poke = (): void => {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#tick(), Math.max(1, Math.round(1000 / this.#rate)));
    this.#timer.unref();
    this.#tick();
  };

  readonly #onPoolClosed = (): void => this.close();

  /** A new connection: take it as the return of the oldest moved client still awaited. */
  readonly #onOpened = (): void => {
    if (this.#returning.length > 0) this.#returning.shift();
  };

  #stopTimer(): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** One step: at most one move per tick, so the rate bounds the moves. */
  #tick(): void {
    if (this.#closed) return;
    if (this.#pool.closed) {
      this.close();
      return;
    }
    for (const member of this.#closing) if (member.closed) this.#closing.delete(member);
    const loads = this.#loads();
    if (loads === undefined) return; // paused; the timer keeps looking
    const donor = this.#donor(loads);
    if (donor === undefined) {
      this.#stopTimer();
      if (this.#active) {
        this.#active = false;
        if (log.enabled) log('balanced (%d moves so far)', this.moves);
        this.emit('balanced');
      }
      return;
    }
    if (!this.#active) {
      this.#active = true;
      if (log.enabled) log('out of balance: %s', loads.map((l) => `${l.backend.id}=${l.count}/${l.share.toFixed(1)}`).join(' '));
      this.emit('started');
    }
    const member = this.#oldest(donor.backend.id);
    if (member === undefined) return; // none old enough yet
    this.#closing.add(member);
    this.#returning.push(this.#now() + RETURN_GRACE_MS);
    this.moves++;
    if (log.enabled) log('moving %s off %s (%d there, share %s)', member.id, donor.backend.id, donor.count, donor.share.toFixed(1));
    this.emit('moved', member, donor.backend);
    member.close('rebalanced', { timeout: this.#closeTimeout });
  }

  /** Each eligible backend's share and count, or `undefined` while moves must wait. */
  #loads(): Load[] | undefined {
    const now = this.#now();
    const loads: Load[] = [];
    let total = 0;
    let weights = 0;
    for (const backend of this.#pool.backends()) {
      const status = this.#pool.status(backend.id);
      if (status === undefined) continue;
      if (status.health === 'unknown' && status.admin === 'active') return this.#pause(`${backend.id} is not checked yet`);
      if (now - status.healthSince < this.#stableFor) return this.#pause(`${backend.id} changed health ${now - status.healthSince} ms ago`);
      if (!status.eligible) continue;
      if (status.warming && status.effectiveWeight < this.#warmthFloor * backend.weight) {
        return this.#pause(`${backend.id} is in the first phase of slow start`);
      }
      let count = status.members;
      for (const member of this.#closing) if (member.backend?.id === backend.id) count--;
      loads.push({ backend, status, share: 0, count });
      total += count;
      weights += backend.weight;
    }
    if (this.#pausedFor !== undefined) {
      this.#pausedFor = undefined;
      if (log.enabled) log('resumed');
    }
    if (loads.length < 2 || weights <= 0) return [];
    const returning = this.#returning;
    while (returning.length > 0 && returning[0]! <= now) returning.shift();
    total += returning.length;
    for (const load of loads) load.share = (total * load.backend.weight) / weights;
    // The clients on their way back land where least-connections puts them:
    // on the backends furthest below their share, filling each up to it.
    let expected = returning.length;
    if (expected > 0) {
      const lowest = loads.slice().sort((a, b) => a.count / a.share - b.count / b.share);
      for (const load of lowest) {
        const room = Math.max(0, Math.floor(load.share - load.count));
        const add = Math.min(room, expected);
        load.count += add;
        expected -= add;
        if (expected === 0) break;
      }
    }
    return loads;
  }

  #pause(reason: string): undefined {
    if (this.#pausedFor === undefined && this.#active) {
      if (log.enabled) log('paused: %s', reason);
      this.emit('paused', reason);
    }
    this.#pausedFor = reason;
    return undefined;
  }

  /**
   * The backend to take one member from: the one furthest above its share,
   * provided some backend is below its share beyond the tolerance, and the
   * donor has at least one whole member of surplus (never more than the surplus).
   */
  #donor(loads: Load[]): Load | undefined {
    let needy = false;
    let donor: Load | undefined;
    for (const load of loads) {
      const slack = Math.max(1, this.#tolerance * load.share);
      if (load.share - load.count > slack) needy = true;
      const surplus = load.count - load.share;
      if (surplus >= 1 && (donor === undefined || surplus > donor.count - donor.share)) donor = load;
    }
    return needy ? donor : undefined;
  }

  #oldest(id: string): PoolMember | undefined {
    const cutoff = this.#now() - this.#minAge;
    // Registry order is insertion order: the first old-enough member not already closing is the oldest.
    for (const member of this.#pool.members(id)) {
      if (member.openedAt <= cutoff && !member.closed && !this.#closing.has(member)) return member;
    }
    return undefined;
  }
}
