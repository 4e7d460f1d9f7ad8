/**
 * The pool's record of one backend: both state axes, the members registered
 * under it, dials in flight and counters. One module writes it, the
 * {@link BackendTable}, through methods named after intents; every other
 * module reads it through {@link ReadonlyBackendEntry}.
 *
 * @module
 * @internal
 */
import type { Backend } from './backend.js';
import { deriveState, type AdminState, type BackendHealth, type BackendState, type BackendStatus, type HealthCause } from './backend-status.js';
import type { PickCandidate } from './balancers/balancer.js';
import type { Clock } from './clock.js';

/** Slow-start settings shared by a pool's entries. @internal */
export interface SlowStart {
  /** Ramp length in ms; 0 disables slow start. */
  readonly duration: number;
  /** Share of the weight at the start of the ramp, in (0, 1]. */
  readonly floor: number;
  readonly clock: Clock;
}
import type { PoolMember } from './pool-member.js';

/**
 * What every module but the backend table sees of a backend's record.
 *
 * @internal
 */
export interface ReadonlyBackendEntry extends PickCandidate {
  readonly backend: Backend;
  readonly health: BackendHealth;
  readonly admin: AdminState;
  readonly cause: HealthCause;
  readonly reason: string;
  readonly state: BackendState;
  /** Members registered under this backend (insertion order = oldest first). */
  readonly members: ReadonlySet<PoolMember>;
  /** Dials in flight: counted from the pick until the member is attached or the lease released. */
  readonly dialling: number;
  /** Members open plus dials in flight. */
  readonly active: number;
  readonly total: number;
  readonly connectFailures: number;
  readonly writeStalls: number;
  readonly closedBytesFromClient: number;
  readonly closedBytesFromUpstream: number;
  readonly teardowns: Readonly<Record<string, number>>;
  /** Out of the pool (a lease or a late `closed` may still hold it). */
  readonly removed: boolean;
  /** A drain that ends in removal is under way. */
  readonly removing: boolean;
  /** Takes new connections: healthy, active, not removed, weight above 0. */
  readonly eligible: boolean;
  status(): BackendStatus;
}

/**
 * The record itself: only the backend table holds it as this type.
 *
 * @internal
 */
export class BackendEntry implements ReadonlyBackendEntry {
  health: BackendHealth;
  admin: AdminState = 'active';
  cause: HealthCause;
  healthSince: number;
  adminSince: number;
  reason: string;
  /** Members registered under this backend (insertion order = oldest first). */
  readonly members = new Set<PoolMember>();
  /** Dials in flight: counted from the pick until the member is attached or the lease released. */
  dialling = 0;
  total = 0;
  connectFailures = 0;
  writeStalls = 0;
  closedBytesFromClient = 0;
  closedBytesFromUpstream = 0;
  readonly teardowns: Record<string, number> = Object.create(null) as Record<string, number>;
  drainTimer: unknown = undefined;
  /** Clock time the drain in force ends (its members are taken out then). */
  drainDeadlineAt = 0;
  drainWaiters: (() => void)[] = [];
  removed = false;
  /** A drain that ends in removal is under way (`remove(id, { drain: true })`, `reconcile`). */
  removing = false;
  /** Why a draining removal was called off (`markReady`'s reason, `relisted`), until the removal settles. */
  calledOff: string | undefined = undefined;
  /** Clock time the backend last became eligible (up and active); 0 if never. */
  eligibleSince = 0;
  /** While above `now`, the backend warms up (slow start); 0 once warm. */
  warmUntil = 0;
  /** Whether its first eligibility is warmed up too (added to a running pool). */
  warmFirst = false;

  constructor(
    readonly backend: Backend,
    health: BackendHealth,
    cause: HealthCause,
    readonly warmup: SlowStart,
  ) {
    this.health = health;
    this.cause = cause;
    this.healthSince = cause.at;
    this.adminSince = cause.at;
    this.reason = cause.code;
  }

  /** Members open plus dials in flight: what least-connections compares. */
  get active(): number {
    return this.members.size + this.dialling;
  }

  /**
   * The weight pickers use now: the configured weight, ramped linearly from
   * `floor` of it to all of it over `duration` ms after the backend became
   * eligible (slow start, as HAProxy's `slowstart`).
   */
  get effectiveWeight(): number {
    return this.backend.weight * this.warmth;
  }

  /** The slow-start multiplier in (0, 1]; 1 once warm. Reads the clock only while warming. */
  get warmth(): number {
    if (this.warmUntil === 0) return 1;
    const { duration, floor, clock } = this.warmup;
    const left = this.warmUntil - clock.now();
    if (left <= 0) {
      this.warmUntil = 0;
      return 1;
    }
    return floor + (1 - floor) * (1 - left / duration);
  }

  /** Whether slow start is under way. */
  get warming(): boolean {
    return this.warmth < 1;
  }

  /** The backend just became eligible: record when, and start warming. */
  becameEligible(at: number, warm: boolean): void {
    this.eligibleSince = at;
    this.warmUntil = warm && this.warmup.duration > 0 ? at + this.warmup.duration : 0;
  }

  get state(): BackendState {
    return deriveState(this.health, this.admin);
  }

  /** Takes new connections: healthy, active, not removed, weight above 0. */
  get eligible(): boolean {
    return this.health === 'up' && this.admin === 'active' && !this.removed && this.backend.weight > 0;
  }

  get since(): number {
    return Math.max(this.healthSince, this.adminSince);
  }

  status(): BackendStatus {
    return {
      health: this.health,
      admin: this.admin,
      state: this.state,
      cause: this.cause,
      since: this.since,
      healthSince: this.healthSince,
      adminSince: this.adminSince,
      reason: this.reason,
      eligible: this.eligible,
      eligibleSince: this.eligibleSince,
      members: this.members.size,
      effectiveWeight: this.effectiveWeight,
      warming: this.warming,
    };
  }
}
