/**
 * The pool's invariants, checked from the outside after every step of a
 * randomized run (test/invariants.test.ts):
 *
 * 1. The registry holds exactly the open connections: every connection the
 *    pool reported opened and not yet closed, and nothing else.
 * 2. No connection is pinned to a backend that is not `up` or `draining`
 *    (so, once `markDown` has returned, none is pinned to that backend).
 * 3. Every connection's `closed` fired exactly once (on the connection and
 *    on the pool), with a reason, and both its sockets are destroyed.
 * 4. Per-backend counters add up: active, total, teardowns and bytes per
 *    backend match what was observed for that backend since it was (re)added,
 *    and the pool's totals match the sums.
 */
import type { ConnectionClosedInfo, PinnedConnection, UpstreamPool } from '../../src/index.js';

interface Seen {
  readonly conn: PinnedConnection;
  readonly backend: string;
  /** Which incarnation of the backend id (re-adding an id starts fresh counters). */
  readonly generation: number;
  ownClosed: number;
  poolClosed: number;
  info: ConnectionClosedInfo | undefined;
}

const knownReasons = new Set([
  'probe-failed',
  'marked-down',
  'maintenance',
  'backend-removed',
  'drained',
  'idle-timeout',
  'client-closed',
  'upstream-closed',
  'client-error',
  'upstream-error',
  'pool-closed',
  'pool-destroyed',
  'destroyed',
]);

/** Follows a pool's events and checks its invariants against what it saw. */
export class InvariantChecker {
  readonly #pool: UpstreamPool;
  readonly #seen = new Map<PinnedConnection, Seen>();
  readonly #generation = new Map<string, number>();
  readonly #customReasons: ReadonlySet<string>;
  /** Teardowns counted by the pool for backends since removed (their entries are gone from `stats()`). */
  closedTotal = 0;
  opened = 0;

