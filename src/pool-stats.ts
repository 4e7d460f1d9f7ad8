/**
 * The pool's snapshot: every backend with both state axes and its counters,
 * and the pool's totals. Plain, JSON-safe data, built on demand (bytes of
 * open members are read from their sockets' own counters then, so the data
 * path keeps no tally).
 *
 * @module
 */
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { BackendStatus } from './backend-status.js';

/** A per-backend snapshot in {@link PoolStats}. */
export interface BackendStats extends BackendStatus {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly maxConnections: number;
  /** Members open now. */
  readonly active: number;
  /** Dials in flight now. */
  readonly dialling: number;
  /** Members registered since the backend was added. */
  readonly total: number;
  /** Failed dials the backend caused (refused, timed out, reset) since it was added; local errors are in the pool's `localDialErrors`. */
  readonly connectFailures: number;
  /** Members torn down for stalled writes since the backend was added. */
  readonly writeStalls: number;
  /** Bytes read from clients and sent to this backend (open and closed members). */
  readonly bytesFromClient: number;
  /** Bytes read from this backend and sent to clients. */
  readonly bytesFromUpstream: number;
  /** Closed members by teardown reason. */
  readonly teardowns: Readonly<Record<string, number>>;
}

/**
 * Where a pool is in its life: `open`, then `closing` from the first
 * `close()` or `destroy()` (no new placements; verdicts still act), then
 * `closed` once every member is gone.
 */
export type PoolState = 'open' | 'closing' | 'closed';

/** A snapshot of the pool, from {@link UpstreamPool.stats}. */
export interface PoolStats {
  /** Clock time of the snapshot. */
  readonly at: number;
  /** `open`, `closing` or `closed`. */
  readonly state: PoolState;
  /** Whether `close()` or `destroy()` was called (`state` is not `open`). */
  readonly closed: boolean;
  /** Members open now, all backends. */
  readonly active: number;
  /** Members taken out whose sockets are still being closed (sliced teardown). */
  readonly closing: number;
  /** Clients waiting for a backend. */
  readonly waiting: number;
  /** Members registered since the pool was made. */
  readonly total: number;
  /** No backend is eligible now. */
  readonly allDown: boolean;
  readonly backends: readonly BackendStats[];
  /** Closed members by teardown reason, all backends (including removed ones). */
  readonly teardowns: Readonly<Record<string, number>>;
  /** Clients that could not be placed, by error code. */
  readonly pinFailures: Readonly<Record<string, number>>;
  /**
   * Dials that failed in this process (EMFILE, ENOBUFS, EADDRNOTAVAIL...),
   * counted against no backend (not in any backend's `connectFailures`).
   */
  readonly localDialErrors: number;
}

/** The pool-wide part of a snapshot, as the pool knows it. @internal */
export type PoolTotals = Omit<PoolStats, 'active' | 'backends'>;

/** Builds the snapshot of `entries` with the pool's totals. @internal */
export function snapshot(entries: Iterable<ReadonlyBackendEntry>, totals: PoolTotals): PoolStats {
  const backends: BackendStats[] = [];
  let active = 0;
  for (const entry of entries) {
    let bytesFromClient = entry.closedBytesFromClient;
    let bytesFromUpstream = entry.closedBytesFromUpstream;
    for (const member of entry.members) {
      bytesFromClient += member.bytesFromClient;
      bytesFromUpstream += member.bytesFromUpstream;
    }
    active += entry.members.size;
    const { backend } = entry;
    backends.push({
      id: backend.id,
      host: backend.host,
      port: backend.port,
      weight: backend.weight,
      maxConnections: backend.maxConnections,
      ...entry.status(),
      active: entry.members.size,
      dialling: entry.dialling,
      total: entry.total,
      connectFailures: entry.connectFailures,
      writeStalls: entry.writeStalls,
      bytesFromClient,
      bytesFromUpstream,
      teardowns: { ...entry.teardowns },
    });
  }
  return { ...totals, active, backends };
}
