/**
 * Membership and state: the pool's backends by id, and the one writer of
 * their records ({@link BackendEntry}). Every change is a method named after
 * an intent (set a health or admin state, drain, apply tunables, count a
 * failure, a member joining or leaving) that returns what changed, so no
 * caller diffs anything. A health change to `down` and an admin change to
 * `maintenance` take the backend's members out of the registry before the
 * transition is reported, so by the time any listener runs no member of the
 * backend carries bytes.
 *
 * @module
 * @internal
 */
import createDebug from 'debug';
import { tunablesDiff, type Backend, type BackendTunables } from './backend.js';
import { BackendEntry, type ReadonlyBackendEntry, type SlowStart } from './backend-entry.js';
import type { AdminState, BackendHealth, HealthCause } from './backend-status.js';
import type { Clock } from './clock.js';
import { DuplicateBackendError, UnknownBackendError } from './errors.js';
import type { BackendUpdate, ConnectionClosedInfo, StateChange, StatePoint, TeardownReason } from './events.js';
import type { MemberLedger } from './member-registry.js';
import type { PoolMember } from './pool-member.js';

const log = createDebug('failover-proxy:pool');

/** What the table needs of its pool. @internal */
export interface TableHooks {
  /** After each transition of either axis. */
  changed(entry: ReadonlyBackendEntry, change: StateChange): void;
  /** Takes every member of `entry` out now (the registry's teardown); returns how many. */
  takeOut(entry: ReadonlyBackendEntry, reason: TeardownReason): number;
}

/**
 * A tunables change: what changed, and whether the backend gained capacity
 * (it became eligible, or its cap was raised while eligible).
 *
 * @internal
 */
export interface TunablesChange {
  readonly changed: BackendUpdate;
  readonly capacityAppeared: boolean;
}

/** @internal */
export class BackendTable implements MemberLedger {
  readonly #entries = new Map<string, BackendEntry>();
  readonly #clock: Clock;
  readonly #hooks: TableHooks;
  readonly #slowStart: SlowStart;

  constructor(clock: Clock, hooks: TableHooks, slowStart: SlowStart) {
    this.#clock = clock;
    this.#slowStart = slowStart;
    this.#hooks = hooks;
  }

  /** Every backend's record, read-only, in the order added. */
  get entries(): ReadonlyMap<string, ReadonlyBackendEntry> {
    return this.#entries;
  }

