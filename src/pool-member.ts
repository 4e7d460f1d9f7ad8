/**
 * The one contract every registry member fulfils: a client-to-upstream pair
 * ({@link PinnedConnection}), a single upstream socket owned by someone else
 * ({@link PinnedSocket}), and whatever comes next (an HTTP/2 session). The
 * pool treats them alike: it only needs the backend, counters, a graceful
 * `close(reason)`, a forced `destroy(reason)`, and a `closed` event.
 *
 * Membership is recognised by a `Symbol.for` brand rather than `instanceof`,
 * so a member made by one copy of the package is accepted by a pool from
 * another (an ESM and a CommonJS entry loaded in one process).
 *
 * @module
 */
import type { EventEmitter } from 'eventemitter3';
import type { Backend } from './backend.js';

/**
 * Why a connection was torn down. Every teardown carries one, in the
 * `connectionClosed` event and in `stats().teardowns`.
 *
 * - `probe-failed`: its backend failed `fall` health checks in a row.
 * - `marked-down`: `markDown()` was called without a more specific reason.
 * - `maintenance`: its backend was put in maintenance.
 * - `backend-removed`: its backend was removed from the pool.
 * - `drained`: its backend was drained and the deadline passed (or an agent's idle socket to it was evicted).
 * - `idle-timeout`: no byte moved either way for `idleTimeout` ms.
 * - `client-closed` / `upstream-closed`: that side closed (after FIN both ways, the side that closed first).
 * - `client-error` / `upstream-error`: that side's socket failed (reset, timeout, EPIPE).
 * - `pool-closing`: closed gracefully by the pool's `close()` (FIN, or an idle
 *   agent socket evicted); `pool-closed`: still open at its deadline, destroyed;
 *   `pool-destroyed`: `destroy()`.
 * - `rebalanced`: closed gracefully to move load back to a backend below its share.
 * - `leaving-grace`: its backend said it was leaving (health `leaving`) and
 *   still held it when the pool's `leavingGrace` ran out; closed gracefully,
 *   at `leavingRate`.
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
  | 'leaving-grace'
  | 'write-stalled'
  | 'idle-timeout'
  | 'client-closed'
  | 'upstream-closed'
  | 'client-error'
  | 'upstream-error'
  | 'pool-closing'
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

/**
 * The brand every member carries, with its kind as the value; exported from
 * the package root as `memberBrand`, so a member of your own can be typed:
 * `readonly [memberBrand] = 'h2-session' as const`. It is `Symbol.for(…)`,
 * the same symbol in every copy of the package.
 */
export const kMember: unique symbol = Symbol.for('failover-proxy.member') as never;

/**
 * Internal hook, shared across copies of the package: stop moving bytes now,
 * without closing anything yet. The registry calls it when it takes a member
 * out, so "no byte forwarded" holds at once while the sockets are closed in
 * slices later.
 *
 * @internal
 */
export const kQuiesce: unique symbol = Symbol.for('failover-proxy.member.quiesce') as never;

/**
 * Internal hook, shared across copies of the package: the gate a pair reads
 * before it moves any byte. The registry gives every pair of one backend the
 * same gate and shuts it to take them all out at once: one store, where
 * quiescing each pair (two `off`, two `pause`) took 9.4–11.7 ms of CPU for
 * 9,900 pairs inside the `markDown` call.
 *
 * @internal
 */
export const kGate: unique symbol = Symbol.for('failover-proxy.member.gate') as never;

/** See {@link kGate}. @internal */
export interface MemberGate {
  shut: boolean;
}

/** The gate of a pair no registry holds: never shut. @internal */
export const OPEN_GATE: MemberGate = Object.freeze({ shut: false });

/** The pool a member is registered with (one at most). @internal */
export const kOwner: unique symbol = Symbol.for('failover-proxy.member.owner') as never;

/** What a member is: a client-upstream pair, a lone upstream socket, or a kind of your own. */
export type MemberKind = 'connection' | 'socket' | (string & {});

/** How to tear a member down by force. */
export interface DestroyOptions {
  /**
   * Close the client with a TCP reset instead of a FIN, so it notices at once
   * even if it is only writing. Ignored where there is no client or it cannot
   * be reset (TLS).
   * @default false
   */
  readonly reset?: boolean | undefined;
  /** An error to report in the `closed` event (and to destroy the sockets with). */
  readonly error?: Error | undefined;
}

/** How to close a member gracefully. */
export interface MemberCloseOptions {
  /**
   * Deadline in ms for the peers to finish closing; then the member is
   * destroyed with the same reason.
   * @default 5000
   */
  readonly timeout?: number | undefined;
}

/**
 * One live member of a pool's registry.
 *
 * - `close(reason)` is graceful: a pair sends FIN both ways and closes once
 *   both peers closed; an agent socket is evicted (closed now when idle, after
 *   its request otherwise). Bounded by a deadline, then `destroy(reason)`.
 * - `destroy(reason, options)` is forced and emits `closed` before returning.
 * - Both are idempotent; `closed` is emitted exactly once, with the reason.
 */
export interface PoolMember extends EventEmitter<MemberEvents> {
  /** The brand: the member's kind. */
  readonly [kMember]: MemberKind;
  /** What the member is. */
  readonly kind: MemberKind;
  /** The backend the member is pinned to (needed to register it). */
  readonly backend: Backend | undefined;
  /** Identifier for logs and events. */
  readonly id: string;
  /** Clock time the member was made (ms since epoch). */
  readonly openedAt: number;
  /** Bytes from the client side toward the backend. */
  readonly bytesFromClient: number;
  /** Bytes from the backend toward the client side. */
  readonly bytesFromUpstream: number;
  /** Whether the member has been torn down (or taken out to be). */
  readonly closed: boolean;
  /** What the `closed` event reported, once emitted. */
  readonly closedInfo: ConnectionClosedInfo | undefined;
  close(reason?: TeardownReason, options?: MemberCloseOptions): void;
  destroy(reason?: TeardownReason, options?: DestroyOptions): void;
}

/** Whether `value` carries the member brand (from any copy of the package). */
export function isPoolMember(value: unknown): value is PoolMember {
  return typeof value === 'object' && value !== null && typeof (value as { [kMember]?: unknown })[kMember] === 'string';
}

/** Default deadline of a graceful member close. */
export const DEFAULT_MEMBER_CLOSE_TIMEOUT = 5000;
