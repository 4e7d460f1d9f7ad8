/**
 * Multi-core mode of the reference balancer (`--workers N`, `--workers auto`).
 *
 * Node serves a proxy from one thread, so one process tops out at one core.
 * With `--workers N` the process becomes a `node:cluster` primary that forks N
 * workers sharing the listening socket:
 *
 * - Each **worker** runs its own {@link UpstreamPool} with the same backends and
 *   accepts clients. It applies every health verdict it receives to its pool
 *   synchronously, in the tick the message arrives, so the teardown of a down
 *   backend's connections still happens in that one call (`pool.markDown`).
 *   It forwards its pool's passive signals (`connectFailed`, `writeStalled`).
 * - The **primary** accepts nothing itself beyond what `node:cluster` does for
 *   it. It runs the one {@link HealthProbe}, attached to a {@link ControlPool}:
 *   a pool with the same options and no listener, that never holds a
 *   connection. Its health changes are broadcast to every worker as verdicts;
 *   the workers' passive signals are emitted on it for the probe to count;
 *   the admin API and a reload change it, and each change it accepts is run
 *   in every worker too. A new worker starts from its current state (backends
 *   and tunables, verdicts, drains and maintenance) before it listens. The
 *   primary serves `/stats`, `/metrics` and `/api/`, with the workers'
 *   `pool.stats()` gathered over IPC; it replaces a worker that dies and, on
 *   SIGTERM, drains every worker and exits 0.
 *
 * Messages are structured clones (`serialization: 'advanced'`, so `Infinity`
 * survives), primary → worker: `start` (settings, verdicts, replay), `health`
 * (`{ type: 'health', id, health: 'up' | 'leaving' | 'down', reason, cause }`), `command`,
 * `shutdown` (with the drain deadline in force), `tick` (a heartbeat each
 * {@link HEARTBEAT_INTERVAL} ms), `verdicts` (all of them, after a `resync`);
 * worker → primary: `ready`, `listening`, `failed`, `reply`,
 * `connectFailed`, `writeStalled`, `removed` (a backend left its pool: a
 * drained removal waits for every worker's), `resync`.
 *
 * **When the primary stops or dies**, the workers never serve on frozen
 * verdicts. After {@link PRIMARY_SILENCE} ms without a message (a stopped
 * primary), a worker runs its own probe with the same check until the
 * primary speaks again, then asks for its verdicts (`resync`). When the IPC
 * channel closes (the primary died), a worker stops accepting (freeing the
 * port for the unit a supervisor restarts), checks alone while its
 * connections drain for `drain-timeout`, and exits 0; `node:cluster`'s own
 * habit, exiting at once, would drop every connection.
 *
 * **Fan-out of admin commands** (the {@link ControlPool}, and
 * {@link RunningWorkers.broadcast} for a program): a command such as
 * `{ op: 'drain', id: 'b1', timeout: 30000 }` is first run on the control
 * pool, then sent to every worker; each runs it on its own pool
 * ({@link runCommand}) and replies once it has taken effect; one
 * {@link WorkerReply} per worker (a worker that does not answer within
 * {@link STATS_TIMEOUT}, or exits first, gets `ok: false`, and the primary
 * logs it). A replacement worker needs no replay of past commands: it starts
 * from the control pool's state. To add an operation: extend
 * {@link WorkerCommand}, send it from the {@link ControlPool} method that
 * makes the change, handle it in {@link runCommand}.
 *
 * Scheduling: every worker accepts on the shared socket (`SCHED_NONE`), not
 * Node's default on Linux (`SCHED_RR`: the primary accepts every connection,
 * passes it to a worker over IPC and waits for its ack). The hand-off puts the
 * primary's one thread in the path of every connection, the worst place for it
 * when every watch of a failed apiserver reconnects at once; measured in four
 * runs it cost 1.6–2.2× the CPU per connection and reached 0.51–0.94× of
 * SCHED_NONE's connection rate, and it did not split bursts of 5,000
 * connections more evenly (a worker gets the next one when it has acked the
 * last, not in turn). `NODE_CLUSTER_SCHED_POLICY=rr` chooses round robin
 * anyway. docs/benchmarks.md ("Multi-core") has the figures.
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { ConnectError, ConnectTimeoutError, FailoverProxyError, HealthProbe, UpstreamPool, type BackendStats, type CheckResult, type PoolStats } from '../../src/index.js';
import { handleAdminRequest, type AdminPool, type AdminReply, type AdminRequest } from './admin-api.js';
import {
  listen,
  poolOptions,
  probeCheck,
  rebalancerFor,
  probeOptions,
  probeSummary,
  checkLabel,
  readToken,
  reloadConfig,
  statusOptions,
  accessLogFor,
  buildInfo,
  type BalancerIo,
  type BalancerStats,
  type ProbeSettings,
} from './balancer.js';
import {
  ControlPool,
  summedBackendCounters,
  withWorkerCounts,
  type AdminCommand,
  type ControlSnapshot,
  type HealthMessage,
  type WorkerCommand,
  type WorkerReply,
} from './control-pool.js';
import type { ReloadSummary } from './reload.js';
import { ConfigError, type BalancerConfig, type HostPort } from './config.js';
import { describeCheck, EventLog } from './event-log.js';
import { ClientCap, clientShare, descriptorLimit, type ClientCapStats } from './client-cap.js';
import type { AccessLog } from './access-log.js';
import { renderMetrics } from './metrics.js';
import { ProcessStats, type ProcessFigures } from './process-stats.js';
import { VerdictCounts } from './verdict-counts.js';
import { ProbeStats } from './probe-stats.js';
import { RecentEvents } from './recent-events.js';
import { startStatusServer, type StatusServer } from './status-server.js';

export type { AdminCommand, HealthMessage, WorkerCommand, WorkerReply } from './control-pool.js';

// ---------------------------------------------------------------- messages

/** What a worker needs of the config: the pool and the listener, not the probe. */
export type WorkerSettings = Pick<
  BalancerConfig,
  | 'listen'
  | 'backends'
  | 'strategy'
  | 'connectTimeout'
  | 'retries'
  | 'queueTimeout'
  | 'drainTimeout'
  | 'slowStart'
  | 'writeStallTimeout'
  | 'leavingGrace'
  | 'allDown'
  | 'rebalance'
  | 'rebalanceRate'
  | 'rebalanceTolerance'
  | 'maxClients'
  | 'workers'
  | 'accessLog'