  /** Whether there are backends and none is eligible. */
  get allDown(): boolean {
    if (this.#entries.size === 0) return false;
    for (const entry of this.#entries.values()) if (entry.eligible) return false;
    return true;
  }

  get(id: string): ReadonlyBackendEntry {
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new UnknownBackendError(String(id));
    return entry;
  }

  /** Throws `DUPLICATE_BACKEND` if the id is taken. Changes nothing. */
  assertFree(id: string): void {
    if (this.#entries.has(id)) throw new DuplicateBackendError(id);
  }

  add(backend: Backend, health: BackendHealth, cause: HealthCause, warm: boolean): ReadonlyBackendEntry {
    this.assertFree(backend.id);
    const entry = new BackendEntry(backend, health, cause, this.#slowStart);
    // A backend the pool starts with is not warmed up the first time it
    // becomes eligible (up at once, or after its first check): there is no
    // load to protect it from yet. One added to a running pool is.
    entry.warmFirst = warm;
    if (entry.eligible) entry.becameEligible(cause.at, warm);
    this.#entries.set(backend.id, entry);
    return entry;
  }

  /** Takes the backend out of the pool with its members; returns how many were taken out. */
  delete(view: ReadonlyBackendEntry, reason: TeardownReason): number {
    const entry = own(view);
    this.#endDrain(entry);
    entry.removed = true;
    const tornDown = this.#hooks.takeOut(entry, reason);
    this.#entries.delete(entry.backend.id);
    return tornDown;
  }

  /**
   * Sets the health axis. Going `down` takes every member out first,
   * whatever the admin state. Returns the change, or `undefined` when the
   * health was already that (the cause is still refreshed).
   */
  setHealth(view: ReadonlyBackendEntry, health: BackendHealth, reason: TeardownReason, cause: HealthCause): StateChange | undefined {
    const entry = own(view);
    if (entry.health === health) {
      entry.cause = cause;
      return undefined;
    }
    const previous = point(entry);
    entry.health = health;
    entry.cause = cause;
    entry.healthSince = cause.at;
    entry.reason = reason;
    // No await between the verdict and the teardown: when this returns, no
    // member of the backend is in the registry or forwards a byte.
    const tornDown = health === 'down' ? this.#hooks.takeOut(entry, reason) : 0;
    return this.#changed(entry, 'health', previous, reason, tornDown, cause.at);
  }

  /**
   * Puts the backend in maintenance: its drain (if any) ends and every member
   * is taken out first. Returns the change, or `undefined` when it was
   * already in maintenance.
   */
  markMaintenance(view: ReadonlyBackendEntry, reason: TeardownReason): StateChange | undefined {
    const entry = own(view);
    this.#endDrain(entry);
    return this.#setAdmin(entry, 'maintenance', reason);
  }

  /**
   * Ends a drain or maintenance. A draining removal under way is called off
   * (its `remove()` then resolves with `{ removed: false, reason }`).
   */
  markReady(view: ReadonlyBackendEntry, reason: string): StateChange | undefined {
    const entry = own(view);
    if (entry.removing) entry.calledOff = reason;
    entry.removing = false;
    this.#endDrain(entry);
    return this.#setAdmin(entry, 'active', reason);
  }

  /**
   * Drains the backend: no new connection from now; at `timeout` ms those
   * still open are taken out (reason `drained`). A drain of a backend already
   * draining can bring the deadline forward, never back. Resolves when it
   * holds no member, or the drain ends (`markReady`, maintenance, removal).
   */
  drain(view: ReadonlyBackendEntry, timeout: number): Promise<void> {
    const entry = own(view);
    if (entry.admin !== 'draining') {
      this.#endDrain(entry);
      this.#setAdmin(entry, 'draining', 'drain');
    }
    if (entry.members.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      entry.drainWaiters.push(resolve);
      // "Drain within 10 s" after "within 60 s" means 10 s.
      const clock = this.#clock;
      const at = clock.now() + timeout;
      if (entry.drainTimer !== undefined && at >= entry.drainDeadlineAt) return;
      if (entry.drainTimer !== undefined) clock.clearTimeout(entry.drainTimer);
      entry.drainDeadlineAt = at;
      entry.drainTimer = clock.setTimeout(() => {
        entry.drainTimer = undefined;
        const n = this.#hooks.takeOut(entry, 'drained');
        if (log.enabled) log('%s drain deadline: %d members taken out', entry.backend.id, n);
        this.#endDrain(entry);
      }, timeout);
    });
  }

  /** Ends every drain's timer and settles its waiters (the pool has closed). */
  endDrains(): void {
    for (const entry of this.#entries.values()) this.#endDrain(entry);
  }

  /**
   * Marks a draining removal as under way (`remove(id, { drain: true })`).
   * Returns the drain that precedes it.
   */
  drainToRemove(view: ReadonlyBackendEntry, timeout: number): Promise<void> {
    const entry = own(view);
    entry.removing = true;
    entry.calledOff = undefined;
    return this.drain(entry, timeout);
  }

  /**
   * A reconcile lists the backend again while a draining removal of it is
   * under way: the removal is called off (reason `relisted`), and a drain
   * ends (a maintenance stays).
   */
  relist(view: ReadonlyBackendEntry): StateChange | undefined {
    const entry = own(view);
    entry.calledOff = 'relisted';
    entry.removing = false;
    if (entry.admin !== 'draining') return undefined;
    this.#endDrain(entry);
    return this.#setAdmin(entry, 'active', 'relisted');
  }

  /**
   * A draining removal's drain is over: `remove` when the backend is to be
   * deleted now, `gone` when it already was, else why it was called off.
   */
  removalOutcome(view: ReadonlyBackendEntry): 'gone' | 'remove' | { readonly calledOff: string } {
    const entry = own(view);
    if (entry.removed) return 'gone';
    if (entry.removing) return 'remove';
    return { calledOff: entry.calledOff ?? 'ready' };
  }

  /**
   * Applies tunables (weight, per-backend cap, meta) in place. Returns what
   * changed, or `undefined` when nothing did.
   */
  applyTunables(view: ReadonlyBackendEntry, next: BackendTunables): TunablesChange | undefined {
    const entry = own(view);
    const diff = tunablesDiff(entry.backend, next);
    if (diff.weight === undefined && diff.maxConnections === undefined && diff.meta === undefined) return undefined;
    const backend = entry.backend as { -readonly [K in keyof Backend]: Backend[K] };
    const wasEligible = entry.eligible;
    const oldCap = backend.maxConnections;
    if (diff.weight !== undefined) backend.weight = diff.weight;
    if (diff.maxConnections !== undefined) backend.maxConnections = diff.maxConnections;
    if (diff.meta !== undefined) backend.meta = diff.meta;
    if (log.enabled) log('%s updated: %o', backend.id, diff);
    if (entry.eligible && !wasEligible) entry.becameEligible(this.#clock.now(), true);
    return { changed: diff, capacityAppeared: entry.eligible && (!wasEligible || backend.maxConnections > oldCap) };
  }

  /** A dial the backend caused to fail (refused, reset, timed out). */
  countConnectFailure(view: ReadonlyBackendEntry): void {
    own(view).connectFailures++;
  }

  /** A dial to the backend starts: counted from the pick until attached or released. */
  dialStarted(view: ReadonlyBackendEntry): void {
    own(view).dialling++;
  }

  /** A dial's slot is free again (its member attached, or the lease released). */
  dialEnded(view: ReadonlyBackendEntry): void {
    own(view).dialling--;
  }

  // The registry's ledger: members joining and leaving the record.

  joined(view: ReadonlyBackendEntry, member: PoolMember): void {
    const entry = own(view);
    entry.members.add(member);
    entry.total++;
  }

  left(view: ReadonlyBackendEntry, member: PoolMember, reason: TeardownReason): boolean {
    const entry = own(view);
    if (!entry.members.delete(member)) return false;
    entry.teardowns[reason] = (entry.teardowns[reason] ?? 0) + 1;
    return true;
  }

  closed(view: ReadonlyBackendEntry, info: ConnectionClosedInfo): void {
    const entry = own(view);
    entry.closedBytesFromClient += info.bytesFromClient;
    entry.closedBytesFromUpstream += info.bytesFromUpstream;
    if (info.reason === 'write-stalled') entry.writeStalls++;
    // The last member of a draining backend is gone: the drain is done.
    if (entry.members.size === 0 && entry.drainWaiters.length > 0) this.#endDrain(entry);
  }

  #setAdmin(entry: BackendEntry, admin: AdminState, reason: TeardownReason): StateChange | undefined {
    if (entry.admin === admin) return undefined;
    const at = this.#clock.now();
    const previous = point(entry);
    entry.admin = admin;
    entry.adminSince = at;
    entry.reason = reason;
    const tornDown = admin === 'maintenance' ? this.#hooks.takeOut(entry, reason) : 0;
    return this.#changed(entry, 'admin', previous, reason, tornDown, at);
  }

  #endDrain(entry: BackendEntry): void {
    if (entry.drainTimer !== undefined) {
      this.#clock.clearTimeout(entry.drainTimer);
      entry.drainTimer = undefined;
    }
    const waiters = entry.drainWaiters;
    if (waiters.length > 0) {
      entry.drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  #changed(entry: BackendEntry, axis: 'health' | 'admin', previous: StatePoint, reason: string, tornDown: number, at: number): StateChange {
    const wasEligible = previous.health === 'up' && previous.admin === 'active';
    if (entry.eligible && !wasEligible) entry.becameEligible(at, entry.eligibleSince !== 0 || entry.warmFirst);
    const now = point(entry);
    const change: StateChange = {
      ...now,
      from: previous.state,
      to: now.state,
      previous,
      axis,
      reason,
      cause: entry.cause,
      at,
      tornDown,
    };
    if (log.enabled) {
      log('%s: %s %s -> %s (%s)%s', entry.backend.id, axis, axis === 'health' ? previous.health : previous.admin, axis === 'health' ? now.health : now.admin, reason, tornDown ? `, ${tornDown} torn down` : '');
    }
    this.#hooks.changed(entry, change);
    return change;
  }
}

/** The record behind a view: every view the table hands out is one of its own records. */
function own(view: ReadonlyBackendEntry): BackendEntry {
  return view as BackendEntry;
}

function point(entry: BackendEntry): StatePoint {
  return { health: entry.health, admin: entry.admin, state: entry.state };
}
