/**
 * What every member made by this package has in common (a
 * {@link PinnedConnection}, a {@link PinnedSocket}): its backend, id and
 * opening time, the once-only `closed` report, and the validation of a
 * graceful close's deadline. The subclasses only move bytes and choose
 * reasons.
 *
 * @module
 */
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { Backend } from './backend.js';
import { systemClock, type Clock } from './clock.js';
import type { ConnectionClosedInfo, MemberEvents, TeardownReason } from './events.js';
import { MAX_TIMER_MS } from './limits.js';
import {
  DEFAULT_MEMBER_CLOSE_TIMEOUT,
  kMember,
  type DestroyOptions,
  type MemberCloseOptions,
  type MemberKind,
  type PoolMember,
} from './pool-member.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:conn');

/** What every member built by hand may be given. */
export interface MemberInit {
  /** The backend the member leads to (needed to register with a pool). */
  readonly backend?: Backend | undefined;
  /** An identifier for logs. @default the peer's `address:port` */
  readonly id?: string | undefined;
  /** Time source for `openedAt` and `durationMs`. */
  readonly clock?: Clock | undefined;
}

/**
 * The shared part of the package's members.
 *
 * @internal
 */
export abstract class MemberBase extends EventEmitter<MemberEvents> implements PoolMember {
  abstract readonly [kMember]: MemberKind;
  abstract readonly kind: MemberKind;
  /** The backend the member is pinned to, when known. */
  readonly backend: Backend | undefined;
  /** Identifier for logs. */
  readonly id: string;
  /** Clock time the member was made (ms since epoch). */
  readonly openedAt: number;
  readonly #clock: Clock;
  #info: ConnectionClosedInfo | undefined;

  /** `peer`: the socket whose `address:port` names the member when `init.id` does not. */
  protected constructor(init: MemberInit, peer: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }) {
    super();
    this.backend = init.backend;
    this.#clock = init.clock ?? systemClock;
    this.openedAt = this.#clock.now();
    this.id = init.id ?? `${peer.remoteAddress ?? '?'}:${peer.remotePort ?? '?'}`;
  }

  abstract readonly bytesFromClient: number;
  abstract readonly bytesFromUpstream: number;
  abstract readonly closed: boolean;
  abstract close(reason?: TeardownReason, options?: MemberCloseOptions): void;
  abstract destroy(reason?: TeardownReason, options?: DestroyOptions): void;

  /** What the `closed` event reported, once closed. */
  get closedInfo(): ConnectionClosedInfo | undefined {
    return this.#info;
  }

  /** Records and emits the one `closed` report. The subclass has closed its sockets. */
  protected reportClosed(reason: TeardownReason, error: Error | undefined, bytesFromClient: number, bytesFromUpstream: number): void {
    const info: ConnectionClosedInfo = Object.freeze({
      reason,
      kind: this.kind,
      error,
      bytesFromClient,
      bytesFromUpstream,
      durationMs: this.#clock.now() - this.openedAt,
    });
    this.#info = info;
    if (log.enabled) log('%s closed: %s (%d B from the client side, %d B from the upstream)', this.id, reason, bytesFromClient, bytesFromUpstream);
    this.emit('closed', info);
  }
}

/** The deadline of a graceful close, validated. @internal */
export function closeTimeoutOf(options: MemberCloseOptions): number {
  return v.integer('timeout', options.timeout ?? DEFAULT_MEMBER_CLOSE_TIMEOUT, 0, MAX_TIMER_MS);
}
