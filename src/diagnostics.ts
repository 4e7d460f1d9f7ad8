/**
 * The `node:diagnostics_channel` channels the library publishes on, for
 * tools (APM agents, tracers) that watch a process without holding a
 * reference to its pools: `diagnostics_channel.subscribe('failover-proxy:…', fn)`.
 * The names are the typed events' names (one vocabulary: debug lines, events,
 * channels); docs/diagnostics.md lists them with their messages.
 *
 * Every publish first checks `hasSubscribers`, so with nobody listening a
 * publish point costs a call and a property read, and no message is built.
 * The channel objects are made on first use, not at import time.
 *
 * @module
 */
import { channel, type Channel } from 'node:diagnostics_channel';
import type { Backend } from './backend.js';
import type { CheckResult, StateChange } from './events.js';
import type { HealthVerdict } from './health-state.js';
import type { ConnectionClosedInfo, PoolMember, TeardownReason } from './pool-member.js';

/** Every channel name, including the ones reserved for what is not published yet. */
export const channelNames = Object.freeze({
  backendStateChanged: 'failover-proxy:backendStateChanged',
  connectionOpened: 'failover-proxy:connectionOpened',
  connectionClosed: 'failover-proxy:connectionClosed',
  checked: 'failover-proxy:checked',
  teardown: 'failover-proxy:teardown',
  /** Reserved: changes of a discovered backend list. */
  discovery: 'failover-proxy:discovery',
} as const);

/** Message of `failover-proxy:backendStateChanged`: either axis of a backend changed. */
export interface BackendStateChangedMessage {
  /** The pool (an `UpstreamPool`). */
  readonly pool: object;
  readonly backend: Backend;
  /** `from`, `to`, `axis`, `reason`, and its cause (`cause.source`, `cause.code`). */
  readonly change: StateChange;
}

/** Message of `failover-proxy:connectionOpened`: a member joined a pool's registry. */
export interface ConnectionOpenedMessage {
  readonly pool: object;
  readonly member: PoolMember;
  readonly backend: Backend | undefined;
}

/** Message of `failover-proxy:connectionClosed`: a member left a pool's registry. */
export interface ConnectionClosedMessage {
  readonly pool: object;
  readonly member: PoolMember;
  readonly backend: Backend | undefined;
  /** `reason`, byte counts and duration. */
  readonly info: ConnectionClosedInfo;
}

/** Message of `failover-proxy:checked`: a probe's check result, with the verdict it caused. */
export interface CheckedMessage {
  /** The probe (a `HealthProbe`). */
  readonly probe: object;
  readonly result: CheckResult;
  /** `'up'` or `'down'` when this result crossed `rise` or `fall`, else `undefined`. */
  readonly verdict: HealthVerdict | undefined;
}

/** Message of `failover-proxy:teardown`: a backend's members were taken out of service at once. */
export interface TeardownMessage {
  readonly backend: Backend;
  readonly reason: TeardownReason;
  /** Members taken out. */
  readonly count: number;
  /** Whether their sockets close in slices on later turns (more than `teardown.syncMax`). */
  readonly sliced: boolean;
}

let backendStateChanged: Channel | undefined;
let connectionOpened: Channel | undefined;
let connectionClosed: Channel | undefined;
let checked: Channel | undefined;
let teardown: Channel | undefined;

export function publishBackendStateChanged(pool: object, backend: Backend, change: StateChange): void {
  const ch = (backendStateChanged ??= channel(channelNames.backendStateChanged));
  if (ch.hasSubscribers) ch.publish({ pool, backend, change } satisfies BackendStateChangedMessage);
}

export function publishConnectionOpened(pool: object, member: PoolMember): void {
  const ch = (connectionOpened ??= channel(channelNames.connectionOpened));
  if (ch.hasSubscribers) ch.publish({ pool, member, backend: member.backend } satisfies ConnectionOpenedMessage);
}

export function publishConnectionClosed(pool: object, member: PoolMember, info: ConnectionClosedInfo): void {
  const ch = (connectionClosed ??= channel(channelNames.connectionClosed));
  if (ch.hasSubscribers) ch.publish({ pool, member, backend: member.backend, info } satisfies ConnectionClosedMessage);
}

export function publishChecked(probe: object, result: CheckResult, verdict: HealthVerdict | undefined): void {
  const ch = (checked ??= channel(channelNames.checked));
  if (ch.hasSubscribers) ch.publish({ probe, result, verdict } satisfies CheckedMessage);
}

export function publishTeardown(backend: Backend, reason: TeardownReason, count: number, sliced: boolean): void {
  const ch = (teardown ??= channel(channelNames.teardown));
  if (ch.hasSubscribers) ch.publish({ backend, reason, count, sliced } satisfies TeardownMessage);
}
