/**
 * Typed event maps. Names are past-tense facts; payloads are labelled tuples.
 *
 * @module
 */
import type { Socket } from 'node:net';
import type { Backend } from './backend.js';
import type { AdminState, BackendHealth, BackendState, HealthCause } from './backend-status.js';
import type { CheckError, ConnectError, ConnectTimeoutError, FailoverProxyError } from './errors.js';
import type { PoolMember } from './pool-member.js';

/**
 * Why a connection was torn down. Every teardown carries one, in the
 * `connectionClosed` event and in `stats().teardowns`.
 *
 * - `probe-failed`: its backend failed `fall` health checks in a row.
 * - `marked-down`: `markDown()` was called without a more specific reason.
 * - `maintenance`: its backend was put in maintenance.
 * - `backend-removed`: its backend was removed from the pool.
 * - `drained`: its backend was drained and the deadline passed.
 * - `idle-timeout`: no byte moved either way for `idleTimeout` ms.
 * - `client-closed` / `upstream-closed`: that side closed (after FIN both ways, the side that closed first).
 * - `client-error` / `upstream-error`: that side's socket failed (reset, timeout, EPIPE).
 * - `pool-closed`: the pool's `close()` deadline passed; `pool-destroyed`: `destroy()`.
 * - `rebalanced`: closed gracefully to move load back to a backend below its share.
 * - `write-stalled`: writes toward one side did not drain for `writeStallTimeout` ms.
 * - `destroyed`: `destroy()` was called on the connection without a reason;
 *   `closed`: `close()` was called without a reason.
 *
 * Custom reasons passed to `markDown(id, reason)` or `destroy(reason)` are carried as given.
 */
export type TeardownReason =
  | 'probe-failed'
  | 'marked-down'
  | 'maintenance'
  | 'backend-removed'
  | 'drained'
  | 'rebalanced'
  | 'write-stalled'
  | 'idle-timeout'
  | 'client-closed'
  | 'upstream-closed'
  | 'client-error'
  | 'upstream-error'
  | 'pool-closed'
  | 'pool-destroyed'
  | 'destroyed'
  | 'closed'
  | (string & {});

/** What a closed member reports, once. */
export interface ConnectionClosedInfo {
  readonly reason: TeardownReason;
  /** The member's kind (`connection`, `socket`, …). */
  readonly kind: string;
  /** The socket error that caused the teardown, if one did. */
  readonly error: Error | undefined;
  /** Bytes read from the client (and forwarded upstream). */
  readonly bytesFromClient: number;
  /** Bytes read from the upstream (and forwarded to the client). */
  readonly bytesFromUpstream: number;
  /** How long the connection was open, in ms. */
  readonly durationMs: number;
}

/** Events of every registry member ({@link PoolMember}). */
export interface MemberEvents {
  /** The member is torn down. Emitted exactly once. */
  closed: [info: ConnectionClosedInfo];
}

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
  readonly ok: boolean;
  /** Why it failed; `error.layer` says which layer (connect, tls, protocol, timeout, custom). */
  readonly error: CheckError | undefined;
  /** Time the check took, in ms. */
  readonly durationMs: number;
  /** Clock time when the check finished. */
  readonly at: number;
  /**
   * `true` when no check ran: the pool reported a failed dial and the probe,
   * with `countConnectFailures`, counted it as a failed check.
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
  /** `stop()` finished. */
  stopped: [];
}
