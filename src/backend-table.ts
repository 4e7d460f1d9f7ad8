/**
 * Membership and state: the pool's backends by id, and the one transition
 * path for both state axes. A health change to `down` and an admin change to
 * `maintenance` take the backend's members out of the registry before the
 * transition is reported, so by the time any listener runs no member of the
 * backend carries bytes.
 *
 * @module
 * @internal
 */
import createDebug from 'debug';
import type { Backend } from './backend.js';
import { BackendEntry, type SlowStart } from './backend-entry.js';
import type { AdminState, BackendHealth, HealthCause } from './backend-status.js';
import type { Clock } from './clock.js';
import { DuplicateBackendError, UnknownBackendError } from './errors.js';
import type { StateChange, StatePoint, TeardownReason } from './events.js';
import type { MemberRegistry } from './member-registry.js';

const log = createDebug('failover-proxy:pool');

/** What the table tells the pool after each transition. @internal */
export interface TableHooks {
  changed(entry: BackendEntry, change: StateChange): void;
}

/** @internal */
export class BackendTable {
  readonly entries = new Map<string, BackendEntry>();
  readonly #clock: Clock;
  readonly #registry: MemberRegistry;
  readonly #hooks: TableHooks;
  readonly #reset: () => boolean;
  readonly #slowStart: SlowStart;

  constructor(clock: Clock, registry: MemberRegistry, hooks: TableHooks, resetOnTeardown: () => boolean, slowStart: SlowStart) {
    this.#clock = clock;
    this.#slowStart = slowStart;
    this.#registry = registry;
    this.#hooks = hooks;
    this.#reset = resetOnTeardown;
  }

  get(id: string): BackendEntry {
    const entry = this.entries.get(id);
    if (entry === undefined) throw new UnknownBackendError(String(id));
    return entry;
  }

  /** Throws `DUPLICATE_BACKEND` if the id is taken. Changes nothing. */
  assertFree(id: string): void {
    if (this.entries.has(id)) throw new DuplicateBackendError(id);
  }

  add(backend: Backend, health: BackendHealth, cause: HealthCause, warm: boolean): BackendEntry {
    this.assertFree(backend.id);
    const entry = new BackendEntry(backend, health, cause, this.#slowStart);
    // A backend the pool starts with is not warmed up the first time it
    // becomes eligible (up at once, or after its first check): there is no
    // load to protect it from yet. One added to a running pool is.
    entry.warmFirst = warm;
    if (entry.eligible) entry.becameEligible(cause.at, warm);
    this.entries.set(backend.id, entry);
    return entry;
  }

  delete(entry: BackendEntry, reason: TeardownReason): number {
    entry.removed = true;
    const tornDown = this.#registry.takeOut(entry, reason, this.#reset());
    this.entries.delete(entry.backend.id);
    return tornDown;
  }

  /**
   * Sets the health axis. Going `down` takes every member out first,
   * whatever the admin state. Returns the change, or `undefined` when the
   * health was already that (the cause is still refreshed).
   */
  setHealth(entry: BackendEntry, health: BackendHealth, reason: TeardownReason, cause: HealthCause): StateChange | undefined {
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
    const tornDown = health === 'down' ? this.#registry.takeOut(entry, reason, this.#reset()) : 0;
    return this.#changed(entry, 'health', previous, reason, tornDown, cause.at);
  }

  /**
   * Sets the admin axis. `maintenance` takes every member out first.
   * Returns the change, or `undefined` when it was already that.
   */
  setAdmin(entry: BackendEntry, admin: AdminState, reason: TeardownReason): StateChange | undefined {
    if (entry.admin === admin) return undefined;
    const at = this.#clock.now();
    const previous = point(entry);
    entry.admin = admin;
    entry.adminSince = at;
    entry.reason = reason;
    const tornDown = admin === 'maintenance' ? this.#registry.takeOut(entry, reason, this.#reset()) : 0;
    return this.#changed(entry, 'admin', previous, reason, tornDown, at);
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

function point(entry: BackendEntry): StatePoint {
  return { health: entry.health, admin: entry.admin, state: entry.state };
}
