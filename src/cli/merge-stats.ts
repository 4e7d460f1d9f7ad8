/**
 * The figures of `--workers N`, merged: each worker answers `pool.stats()`
 * for its own pool, and `/stats`, `/metrics` and the admin API show one pool.
 * Counters and gauges are summed; a backend's state (health, admin, cause,
 * weights) is the same in every worker, which all apply the same verdicts.
 *
 * @module
 */
import type { BackendStats, PoolStats } from '../index.js';
import type { ClientCapStats } from './client-cap.js';
import type { WorkerReply } from './ipc.js';
import type { BalancerStats } from './setup.js';

/** A worker as `/stats` lists it. */
export interface WorkerInfo {
  /** `node:cluster`'s id: 1..N, then counting on for replacements. */
  readonly worker: number;
  readonly pid: number;
  readonly listening: boolean;
}

/** `/stats` in multi-core mode: the merged pools, the probe, and the workers. */
export type WorkersStats = BalancerStats & {
  readonly workers: readonly (WorkerInfo & {
    /** Whether its figures are in this document (it answered within `STATS_TIMEOUT` ms, ipc.ts). */
    readonly answered: boolean;
    readonly active: number | undefined;
    readonly total: number | undefined;
    /** Its members per backend id, when it answered. */
    readonly members: Readonly<Record<string, number>> | undefined;
  })[];
  /** Workers started to replace one that died. */
  readonly restarts: number;
};

/** The counters each worker keeps for a backend, summed across workers. */
export const summedBackendCounters = ['members', 'active', 'dialling', 'total', 'connectFailures', 'writeStalls', 'bytesFromClient', 'bytesFromUpstream'] as const;

function addCounts(into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
}

/**
 * One pool snapshot from several: counters and gauges summed (per backend
 * too: members, active, dialling, totals, failures, bytes, teardowns); the
 * state of each backend (health, admin, cause, weights) from the first
 * snapshot that has it, as every worker applies the same verdicts.
 */
export function mergeStats(parts: readonly PoolStats[], now = Date.now()): PoolStats {
  const backends = new Map<string, { -readonly [K in keyof BackendStats]: BackendStats[K] } & { teardowns: Record<string, number> }>();
  const teardowns: Record<string, number> = {};
  const pinFailures: Record<string, number> = {};
  let active = 0;
  let closing = 0;
  let waiting = 0;
  let total = 0;
  let localDialErrors = 0;
  for (const part of parts) {
    localDialErrors += part.localDialErrors ?? 0;
    active += part.active;
    closing += part.closing;
    waiting += part.waiting;
    total += part.total;
    addCounts(teardowns, part.teardowns);
    addCounts(pinFailures, part.pinFailures);
    for (const b of part.backends) {
      const seen = backends.get(b.id);
      if (seen === undefined) {
        backends.set(b.id, { ...b, teardowns: { ...b.teardowns } });
        continue;
      }
      for (const key of summedBackendCounters) seen[key] += b[key];
      addCounts(seen.teardowns, b.teardowns);
    }
  }
  return {
    at: now,
    // The least advanced worker speaks for all: open while any is open.
    state: parts.some((p) => p.state === 'open') || parts.length === 0 ? 'open' : parts.some((p) => p.state === 'closing') ? 'closing' : 'closed',
    closed: parts.length > 0 && parts.every((p) => p.closed),
    active,
    closing,
    waiting,
    total,
    // Any worker without an eligible backend is a problem worth showing.
    allDown: parts.some((p) => p.allDown),
    backends: [...backends.values()],
    teardowns,
    pinFailures,
    localDialErrors,
  };
}

/**
 * The control pool's state with the workers' counters: what the admin API
 * shows in multi-core mode. Backends, states and weights from `control`
 * (the primary's view, current); members, connections, bytes and teardowns
 * summed from `workers` (their merged `stats()`, gathered just before).
 */
export function withWorkerCounts(control: PoolStats, workers: PoolStats): PoolStats {
  const byId = new Map(workers.backends.map((b) => [b.id, b]));
  return {
    ...control,
    active: workers.active,
    closing: workers.closing,
    waiting: workers.waiting,
    total: workers.total,
    teardowns: workers.teardowns,
    pinFailures: workers.pinFailures,
    backends: control.backends.map((b) => {
      const w = byId.get(b.id);
      if (w === undefined) return b;
      const counts: Record<string, number> = {};
      for (const key of summedBackendCounters) counts[key] = w[key];
      return { ...b, ...counts, teardowns: w.teardowns };
    }),
  };
}

/** The workers' `stats` replies merged: one pool snapshot, and their client caps summed. */
export function mergeReplies(replies: readonly WorkerReply[]): { merged: PoolStats; clients: ClientCapStats } {
  const parts = replies.flatMap((r) => (r.ok ? [r.result as PoolStats & { clients?: ClientCapStats }] : []));
  const clients = { max: 0, refused: 0 };
  for (const part of parts) {
    clients.max += part.clients?.max ?? 0;
    clients.refused += part.clients?.refused ?? 0;
  }
  return { merged: mergeStats(parts), clients };
}

/** `/stats`' list of workers: one entry per reply, with its figures when it answered. */
export function workerEntries(replies: readonly WorkerReply[], listening: ReadonlyMap<number, boolean>): WorkersStats['workers'] {
  return replies.map((r) => {
    const part = r.ok ? (r.result as PoolStats) : undefined;
    return {
      worker: r.worker,
      pid: r.pid,
      listening: listening.get(r.worker) ?? false,
      answered: r.ok,
      active: part?.active,
      total: part?.total,
      members: part === undefined ? undefined : Object.fromEntries(part.backends.map((b) => [b.id, b.members])),
    };
  });
}

/** The metrics only multi-core mode has: workers running and answering, and the restarts. */
export function workerMetrics(running: number, answered: number, restarts: number): string {
  const p = 'failover_proxy_';
  return [
    `# HELP ${p}workers Worker processes: running, and those whose figures are in this scrape.`,
    `# TYPE ${p}workers gauge`,
    `${p}workers{state="running"} ${running}`,
    `${p}workers{state="answered"} ${answered}`,
    `# HELP ${p}worker_restarts_total Workers started to replace one that died.`,
    `# TYPE ${p}worker_restarts_total counter`,
    `${p}worker_restarts_total ${restarts}`,
    '',
  ].join('\n');
}
