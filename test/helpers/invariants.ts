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
 *
 * Closes are checked as they happen and summed per backend, so a check costs
 * the open connections and the backends, not the whole history;
 * {@link InvariantChecker.audit} re-checks every connection ever seen.
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

/** What was observed for one incarnation of one backend id. */
interface Tally {
  total: number;
  closed: number;
  closedFromClient: number;
  closedFromUpstream: number;
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
  readonly #open = new Set<Seen>();
  readonly #generation = new Map<string, number>();
  readonly #tallies = new Map<string, Tally>();
  readonly #customReasons: ReadonlySet<string>;
  /** Problems seen as events fired (a second close, a missing reason...). */
  readonly #problems: string[] = [];
  closedTotal = 0;
  opened = 0;

  constructor(pool: UpstreamPool, customReasons: readonly string[] = []) {
    this.#pool = pool;
    this.#customReasons = new Set(customReasons);
    for (const b of pool.backends()) this.#generation.set(b.id, 1);
    pool.on('backendAdded', (b) => this.#generation.set(b.id, (this.#generation.get(b.id) ?? 0) + 1));
    pool.on('connectionOpened', (conn) => this.#opened(conn as PinnedConnection));
    pool.on('connectionClosed', (conn, info) => this.#poolClosed(conn as PinnedConnection, info));
  }

  #tally(backend: string, generation: number): Tally {
    const key = `${backend}#${generation}`;
    let tally = this.#tallies.get(key);
    if (tally === undefined) {
      tally = { total: 0, closed: 0, closedFromClient: 0, closedFromUpstream: 0 };
      this.#tallies.set(key, tally);
    }
    return tally;
  }

  #opened(conn: PinnedConnection): void {
    const backend = conn.backend?.id ?? '?';
    const seen: Seen = { conn, backend, generation: this.#generation.get(backend) ?? 0, ownClosed: 0, poolClosed: 0, info: undefined };
    if (this.#seen.has(conn)) this.#problems.push(`#${conn.id}: connectionOpened twice`);
    this.#seen.set(conn, seen);
    this.#open.add(seen);
    this.#tally(backend, seen.generation).total++;
    this.opened++;
    conn.on('closed', (info) => {
      seen.ownClosed++;
      seen.info = info;
      if (seen.ownClosed > 1) this.#problems.push(`#${conn.id} on ${backend}: closed fired ${seen.ownClosed} times`);
    });
  }

  #poolClosed(conn: PinnedConnection, info: ConnectionClosedInfo): void {
    const seen = this.#seen.get(conn);
    if (seen === undefined) {
      this.#problems.push(`#${conn.id}: connectionClosed for a connection the pool never reported opened`);
      return;
    }
    const id = `#${conn.id} on ${seen.backend}`;
    seen.poolClosed++;
    if (seen.poolClosed > 1) {
      this.#problems.push(`${id}: connectionClosed fired ${seen.poolClosed} times`);
      return;
    }
    this.closedTotal++;
    this.#open.delete(seen);
    if (!this.#validReason(info.reason)) this.#problems.push(`${id}: teardown reason ${String(info.reason)}`);
    if (!conn.closed) this.#problems.push(`${id}: connectionClosed while the connection says it is open`);
    if (!conn.client.destroyed || !conn.upstream.destroyed) this.#problems.push(`${id}: closed with a socket not destroyed`);
    const tally = this.#tally(seen.backend, seen.generation);
    tally.closed++;
    tally.closedFromClient += info.bytesFromClient;
    tally.closedFromUpstream += info.bytesFromUpstream;
  }

  #validReason(reason: unknown): boolean {
    return typeof reason === 'string' && (knownReasons.has(reason) || this.#customReasons.has(reason));
  }

  /** Open connections of one backend (or all), as observed. */
  open(backend?: string): PinnedConnection[] {
    const out: PinnedConnection[] = [];
    for (const s of this.#open) if (backend === undefined || s.backend === backend) out.push(s.conn);
    return out;
  }

  /** Checks every invariant; returns the violations (empty when all hold). */
  violations(): string[] {
    const out = [...this.#problems];
    const pool = this.#pool;
    const registry = new Set(pool.connections());

    // 1. Registry = open connections.
    for (const s of this.#open) {
      const id = `#${s.conn.id} on ${s.backend}`;
      if (s.conn.closed) out.push(`${id}: closed, but the pool never reported it`);
      if (s.ownClosed !== 0) out.push(`${id}: open, yet closed fired ${s.ownClosed} times`);
      if (!registry.has(s.conn)) out.push(`${id}: open but missing from the registry`);
    }
    for (const conn of registry) {
      const s = this.#seen.get(conn);
      if (s === undefined) out.push(`#${conn.id}: in the registry, never reported opened`);
      else if (!this.#open.has(s)) out.push(`#${conn.id}: closed but still in the registry`);
    }

    // 2. Only up or draining backends hold connections.
    for (const conn of registry) {
      const status = pool.status(conn.backend?.id ?? '');
      if (status === undefined) out.push(`#${conn.id}: pinned to ${conn.backend?.id}, which is not in the pool`);
      else if (status.state !== 'up' && status.state !== 'draining') out.push(`#${conn.id}: pinned to ${conn.backend?.id}, which is ${status.state} (${status.reason})`);
    }

    // 4. Counters add up.
    const stats = pool.stats();
    if (stats.active !== this.#open.size) out.push(`stats.active ${stats.active} != ${this.#open.size} open`);
    if (stats.active !== registry.size) out.push(`stats.active ${stats.active} != registry size ${registry.size}`);
    if (stats.total !== this.opened) out.push(`stats.total ${stats.total} != ${this.opened} opened`);
    const poolTeardowns = Object.values(stats.teardowns).reduce((a, b) => a + b, 0);
    if (poolTeardowns !== this.closedTotal) out.push(`pool teardowns ${poolTeardowns} != ${this.closedTotal} closed`);
    for (const reason of Object.keys(stats.teardowns)) if (!this.#validReason(reason)) out.push(`pool teardown reason ${JSON.stringify(reason)}`);
    const openBytes = new Map<string, { active: number; fromClient: number; fromUpstream: number }>();
    for (const s of this.#open) {
      const key = `${s.backend}#${s.generation}`;
      const o = openBytes.get(key) ?? { active: 0, fromClient: 0, fromUpstream: 0 };
      o.active++;
      o.fromClient += s.conn.bytesFromClient;
      o.fromUpstream += s.conn.bytesFromUpstream;
      openBytes.set(key, o);
    }
    let sumActive = 0;
    for (const b of stats.backends) {
      sumActive += b.active;
      const key = `${b.id}#${this.#generation.get(b.id) ?? 0}`;
      const tally = this.#tallies.get(key) ?? { total: 0, closed: 0, closedFromClient: 0, closedFromUpstream: 0 };
      const o = openBytes.get(key) ?? { active: 0, fromClient: 0, fromUpstream: 0 };
      const teardowns = Object.values(b.teardowns).reduce((x, y) => x + y, 0);
      if (b.active !== o.active) out.push(`${b.id}: active ${b.active} != ${o.active}`);
      if (b.total !== tally.total) out.push(`${b.id}: total ${b.total} != ${tally.total}`);
      if (teardowns !== tally.closed) out.push(`${b.id}: teardowns ${teardowns} != ${tally.closed} closed`);
      if (b.bytesFromClient !== tally.closedFromClient + o.fromClient) out.push(`${b.id}: bytesFromClient ${b.bytesFromClient} != ${tally.closedFromClient + o.fromClient}`);
      if (b.bytesFromUpstream !== tally.closedFromUpstream + o.fromUpstream) out.push(`${b.id}: bytesFromUpstream ${b.bytesFromUpstream} != ${tally.closedFromUpstream + o.fromUpstream}`);
      if (b.dialling < 0) out.push(`${b.id}: dialling ${b.dialling}`);
    }
    if (sumActive !== stats.active) out.push(`sum of backend active ${sumActive} != stats.active ${stats.active}`);
    return out;
  }

  /** Every connection ever seen, re-checked: closed ones exactly once, with a reason, sockets destroyed. */
  audit(): string[] {
    const out: string[] = [];
    for (const s of this.#seen.values()) {
      const id = `#${s.conn.id} on ${s.backend}`;
      if (!s.conn.closed) {
        if (s.ownClosed !== 0 || s.poolClosed !== 0) out.push(`${id}: open, yet closed fired ${s.ownClosed}/${s.poolClosed} times`);
        continue;
      }
      if (s.ownClosed !== 1) out.push(`${id}: closed fired ${s.ownClosed} times`);
      if (s.poolClosed !== 1) out.push(`${id}: connectionClosed fired ${s.poolClosed} times`);
      if (!this.#validReason(s.info?.reason)) out.push(`${id}: teardown reason ${String(s.info?.reason)}`);
      if (!s.conn.client.destroyed || !s.conn.upstream.destroyed) out.push(`${id}: closed with a socket not destroyed`);
    }
    return out;
  }
}