> &
  ProbeSettings;

type ToWorker =
  | { readonly type: 'start'; readonly settings: WorkerSettings; readonly verdicts: ControlSnapshot['verdicts']; readonly replay: ControlSnapshot['replay'] }
  | HealthMessage
  | { readonly type: 'command'; readonly seq: number; readonly command: WorkerCommand }
  | { readonly type: 'shutdown'; readonly force: boolean; readonly timeout: number }
  | { readonly type: 'tick' }
  | { readonly type: 'verdicts'; readonly verdicts: ControlSnapshot['verdicts'] };

type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'listening'; readonly address: HostPort }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'reply'; readonly seq: number; readonly ok: boolean; readonly result?: unknown; readonly error?: { code: string; message: string } }
  | { readonly type: 'connectFailed'; readonly id: string; readonly timeout: number | undefined; readonly code: string | undefined; readonly message: string }
  | { readonly type: 'writeStalled'; readonly id: string }
  | { readonly type: 'removed'; readonly id: string }
  | { readonly type: 'resync' };

/** How long `/stats` and `/metrics` wait for the workers' figures. */
export const STATS_TIMEOUT = 2000;
/** After the drain deadline, how long a worker gets to exit before it is killed. */
const EXIT_GRACE = 5000;
/** A worker that died before it listened is replaced after this long, not at once (no fork storm). */
const RESPAWN_DELAY = 1000;
/** How often the primary tells its workers it is alive (a `tick` message). */
export const HEARTBEAT_INTERVAL = 1000;
/**
 * A worker that has heard nothing from its primary for this long (and at
 * least three check intervals) checks the backends itself until the primary
 * speaks again: a stopped primary (SIGSTOP, a debugger, a stall) must not
 * freeze every worker's verdicts.
 */
export const PRIMARY_SILENCE = 5000;

/**
 * {@link startWorkers} failed because a worker exited before it listened;
 * how it exited, for a program that asked it to stop meanwhile (a Ctrl-C
 * reaches the workers too, and one still loading dies of it).
 */
export class WorkerStartError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
    this.name = 'WorkerStartError';
  }
}

// ------------------------------------------------------------- stats merge

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

// ------------------------------------------------------------------ worker

function errorOf(err: unknown): { code: string; message: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return { code: typeof code === 'string' ? code : 'ERROR', message: err instanceof Error ? err.message : String(err) };
}

/**
 * Resolves once a call that returns a promise has taken effect: at once when
 * it is under way (a drain), with its rejection when it was refused (those
 * promises are settled already).
 */
async function begun(done: Promise<unknown>): Promise<void> {
  done.catch(() => {});
  await Promise.race([done, Promise.resolve()]);
}

/**
 * Runs one command on a worker's pool. Admin commands reject as the pool
 * does (`UNKNOWN_BACKEND`…) and resolve once they have taken effect: a drain,
 * or a drained removal, goes on after that until this worker's deadline.
 */
export async function runCommand(pool: UpstreamPool, command: WorkerCommand, proc?: ProcessStats): Promise<unknown> {
  switch (command.op) {
    case 'stats':
      return pool.stats();
    case 'process':
      return proc?.snapshot();
    case 'drain':
      await begun(pool.drain(command.id, command.timeout === undefined ? {} : { timeout: command.timeout }));
      return pool.status(command.id);
    case 'maintenance':
      return pool.markMaintenance(command.id, command.reason);
    case 'ready':
      pool.markReady(command.id, command.reason);
      return pool.status(command.id);
    case 'update':
      pool.update(command.id, command.tunables);
      return pool.status(command.id);
    case 'add':
      pool.add(command.spec);
      return pool.status(command.spec.id ?? '');
    case 'remove':
      await begun(pool.remove(command.id, { drain: command.drain, ...(command.timeout !== undefined && { timeout: command.timeout }) }));
      return pool.status(command.id) ?? null;
    case 'reconcile': {
      const { added, updated, removed, replaced, unchanged, settled } = pool.reconcile(command.specs, command.drainTimeout === undefined ? {} : { drainTimeout: command.drainTimeout });
      settled.catch(() => {});
      return { added, updated, removed, replaced, unchanged };
    }
  }
}

