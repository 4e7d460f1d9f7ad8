/**
 * The options and results of the pool's calls: drain, remove, reconcile,
 * close and connect.
 *
 * @module
 */
import type { Socket } from 'node:net';
import type { Backend } from './backend.js';
import type { PoolMember } from './pool-member.js';

/** Options of {@link UpstreamPool.drain}. */
export interface DrainOptions {
  /**
   * Deadline in ms; members still open then are destroyed with reason `drained`.
   * @default 30000
   */
  readonly timeout?: number | undefined;
  /**
   * Gives up waiting: the promise rejects with `signal.reason`. The drain
   * itself goes on (the backend stays `draining`, its deadline holds); end
   * it with `markReady`. An already aborted signal rejects at once and
   * starts nothing.
   */
  readonly signal?: AbortSignal | undefined;
}

/** Options of {@link UpstreamPool.remove}. */
export interface RemoveOptions {
  /** Drain before removing, instead of tearing down at once. @default false */
  readonly drain?: boolean | undefined;
  /** Drain deadline, in ms. @default 30000 */
  readonly timeout?: number | undefined;
  /**
   * Gives up waiting for a draining removal: the promise rejects with
   * `signal.reason`, and the removal goes on (call it off with `markReady`).
   * An already aborted signal rejects at once and changes nothing.
   */
  readonly signal?: AbortSignal | undefined;
}

/**
 * How {@link UpstreamPool.remove} ended: the backend left the pool, or the
 * removal was called off while it drained (`reason`: the `markReady` reason,
 * `relisted` when a reconcile listed it again).
 */
export type RemoveResult = { readonly removed: true } | { readonly removed: false; readonly reason: string };

/** Options of {@link UpstreamPool.reconcile}. */
export interface ReconcileOptions {
  /**
   * Deadline in ms for draining backends that are no longer listed; then
   * they are removed (and what is left on them destroyed, reason `drained`).
   * @default 30000
   */
  readonly drainTimeout?: number | undefined;
}

/** What {@link UpstreamPool.reconcile} did. */
export interface ReconcileResult {
  /** Ids added. */
  readonly added: readonly string[];
  /** Ids whose tunables changed. */
  readonly updated: readonly string[];
  /** Ids draining, to be removed. */
  readonly removed: readonly string[];
  /** Ids whose address (or TLS, SNI) changed: removed at once and added anew. */
  readonly replaced: readonly string[];
  /** Ids left as they were. */
  readonly unchanged: readonly string[];
  /** Settles when every drained backend is removed. */
  readonly settled: Promise<void>;
}

/** Options of {@link UpstreamPool.close}. */
export interface CloseOptions {
  /** Grace period in ms before open members are destroyed. @default the pool's `closeTimeout` */
  readonly timeout?: number | undefined;
  /**
   * Gives up waiting: this call's promise rejects with `signal.reason`; the
   * close goes on to its deadline (`destroy()` cuts it short). An already
   * aborted signal rejects at once and starts nothing.
   */
  readonly signal?: AbortSignal | undefined;
}

/** A connected upstream socket and the backend it leads to, from {@link UpstreamPool.connect}. */
export interface UpstreamSocket {
  readonly backend: Backend;
  readonly socket: Socket;
}

/**
 * What the registry holds: anything that fulfils the member contract
 * ({@link PoolMember}): pairs from {@link UpstreamPool.pin}, agent sockets,
 * upgrades, members of your own.
 */
export type PoolConnection = PoolMember;
