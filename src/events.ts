/**
 * Typed event maps. Names are past-tense facts; payloads are labelled tuples.
 *
 * @module
 */
import type { Socket } from 'node:net';
import type { Backend } from './backend.js';
import type { AdminState, BackendHealth, BackendState, HealthCause } from './backend-status.js';
import type { CheckOutcome } from './health-state.js';
import type { CheckError, ConnectError, ConnectTimeoutError, FailoverProxyError } from './errors.js';
import type { MemberEvents, PoolMember, ConnectionClosedInfo } from './pool-member.js';

export type { ConnectionClosedInfo, MemberEvents, TeardownReason } from './pool-member.js';

/** Events of a {@link PinnedConnection} (the member events). */
export type PinnedConnectionEvents = MemberEvents;

/** Where both axes stood before or after a change. */
export interface StatePoint {
  readonly health: BackendHealth;
  readonly admin: AdminState;
  readonly state: BackendState;
}

/**
 * One change of a backend's state, on either axis. `from`/`to` are the
 * derived one-word states (for logs); `previous` and the top-level
 * `health`/`admin` are both axes before and after.
 */
export interface StateChange extends StatePoint {
  readonly from: BackendState;
  readonly to: BackendState;
  readonly previous: StatePoint;
  /** Which axis changed. */
  readonly axis: 'health' | 'admin';
  /** The reason given (a teardown reason for changes that took the backend out). */
  readonly reason: string;
  /** Why the health is what it is now. */
  readonly cause: HealthCause;
  /** Clock time of the change (ms since epoch). */
  readonly at: number;
  /** Members taken out of the registry, synchronously, by this change. */
  readonly tornDown: number;
}

/** @deprecated the same as {@link StateChange}, which now always carries `tornDown`. */
export type DownChange = StateChange;

/** What `pool.update()` changed. */
export interface BackendUpdate {
  readonly weight?: number | undefined;
  readonly maxConnections?: number | undefined;
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** Events of an {@link UpstreamPool}. */
export interface UpstreamPoolEvents {
  backendAdded: [backend: Backend];
  backendRemoved: [backend: Backend];
  /** A live backend's tunables changed (`update()`, `reconcile()`). */
  backendUpdated: [backend: Backend, changed: BackendUpdate];
  /** Every change of either axis. Emitted before the specific event. */
  backendStateChanged: [backend: Backend, change: StateChange];
  /** Health became `up`. */
  backendUp: [backend: Backend, change: StateChange];
  /**
   * Health became `leaving`: the backend said it is shutting down gracefully
   * and still serves. It takes no new connection; its members stay for it to
   * close until the pool's `leavingGrace`, then are closed at `leavingRate`.
   */
  backendLeaving: [backend: Backend, change: StateChange];
  /** Health became `down`; emitted after every member of the backend was taken out. */
  backendDown: [backend: Backend, change: StateChange];
  /** Admin became `draining`. */
  backendDraining: [backend: Backend, change: StateChange];
  /** Admin became `maintenance`; emitted after every member was taken out. */
  backendMaintenance: [backend: Backend, change: StateChange];
  /** Admin became `active` again. */
  backendReady: [backend: Backend, change: StateChange];
  /** A member (a pinned pair, an agent socket, …) joined the registry; `member.kind` says which. */
  connectionOpened: [member: PoolMember];
  /** A member left the registry; `info.reason` says why. */
  connectionClosed: [member: PoolMember, info: ConnectionClosedInfo];
  /** A dial failed: a passive health signal (a probe counts it as a failed check). */
  connectFailed: [backend: Backend, error: ConnectTimeoutError | ConnectError];
  /** A pinned connection's writes stalled: a passive health signal. */
  writeStalled: [backend: Backend, member: PoolMember];
  /** A client could not be given a backend and was closed. */
  pinFailed: [error: FailoverProxyError, client: Socket];
  /** Every backend became ineligible (`active: true`: the all-down policy applies) or one became eligible again (`active: false`); see `allDown`. */
  allDownChanged: [active: boolean, policy: 'queue' | 'fail-open'];
  /** `close()` or `destroy()` finished. */
  closed: [];
}

/** The outcome of one health check. */
export interface CheckResult {
  readonly backend: Backend;
  /** The check passed (`outcome === 'pass'`). */
  readonly ok: boolean;
  /** `pass`, `leaving` (answered: not ready, still serving) or `fail`. */
  readonly outcome: CheckOutcome;
  /** Why it failed; `error.layer` says which layer (connect, tls, protocol, timeout, custom). */
  readonly error: CheckError | undefined;
  /** What the backend said when the outcome is `leaving` (the check's message). */
  readonly message?: string | undefined;
  /** Time the check took, in ms. */
  readonly durationMs: number;
  /** Clock time when the check finished. */
  readonly at: number;
  /**
   * `true` when no check ran: the pool reported a failed dial and the probe,
   * with `countConnectFailures`, counted it as a failed check (or, at layer
   * `local`, reported it with `checkSkipped`).
   */
  readonly passive: boolean;
}

/** Events of a {@link HealthProbe}. */
export interface HealthProbeEvents {
  /** Every check result. */
  checked: [result: CheckResult];
  /** The backend crossed `rise`: now healthy. */
  healthy: [backend: Backend, result: CheckResult];
  /** The backend crossed `fall`: now unhealthy. */
  unhealthy: [backend: Backend, result: CheckResult];
  /**
   * A check or a dial failed in this process, not at the backend (layer
   * `local`: EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL, ENOMEM...). No verdict:
   * the backend's rise/fall counter did not move, and no `checked` is emitted.
   */
  checkSkipped: [backend: Backend, result: CheckResult];
  /** Evidence (a stalled write toward the backend) started a check of it now; `reason` names the evidence. */
  checkTriggered: [backend: Backend, reason: 'write-stalled'];
  /** The backend answered `leaving` (and did not pass) `fall` times in a row: not ready, still serving. */
  leaving: [backend: Backend, result: CheckResult];
  /** `stop()` finished. */
  stopped: [];
}