  constructor(pool: UpstreamPool, customReasons: readonly string[] = []) {
    this.#pool = pool;
    this.#customReasons = new Set(customReasons);
    for (const b of pool.backends()) this.#generation.set(b.id, 1);
    pool.on('backendAdded', (b) => this.#generation.set(b.id, (this.#generation.get(b.id) ?? 0) + 1));
    pool.on('connectionOpened', (conn) => {
      const backend = conn.backend?.id ?? '?';
      const seen: Seen = { conn, backend, generation: this.#generation.get(backend) ?? 0, ownClosed: 0, poolClosed: 0, info: undefined };
      this.#seen.set(conn, seen);
      this.opened++;
      conn.on('closed', (info) => {
        seen.ownClosed++;
        seen.info = info;
      });
    });
    pool.on('connectionClosed', (conn) => {
      const seen = this.#seen.get(conn);
      if (seen === undefined) throw new Error('connectionClosed for a connection the pool never reported opened');
      seen.poolClosed++;
      this.closedTotal++;
    });
  }

  /** Every connection seen, open or closed. */
  get connections(): PinnedConnection[] {
    return [...this.#seen.keys()];
  }

  /** Open connections of one backend (or all), as observed. */
  open(backend?: string): PinnedConnection[] {
    const out: PinnedConnection[] = [];
    for (const s of this.#seen.values()) if (!s.conn.closed && (backend === undefined || s.backend === backend)) out.push(s.conn);
    return out;
  }

  /** Checks every invariant; returns the violations (empty when all hold). */
  violations(): string[] {
    const out: string[] = [];
    const pool = this.#pool;
    const registry = new Set(pool.connections());

    // 1. Registry = open connections.
    let openCount = 0;
    for (const s of this.#seen.values()) {
      const id = `#${s.conn.id} on ${s.backend}`;
      if (s.conn.closed) {
        if (registry.has(s.conn)) out.push(`${id}: closed but still in the registry`);
      } else {
        openCount++;
        if (!registry.has(s.conn)) out.push(`${id}: open but missing from the registry`);
      }
    }
    for (const conn of registry) if (!this.#seen.has(conn)) out.push(`#${conn.id}: in the registry, never reported opened`);

    // 2. Only up or draining backends hold connections.
    for (const conn of registry) {
      const status = pool.status(conn.backend?.id ?? '');
      if (status === undefined) out.push(`#${conn.id}: pinned to ${conn.backend?.id}, which is not in the pool`);
      else if (status.state !== 'up' && status.state !== 'draining') out.push(`#${conn.id}: pinned to ${conn.backend?.id}, which is ${status.state} (${status.reason})`);
    }

    // 3. Closed exactly once, with a reason, sockets destroyed.
    for (const s of this.#seen.values()) {
      const id = `#${s.conn.id} on ${s.backend}`;
      if (s.conn.closed) {
        if (s.ownClosed !== 1) out.push(`${id}: closed fired ${s.ownClosed} times`);
        if (s.poolClosed !== 1) out.push(`${id}: connectionClosed fired ${s.poolClosed} times`);
        const reason = s.info?.reason;
        if (typeof reason !== 'string' || !(knownReasons.has(reason) || this.#customReasons.has(reason))) out.push(`${id}: teardown reason ${String(reason)}`);
        if (!s.conn.client.destroyed || !s.conn.upstream.destroyed) out.push(`${id}: closed with a socket not destroyed`);
      } else if (s.ownClosed !== 0 || s.poolClosed !== 0) {
        out.push(`${id}: open, yet closed fired ${s.ownClosed}/${s.poolClosed} times`);
      }
    }

    // 4. Counters add up.
    const stats = pool.stats();
    if (stats.active !== openCount) out.push(`stats.active ${stats.active} != ${openCount} open`);
    if (stats.active !== registry.size) out.push(`stats.active ${stats.active} != registry size ${registry.size}`);
    if (stats.total !== this.opened) out.push(`stats.total ${stats.total} != ${this.opened} opened`);
    const poolTeardowns = Object.values(stats.teardowns).reduce((a, b) => a + b, 0);
    if (poolTeardowns !== this.closedTotal) out.push(`pool teardowns ${poolTeardowns} != ${this.closedTotal} closed`);
    for (const reason of Object.keys(stats.teardowns)) {
      if (!(knownReasons.has(reason) || this.#customReasons.has(reason))) out.push(`pool teardown reason ${JSON.stringify(reason)}`);
    }
    let sumActive = 0;
    for (const b of stats.backends) {
      sumActive += b.active;
      const generation = this.#generation.get(b.id);
      let active = 0;
      let total = 0;
      let closed = 0;
      let fromClient = 0;
      let fromUpstream = 0;
      for (const s of this.#seen.values()) {
        if (s.backend !== b.id || s.generation !== generation) continue;
        total++;
        if (s.conn.closed) {
          closed++;
          fromClient += s.info?.bytesFromClient ?? 0;
          fromUpstream += s.info?.bytesFromUpstream ?? 0;
        } else {
          active++;
          fromClient += s.conn.bytesFromClient;
          fromUpstream += s.conn.bytesFromUpstream;
        }
      }
      const teardowns = Object.values(b.teardowns).reduce((x, y) => x + y, 0);
      if (b.active !== active) out.push(`${b.id}: active ${b.active} != ${active}`);
      if (b.total !== total) out.push(`${b.id}: total ${b.total} != ${total}`);
      if (teardowns !== closed) out.push(`${b.id}: teardowns ${teardowns} != ${closed} closed`);
      if (b.bytesFromClient !== fromClient) out.push(`${b.id}: bytesFromClient ${b.bytesFromClient} != ${fromClient}`);
      if (b.bytesFromUpstream !== fromUpstream) out.push(`${b.id}: bytesFromUpstream ${b.bytesFromUpstream} != ${fromUpstream}`);
      if (b.dialling < 0) out.push(`${b.id}: dialling ${b.dialling}`);
    }
    if (sumActive !== stats.active) out.push(`sum of backend active ${sumActive} != stats.active ${stats.active}`);
    return out;
  }
}