/** A command as the log names it: `drain b1`, `reconcile`. */
function describeCommand(command: AdminCommand): string {
  switch (command.op) {
    case 'add':
      return `add ${command.spec.id ?? `${command.spec.host}:${command.spec.port}`}`;
    case 'reconcile':
      return 'reconcile';
    default:
      return `${command.op} ${command.id}`;
  }
}

function applyVerdict(pool: UpstreamPool, verdict: HealthMessage): void {
  // Live while the pool drains; nothing to act on once it closed (the worker is exiting).
  if (pool.state === 'closed' || pool.status(verdict.id) === undefined) return;
  if (verdict.health === 'down') pool.markDown(verdict.id, verdict.reason, verdict.cause);
  else if (verdict.health === 'leaving') pool.markLeaving(verdict.id, verdict.reason, verdict.cause);
  else pool.markUp(verdict.id, verdict.reason, verdict.cause);
}

function toPrimary(message: FromWorker): void {
  // A callback: a closed channel (the primary died) is not an exception here.
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

/**
 * The worker side: call it from the program when `cluster.isWorker`. Waits
 * for the primary's `start`, builds the pool, applies the verdicts so far,
 * listens, then applies every verdict and command as it arrives. Drains and
 * exits 0 on `shutdown` (or its own SIGTERM/SIGINT; a second one closes
 * everything at once).
 *
 * @example
 * ```ts
 * if (cluster.isWorker) runWorker({ log: (line) => process.stdout.write(`${line}\n`) });
 * ```
 */
export function runWorker(io: Pick<BalancerIo, 'log'> & Partial<Pick<BalancerIo, 'readFile'>>): void {
  const workerId = cluster.worker?.id ?? 0;
  // node:cluster exits a worker at once when its primary's channel closes,
  // dropping every connection; this worker drains them instead (below).
  if (cluster.worker !== undefined) cluster.worker.exitedAfterDisconnect = true;
  // `2030-01-01T00:00:00.000Z worker 2: backend b1 up -> down ...`
  const write = (line: string): void => io.log(line.replace(/^(\S+) /, `$1 worker ${workerId}: `));
  let pool: UpstreamPool | undefined;
  let log: EventLog | undefined;
  let server: ReturnType<typeof createServer> | undefined;
  let cap: ClientCap | undefined;
  let settings: WorkerSettings | undefined;
  let drainTimeout = 0;
  let stopping: Promise<void> | undefined;
  /** The worker's own probe while the primary is silent. */
  let ownProbe: HealthProbe | undefined;
  let lastHeard = Date.now();
  let watchdog: NodeJS.Timeout | undefined;
  const proc = new ProcessStats(`worker-${workerId}`);
  let access: AccessLog | undefined;

  const shutdown = (force: boolean, timeout = drainTimeout): void => {
    if (pool === undefined) process.exit(0);
    const p = pool;
    if (stopping !== undefined) {
      if (force) void p.destroy();
      return;
    }
    const open = p.stats().active;
    log?.info(
      force
        ? `closing ${open} connection${open === 1 ? '' : 's'} now`
        : `shutting down: not accepting; ${open} connection${open === 1 ? '' : 's'} open, ${timeout} ms to finish`,
    );
    server?.close();
    stopping = (force ? p.destroy() : p.close({ timeout })).then(async () => {
      if (watchdog !== undefined) clearInterval(watchdog);
      await ownProbe?.stop();
      await access?.close();
      proc.close();
      const closedAtDeadline = p.stats().teardowns['pool-closed'] ?? 0;
      log?.close();
      log?.info(`stopped${closedAtDeadline > 0 ? ` (${closedAtDeadline} connection${closedAtDeadline === 1 ? '' : 's'} closed at the deadline)` : ''}`);
      process.exit(0);
    });
  };

  /** The primary is silent or gone: this worker checks its backends itself, with the same check. */
  const probeAlone = (why: string, what = 'checking the backends in this worker until it answers'): void => {
    if (ownProbe !== undefined || pool === undefined || settings === undefined) return;
    try {
      const probe = new HealthProbe(probeOptions(settings, probeCheck(settings, { readFile: io.readFile ?? ((path) => readFileSync(path)) })));
      probe.attach(pool);
      probe.start();
      ownProbe = probe;
      log?.info(`${why}: ${what}`);
    } catch (err) {
      log?.info(`${why}, and this worker cannot check the backends itself: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  const heard = (): void => {
    lastHeard = Date.now();
    if (ownProbe === undefined || stopping !== undefined) return;
    const probe = ownProbe;
    ownProbe = undefined;
    // No more verdicts from it, nor counting of this worker's failed dials.
    probe.detach();
    void probe.stop();
    log?.info('the primary answers again: following its verdicts');
    // What it decided meanwhile wins over this worker's own checks.
    toPrimary({ type: 'resync' });
  };

  const start = async (message: Extract<ToWorker, { type: 'start' }>): Promise<void> => {
    settings = message.settings;
    const current = settings;
    drainTimeout = current.drainTimeout;
    const p = new UpstreamPool(poolOptions(current));
    pool = p;
    // Each worker moves its own connections back to a backend that returns.
    rebalancerFor(p, current);
    // The log first: the verdicts so far are logged as this worker's transitions.
    log = new EventLog(p, undefined, { write });
    access = accessLogFor(p, current, (line) => log?.info(line), { worker: workerId });
    for (const verdict of message.verdicts) applyVerdict(p, verdict);
    for (const command of message.replay) runCommand(p, command).catch(() => {});
    p.on('connectFailed', (backend, error) => {
      const cause = (error as { cause?: { code?: unknown } }).cause;
      toPrimary({
        type: 'connectFailed',
        id: backend.id,
        timeout: error instanceof ConnectTimeoutError ? error.timeout : undefined,
        code: typeof cause?.code === 'string' ? cause.code : undefined,
        message: error.message,
      });
    });
    p.on('writeStalled', (backend) => toPrimary({ type: 'writeStalled', id: backend.id }));
    // A drained removal ends here: the primary stops checking the backend once every worker says so.
    p.on('backendRemoved', (backend) => toPrimary({ type: 'removed', id: backend.id }));
    const silence = Math.max(PRIMARY_SILENCE, 3 * current.interval);
    watchdog = setInterval(() => {
      if (stopping === undefined && Date.now() - lastHeard > silence) probeAlone(`no word from the primary for ${Date.now() - lastHeard} ms`);
    }, HEARTBEAT_INTERVAL);
    watchdog.unref();
    const s = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => p.accept(socket));
    server = s;
    // Each worker has its own descriptors: its share of the cap, or its own default.
    const limit = descriptorLimit();
    cap = new ClientCap(s, clientShare(settings.maxClients, settings.workers, limit), (line) => log?.info(line));
    log.info(`max clients ${cap.max}${settings.maxClients === undefined ? ` (from the descriptor limit ${limit})` : ` (a share of ${settings.maxClients})`}`);
    try {
      const address = await listen(s, current.listen);
      s.on('error', (err) => log?.info(`listener error: ${err.message}`));
      toPrimary({ type: 'listening', address });
    } catch (err) {
      toPrimary({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
      clearInterval(watchdog);
      await p.destroy();
      process.exit(1);
    }
  };

  process.on('message', (message: ToWorker) => {
    heard();
    switch (message.type) {
      case 'start':
        void start(message);
        return;
      case 'tick':
        return;
      case 'health':
        // Synchronously, in this tick: the teardown happens before any other I/O.
        if (pool !== undefined) applyVerdict(pool, message);
        return;
      case 'verdicts':
        if (pool !== undefined) for (const verdict of message.verdicts) applyVerdict(pool, verdict);
        return;
      case 'command': {
        const { seq, command } = message;
        if (pool === undefined) {
          toPrimary({ type: 'reply', seq, ok: false, error: { code: 'WORKER_STARTING', message: 'the worker has no pool yet' } });
          return;
        }
        // A reload's drain deadline is also the one a shutdown of this worker uses.
        if (command.op === 'reconcile' && command.drainTimeout !== undefined) drainTimeout = command.drainTimeout;
        runCommand(pool, command, proc).then(
          // Stats carry this worker's client cap beside its pool's figures.
          (result) => toPrimary({ type: 'reply', seq, ok: true, result: command.op === 'stats' && cap !== undefined ? { ...(result as PoolStats), clients: { max: cap.max, refused: cap.refused } } : result }),
          (err: unknown) => toPrimary({ type: 'reply', seq, ok: false, error: errorOf(err) }),
        );
        return;
      }
      case 'shutdown':
        shutdown(message.force, message.timeout);
        return;
    }
  });
  // The primary died or exited (its IPC channel closed): stop accepting,
  // so the port is free for the unit a supervisor restarts, keep checking
  // the backends here while the connections drain, then exit 0.
  process.on('disconnect', () => {
    if (stopping !== undefined) return;
    if (pool === undefined) process.exit(0);
    probeAlone('the primary is gone', 'not accepting; checking the backends in this worker while its connections drain');
    shutdown(false);
  });
  // A Ctrl-C reaches the whole process group: drain like the primary asks.
  let signals = 0;
  const onSignal = (): void => shutdown(++signals > 1);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  toPrimary({ type: 'ready' });
}

// ----------------------------------------------------------------- primary

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
    /** Whether its figures are in this document (it answered within {@link STATS_TIMEOUT} ms). */
    readonly answered: boolean;
    readonly active: number | undefined;
    readonly total: number | undefined;
    /** Its members per backend id, when it answered. */
    readonly members: Readonly<Record<string, number>> | undefined;
  })[];
  /** Workers started to replace one that died. */
  readonly restarts: number;
};

/** A running multi-core balancer. */
export interface RunningWorkers {
  /** Where clients connect. */
  readonly address: HostPort;
  /** Where `/stats` and `/metrics` are served, if they are. */
  readonly statusAddress: HostPort | undefined;
  readonly probe: HealthProbe;
  /** The primary's pool: the probe's target, changed by the admin API and reloads, followed by every worker. */
  readonly control: ControlPool;
  /** The recent backend events `GET /api/events` serves (the control pool's transitions). */
  readonly events: RecentEvents;
  /** The workers now running. */
  workers(): WorkerInfo[];
  /** The `/stats` document, gathered from every worker (at most {@link STATS_TIMEOUT} ms). */
  stats(): Promise<WorkersStats>;
  /**
   * Runs `command` on every started worker's pool and resolves with each
   * worker's reply; a worker that does not answer within `timeout` ms
   * (default {@link STATS_TIMEOUT}; admin commands always that), or exits
   * first, gets `ok: false` with code `WORKER_TIMEOUT` or `WORKER_EXITED`.
   * An admin command is run on the {@link RunningWorkers.control} pool first,
   * so workers started later begin with it in force; when that pool refuses
   * it (`UNKNOWN_BACKEND`...), no worker is asked and every worker's entry
   * carries the refusal.
   *
   * @example
   * ```ts
   * const replies = await balancer.broadcast({ op: 'maintenance', id: 'b1', reason: 'kernel upgrade' });
   * if (replies.some((r) => !r.ok)) console.error(replies);
   * ```
   */
  broadcast(command: WorkerCommand, options?: { readonly timeout?: number | undefined }): Promise<WorkerReply[]>;
  /**
   * Re-reads the config (SIGHUP, `POST /api/reload`) and reconciles the
   * control pool with it, as a single process does; every worker gets the
   * same `reconcile`. Throws {@link ReloadError} and changes nothing when
   * there is no config file or it is not valid.
   */
  reload(): ReloadSummary;
  /** Stops the workers accepting, drains them for `drainTimeout` ms, stops the probe. Idempotent. */
  close(): Promise<void>;
  /** Has every worker close every connection now, then as {@link RunningWorkers.close}. */
  destroy(): Promise<void>;
}

/** Options of {@link startWorkers}. */
export interface StartWorkersOptions {
  /**
   * The program each worker runs; it must call {@link runWorker} when
   * `cluster.isWorker`. Forked with this process's `execArgv` (so `--import tsx` carries over).
   * @default process.argv[1]
   */
  readonly exec?: string | undefined;
}

interface Slot {
  readonly worker: Worker;
  readonly id: number;
  readonly pid: number;
  started: boolean;
  listening: boolean;
}

interface Gathering {
  readonly expect: Set<number>;
  readonly replies: Map<number, WorkerReply>;
  readonly finish: () => void;
}

/**
 * Starts the multi-core balancer: validates the TLS files, runs the first
 * round of checks, forks `config.workers` workers and resolves once every one
 * listens. Throws {@link ConfigError} before anything starts when the config
 * cannot work; rejects (and stops what it started) when a worker cannot listen.
 *
 * @example
 * ```ts
 * if (cluster.isWorker) runWorker({ log: console.log });
 * else {
 *   const balancer = await startWorkers({ ...config, workers: 4 }, { log: console.log, readFile: (p) => readFileSync(p) });
 *   process.once('SIGTERM', () => void balancer.close().then(() => process.exit(0)));
 * }
 * ```
 */
export async function startWorkers(config: BalancerConfig, io: BalancerIo, options: StartWorkersOptions = {}): Promise<RunningWorkers> {
  const check = probeCheck(config, io);
  let token = config.adminTokenFile === undefined ? undefined : readToken(io, config.adminTokenFile);
  let drainTimeout = config.drainTimeout;
  let probe: HealthProbe;
  let pool: UpstreamPool;
  try {
    probe = new HealthProbe(probeOptions(config, check));
    pool = new UpstreamPool(poolOptions(config));
  } catch (err) {
    if (err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT') throw new ConfigError(err.message);
    throw err;
  }
  const info = (message: string): void => io.log(`${new Date().toISOString()} ${message}`);
  const slots = new Map<number, Slot>();
  const gatherings = new Map<number, Gathering>();
  let seq = 0;
  let restarts = 0;
  let closing: Promise<void> | undefined;
  const respawns = new Set<NodeJS.Timeout>();
  let heartbeat: NodeJS.Timeout | undefined = undefined;
  /** Workers that did not exit cleanly while draining: the shutdown reports them and fails. */
  const crashed: string[] = [];
  /** Workers the primary itself killed (still starting, or past the drain deadline). */
  const killed = new Set<number>();

  const send = (slot: Slot, message: ToWorker): void => {
    if (slot.worker.isConnected()) slot.worker.send(message, undefined, undefined, () => {});
  };
  /** Runs `command` in every started worker; one reply per worker, `ok: false` for one that does not answer in time or exits. */
  const sendToWorkers = (command: WorkerCommand, timeout = STATS_TIMEOUT): Promise<WorkerReply[]> => {
    const targets = [...slots.values()].filter((s) => s.started);
    const id = ++seq;
    return new Promise((resolve) => {
      const replies = new Map<number, WorkerReply>();
      const finish = (): void => {
        clearTimeout(timer);
        gatherings.delete(id);
        resolve(
          targets.map(
            (s) => replies.get(s.id) ?? { worker: s.id, pid: s.pid, ok: false, error: { code: 'WORKER_TIMEOUT', message: `no reply within ${timeout} ms` } },
          ),
        );
      };
      const timer = setTimeout(finish, timeout);
      gatherings.set(id, { expect: new Set(targets.map((s) => s.id)), replies, finish });
      for (const s of targets) send(s, { type: 'command', seq: id, command });
      if (targets.length === 0) finish();
    });
  };

  const control = new ControlPool(pool, {
    verdict: (verdict) => {
      // Workers not started yet get it in their `start` snapshot.
      for (const slot of slots.values()) if (slot.started) send(slot, verdict);
    },
    command: (command) => {
      const replies = sendToWorkers(command);
      // A worker that missed a change keeps its old state until it is replaced: say so.
      void replies.then((all) => {
        for (const r of all) {
          if (!r.ok) info(`worker ${r.worker} (pid ${r.pid}) did not apply ${describeCommand(command)}: ${r.error.code}: ${r.error.message}`);
        }
      });
      return replies;
    },
    workers: () => [...slots.values()].filter((s) => s.started).map((s) => s.id),
  });
  const events = new RecentEvents(pool);
  // Verdicts are made here (the workers apply them): counted once, here.
  const verdictCounts = new VerdictCounts(pool);
  const proc = new ProcessStats('primary');
  const build = buildInfo();

  const probeStats = new ProbeStats();
  probeStats.attach(probe);
  // The check lines the single process writes; transitions are logged by each worker with its own teardown count.
  const lastOk = new Map<string, boolean>();
  const onChecked = (result: CheckResult): void => {
    const id = result.backend.id;
    const previous = lastOk.get(id);
    lastOk.set(id, result.ok);
    if (previous === result.ok || (previous === undefined && result.ok)) return;
    info(`check of ${id} ${result.ok ? 'passed again' : 'failed'} (${describeCheck(result)})`);
  };
  probe.on('checked', onChecked);

  const checkName = checkLabel(config);
  info(
    `balancing ${config.backends.length} backend${config.backends.length === 1 ? '' : 's'} (${config.backends.map((b) => b.id).join(', ')}) ` +
      `with ${config.strategy} in ${config.workers} workers; check ${checkName} every ${config.interval} ms, timeout ${config.timeout} ms, rise ${config.rise}, fall ${config.fall}`,
  );
  if (config.insecure) info(`warning: --insecure: the ${checkName} check does not verify the backends' certificates`);

  probe.attach(pool);
  probe.start();
  const first = await probe.checkNow();
  const upCount = first.filter((r) => r.ok).length;

  const settings: WorkerSettings = {
    listen: config.listen,
    backends: config.backends,
    strategy: config.strategy,
    connectTimeout: config.connectTimeout,
    retries: config.retries,
    queueTimeout: config.queueTimeout,
    drainTimeout: config.drainTimeout,
    slowStart: config.slowStart,
    leavingGrace: config.leavingGrace,
    writeStallTimeout: config.writeStallTimeout,
    allDown: config.allDown,
    rebalance: config.rebalance,
    rebalanceRate: config.rebalanceRate,
    rebalanceTolerance: config.rebalanceTolerance,
    maxClients: config.maxClients,
    workers: config.workers,
    accessLog: config.accessLog,
    check: config.check,
    ca: config.ca,
    cert: config.cert,
    key: config.key,
    insecure: config.insecure,
    servername: config.servername,
    interval: config.interval,
    timeout: config.timeout,
    rise: config.rise,
    fall: config.fall,
  };
  // Every worker accepts on the shared socket (see the module comment for
  // why); NODE_CLUSTER_SCHED_POLICY=rr still chooses Node's round robin.
  if (process.env['NODE_CLUSTER_SCHED_POLICY'] === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ serialization: 'advanced', ...(options.exec !== undefined && { exec: options.exec }) });

  let address: HostPort | undefined;
  let startup: { resolve: () => void; reject: (err: Error) => void } | undefined;
  const started = new Promise<void>((resolve, reject) => (startup = { resolve, reject }));
  let exitedAll: (() => void) | undefined;

  const onMessage = (slot: Slot, message: FromWorker): void => {
    switch (message.type) {
      case 'ready': {
        slot.started = true;
        // From the control pool's state now: backends as they are, verdicts, drains and maintenance.
        const now = control.snapshot();
        send(slot, { type: 'start', settings: { ...settings, backends: now.backends }, verdicts: now.verdicts, replay: now.replay });
        return;
      }
      case 'listening':
        slot.listening = true;
        address ??= message.address;
        info(`worker ${slot.id} (pid ${slot.pid}) listening`);
        if (startup !== undefined && [...slots.values()].filter((s) => s.listening).length >= config.workers) startup.resolve();
        return;
      case 'failed':
        if (startup !== undefined) startup.reject(new Error(message.message));
        else info(`worker ${slot.id} (pid ${slot.pid}) cannot listen: ${message.message}`);
        return;
      case 'reply': {
        const gathering = gatherings.get(message.seq);
        if (gathering === undefined || !gathering.expect.delete(slot.id)) return;
        gathering.replies.set(
          slot.id,
          message.ok
            ? { worker: slot.id, pid: slot.pid, ok: true, result: message.result }
            : { worker: slot.id, pid: slot.pid, ok: false, error: message.error ?? { code: 'ERROR', message: 'failed' } },
        );
        if (gathering.expect.size === 0) gathering.finish();
        return;
      }
      case 'connectFailed':
        control.connectFailed(
          message.id,
          message.timeout !== undefined
            ? new ConnectTimeoutError(message.id, message.timeout)
            : new ConnectError(message.id, { cause: Object.assign(new Error(message.message), { code: message.code }) }),
        );
        return;
      case 'writeStalled':
        control.writeStalled(message.id);
        return;
      case 'removed':
        control.workerRemoved(slot.id, message.id);
        return;
      case 'resync':
        // A worker that checked alone while this process was silent takes its verdicts again.
        send(slot, { type: 'verdicts', verdicts: control.snapshot().verdicts });
        return;
    }
  };

  const fork = (): void => {
    const worker = cluster.fork();
    const slot: Slot = { worker, id: worker.id, pid: worker.process.pid ?? 0, started: false, listening: false };
    slots.set(slot.id, slot);
    worker.on('message', (message: FromWorker) => onMessage(slot, message));
    // EPIPE on a dying worker's channel: its exit is what matters.
    worker.on('error', () => {});
    worker.on('exit', (code, signal) => {
      slots.delete(slot.id);
      control.workerExited(slot.id);
      for (const gathering of gatherings.values()) {
        if (!gathering.expect.delete(slot.id)) continue;
        gathering.replies.set(slot.id, { worker: slot.id, pid: slot.pid, ok: false, error: { code: 'WORKER_EXITED', message: `worker ${slot.id} exited` } });
        if (gathering.expect.size === 0) gathering.finish();
      }
      const how = signal !== null ? `signal ${signal}` : `code ${String(code)}`;
      if (closing !== undefined) {
        if (code !== 0 && !killed.has(slot.id)) {
          crashed.push(`worker ${slot.id} (pid ${slot.pid}) exited (${how}) while draining`);
          info(`${crashed.at(-1)!}`);
        }
        if (slots.size === 0) exitedAll?.();
        return;
      }
      if (startup !== undefined) {
        startup.reject(new WorkerStartError(`worker ${slot.id} (pid ${slot.pid}) exited before listening (${how})`, code, signal as NodeJS.Signals | null));
        return;
      }
      // Its connections are gone with it; the other workers' are untouched.
      info(`worker ${slot.id} (pid ${slot.pid}) exited (${how}); starting a replacement`);
      restarts++;
      // One that never listened would die again at once: wait a little.
      const timer = setTimeout(
        () => {
          respawns.delete(timer);
          if (closing === undefined) fork();
        },
        slot.listening ? 0 : RESPAWN_DELAY,
      );
      respawns.add(timer);
    });
  };

  const stopAll = async (force: boolean): Promise<void> => {
    clearInterval(heartbeat);
    for (const timer of respawns) clearTimeout(timer);
    respawns.clear();
    const allGone = new Promise<void>((resolve) => {
      exitedAll = resolve;
      if (slots.size === 0) resolve();
    });
    for (const slot of slots.values()) {
      // A worker still starting has nothing to drain.
      // The drain deadline in force now (a reload may have changed it).
      if (slot.started) send(slot, { type: 'shutdown', force, timeout: drainTimeout });
      else {
        killed.add(slot.id);
        slot.worker.process.kill('SIGKILL');
      }
    }
    const deadline = setTimeout(() => {
      for (const slot of slots.values()) {
        // Not a clean stop either: its exit is reported as one that did not drain.
        info(`worker ${slot.id} (pid ${slot.pid}) still running ${EXIT_GRACE} ms past the drain deadline: killed`);
        slot.worker.process.kill('SIGKILL');
      }
    }, (force ? 0 : drainTimeout) + EXIT_GRACE);
    await allGone;
    clearTimeout(deadline);
    probe.off('checked', onChecked);
    await probe.stop();
    probeStats.detach();
    events.close();
    verdictCounts.close();
    proc.close();
    await control.close();
  };

  // Workers take a long silence for a stopped primary and check alone (see
  // PRIMARY_SILENCE): the heartbeat starts before the first fork, so a worker
  // waiting for the others to listen is never left without word.
  heartbeat = setInterval(() => {
    for (const slot of slots.values()) if (slot.started) send(slot, { type: 'tick' });
  }, HEARTBEAT_INTERVAL);
  heartbeat.unref();
  for (let i = 0; i < config.workers; i++) fork();
  try {
    await started;
  } catch (err) {
    closing = stopAll(true);
    await closing;
    throw err;
  }
  startup = undefined;


  const broadcast = async (command: WorkerCommand, { timeout = STATS_TIMEOUT }: { readonly timeout?: number | undefined } = {}): Promise<WorkerReply[]> => {
    if (command.op === 'stats' || command.op === 'process') return sendToWorkers(command, timeout);
    try {
      return await control.apply(command);
    } catch (err) {
      const error = errorOf(err);
      return [...slots.values()].filter((s) => s.started).map((s) => ({ worker: s.id, pid: s.pid, ok: false, error }));
    }
  };

  const workers = (): WorkerInfo[] => [...slots.values()].map((s) => ({ worker: s.id, pid: s.pid, listening: s.listening }));

  const gather = async (): Promise<{ merged: PoolStats; replies: WorkerReply[]; clients: ClientCapStats }> => {
    const replies = await sendToWorkers({ op: 'stats' });
    const parts = replies.flatMap((r) => (r.ok ? [r.result as PoolStats & { clients?: ClientCapStats }] : []));
    const clients = { max: 0, refused: 0 };
    for (const part of parts) {
      clients.max += part.clients?.max ?? 0;
      clients.refused += part.clients?.refused ?? 0;
    }
    return { merged: mergeStats(parts), replies, clients };
  };

  const stats = async (): Promise<WorkersStats> => {
    const { merged, replies, clients } = await gather();
    const listening = new Map(workers().map((w) => [w.worker, w.listening]));
    return {
      ...merged,
      clients,
      probe: probeSummary(config, probeStats),
      workers: replies.map((r) => {
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
      }),
      restarts,
    };
  };

  const metrics = async (): Promise<string> => {
    const [{ merged, replies, clients }, procs] = await Promise.all([gather(), sendToWorkers({ op: 'process' })]);
    const processes: ProcessFigures[] = [proc.snapshot(), ...procs.flatMap((r) => (r.ok && r.result !== undefined ? [r.result as ProcessFigures] : []))];
    const p = 'failover_proxy_';
    return (
      renderMetrics(merged, probeStats.snapshot(), { clients, build, processes, verdicts: verdictCounts.snapshot() }) +
      [
        `# HELP ${p}workers Worker processes: running, and those whose figures are in this scrape.`,
        `# TYPE ${p}workers gauge`,
        `${p}workers{state="running"} ${slots.size}`,
        `${p}workers{state="answered"} ${replies.filter((r) => r.ok).length}`,
        `# HELP ${p}worker_restarts_total Workers started to replace one that died.`,
        `# TYPE ${p}worker_restarts_total counter`,
        `${p}worker_restarts_total ${restarts}`,
        '',
      ].join('\n')
    );
  };

  const reload = (): ReloadSummary =>
    reloadConfig({
      config,
      io,
      reconcile: (specs, opts) => control.reconcile(specs, opts),
      log: info,
      applied: (next, nextToken) => {
        token = nextToken;
        drainTimeout = next.drainTimeout;
      },
    });

  // The single process's API on the control pool: the same validation, codes
  // and documents. Counters come from the workers (asked first); a change is
  // answered once every worker has applied it (or STATS_TIMEOUT passed).
  const api = async (req: AdminRequest): Promise<AdminReply> => {
    const { merged } = await gather();
    const view: AdminPool = {
      stats: () => withWorkerCounts(control.stats(), merged),
      has: (id: string) => control.has(id),
      backends: () => control.backends(),
      add: control.add.bind(control),
      update: control.update.bind(control),
      remove: control.remove.bind(control),
      drain: control.drain.bind(control),
      markMaintenance: control.markMaintenance.bind(control),
      markReady: control.markReady.bind(control),
    };
    const { value: reply, acks } = control.capture(() =>
      handleAdminRequest({ pool: view, events, tokenDigest: () => token, drainTimeout: () => drainTimeout, reload, log: info }, req),
    );
    const replies = (await acks).flat();
    // What maintenance took out is in the workers, not here.
    const body = reply.body as { tornDown?: unknown } | undefined;
    if (reply.status === 200 && typeof body?.tornDown === 'number') {
      const tornDown = replies.reduce((sum, r) => sum + (r.ok && typeof r.result === 'number' ? r.result : 0), 0);
      return { ...reply, body: { ...body, tornDown } };
    }
    return reply;
  };

  let status: StatusServer | undefined;
  if (config.status !== undefined || config.adminSocket !== undefined) {
    try {
      // /readyz as in a single process: the control pool holds the verdicts every worker follows.
      const ready = (): boolean => closing === undefined && pool.backends().some((b) => pool.status(b.id)?.state === 'up');
      status = await startStatusServer(config.status, { stats, metrics, api, ready }, statusOptions(config));
    } catch (err) {
      closing = stopAll(true);
      await closing;
      throw err;
    }
  }

  info(
    upCount === 0
      ? `warning: no backend passed its first check; clients wait up to ${config.queueTimeout} ms for one`
      : `first checks: ${upCount} of ${first.length} backends up`,
  );

  const shutdown = async (force: boolean): Promise<void> => {
    info(
      force
        ? `closing every connection now in ${slots.size} workers`
        : `shutting down: not accepting; ${slots.size} workers draining, ${drainTimeout} ms to finish`,
    );
    await stopAll(force);
    await status?.close();
    if (crashed.length > 0) {
      info(`stopped; ${crashed.length} worker${crashed.length === 1 ? '' : 's'} did not drain cleanly`);
      // The program exits non-zero with this on stderr: a crash is never a clean stop.
      throw new Error(crashed.join('; '));
    }
    info('stopped');
  };

  return {
    address: address!,
    statusAddress: status?.address,
    probe,
    control,
    events,
    workers,
    stats,
    broadcast,
    reload,
    close() {
      closing ??= shutdown(false);
      return closing;
    },
    destroy() {
      if (closing === undefined) {
        closing = shutdown(true);
        return closing;
      }
      // A drain is under way: cut it short in every worker.
      for (const slot of slots.values()) send(slot, { type: 'shutdown', force: true, timeout: 0 });
      return closing;
    },
  };
}
