/**
 * Typed event maps. Names are past-tense facts; payloads are labelled tuples.
 *
 * @module
 */
import type { Socket } from 'node:net';
import type { Backend, BackendState } from './backend.js';
import type { CheckError, ConnectError, ConnectTimeoutError, FailoverProxyError } from './errors.js';
import type { PinnedConnection } from './pinned-connection.js';
import type { PinnedSocket } from './pinned-socket.js';

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
 * - `destroyed`: `destroy()` was called on the connection without a reason.
 *
 * Custom reasons passed to `markDown(id, reason)` or `destroy(reason)` are carried as given.
 */
export type TeardownReason =
  | 'probe-failed'
  | 'marked-down'
  | 'maintenance'
  | 'backend-removed'
  | 'drained'
  | 'idle-timeout'
  | 'client-closed'
  | 'upstream-closed'
  | 'client-error'
  | 'upstream-error'
  | 'pool-closed'
  | 'pool-destroyed'
  | 'destroyed'
  | (string & {});

/** What a closed connection reports, once. */
export interface ConnectionClosedInfo {
  readonly reason: TeardownReason;
  /** The socket error that caused the teardown, if one did. */
  readonly error: Error | undefined;
  /** Bytes read from the client (and forwarded upstream). */
  readonly bytesFromClient: number;
  /** Bytes read from the upstream (and forwarded to the client). */
  readonly bytesFromUpstream: number;
  /** How long the connection was open, in ms. */
  readonly durationMs: number;
}

/** Events of a {@link PinnedConnection}. */
export interface PinnedConnectionEvents {
  /** Both sockets are destroyed. Emitted exactly once. */
  closed: [info: ConnectionClosedInfo];
}

/** One state transition of a backend. */
export interface StateChange {
  readonly from: BackendState;
  readonly to: BackendState;
  readonly reason: string;
  /** Clock time of the change (ms since epoch). */
  readonly at: number;
}

/** A transition to `down` (or `maintenance`), with how many connections it tore down. */
export interface DownChange extends StateChange {
  /** Connections destroyed, synchronously, by this transition. */
  readonly tornDown: number;
}

/** Events of an {@link UpstreamPool}. */
export interface UpstreamPoolEvents {
  backendAdded: [backend: Backend];
  backendRemoved: [backend: Backend];
  /** Every transition, whatever its target state. Emitted before the specific event. */
  backendStateChanged: [backend: Backend, change: StateChange];
  backendUp: [backend: Backend, change: StateChange];
  /** Emitted after every connection pinned to the backend was destroyed. */
  backendDown: [backend: Backend, change: DownChange];
  backendDraining: [backend: Backend, change: StateChange];
  backendMaintenance: [backend: Backend, change: DownChange];
  connectionOpened: [connection: PinnedConnection];
  connectionClosed: [connection: PinnedConnection, info: ConnectionClosedInfo];
  /** A single upstream socket (a {@link PinnedSocket}, e.g. a `PoolAgent`'s) joined the registry. */
  socketOpened: [socket: PinnedSocket];
  /** A registered upstream socket closed; `info.reason` says why, as for connections. */
  socketClosed: [socket: PinnedSocket, info: ConnectionClosedInfo];
  /** A dial failed: a passive health signal (a probe may count it as a failed check). */
  connectFailed: [backend: Backend, error: ConnectTimeoutError | ConnectError];
  /** A client could not be given a backend and was closed. */
  pinFailed: [error: FailoverProxyError, client: Socket];
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
