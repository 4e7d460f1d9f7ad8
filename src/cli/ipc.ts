/**
 * The messages between the primary of `--workers N` and its workers, and the
 * two ways of sending them. Messages are structured clones
 * (`serialization: 'advanced'`, so `Infinity` survives).
 *
 * - primary → worker ({@link ToWorker}): `start` (settings, verdicts,
 *   replay), `health` (`{ type: 'health', id, health: 'up' | 'leaving' |
 *   'down', reason, cause }`), `command`, `shutdown` (with the drain deadline
 *   in force), `tick` (a heartbeat each {@link HEARTBEAT_INTERVAL} ms),
 *   `verdicts` (all of them, after a `resync`);
 * - worker → primary ({@link FromWorker}): `ready`, `listening`, `failed`,
 *   `reply`, `connectFailed`, `writeStalled`, `removed` (a backend left its
 *   pool: a drained removal waits for every worker's), `resync`.
 *
 * A send never throws: a channel that closed (the other side died) is
 * handled where its `exit` or `disconnect` event is.
 *
 * @module
 */
import type { Worker } from 'node:cluster';
import type { BackendInput, BackendSpec, BackendTunables, HealthCause } from '../index.js';
import type { HostPort } from './address.js';
import type { BackendAddress, BalancerConfig } from './config.js';
import type { ProbeSettings } from './setup.js';

/** A health verdict, as broadcast to every worker. */
export interface HealthMessage {
  readonly type: 'health';
  readonly id: string;
  readonly health: 'up' | 'leaving' | 'down';
  readonly reason: string;
  readonly cause: HealthCause | undefined;
}

/** The tunables a command carries (structured-clone safe: `Infinity` survives the `advanced` serialization). */
export type CommandTunables = Pick<BackendTunables, 'weight' | 'maxConnections'>;

/**
 * What every worker can be asked to do to its pool. `stats` answers
 * `pool.stats()`; the others are the pool's admin calls, answered as soon as
 * they have taken effect (a drain or a drained removal goes on after the
 * answer, each worker until its own deadline).
 */
export type WorkerCommand =
  | { readonly op: 'stats' }
  | { readonly op: 'process' }
  | { readonly op: 'drain'; readonly id: string; readonly timeout?: number | undefined }
  | { readonly op: 'maintenance'; readonly id: string; readonly reason?: string | undefined }
  | { readonly op: 'ready'; readonly id: string; readonly reason?: string | undefined }
  | { readonly op: 'update'; readonly id: string; readonly tunables: CommandTunables }
  | { readonly op: 'add'; readonly spec: BackendSpec }
  | { readonly op: 'remove'; readonly id: string; readonly drain: boolean; readonly timeout?: number | undefined }
  | { readonly op: 'reconcile'; readonly specs: readonly BackendInput[]; readonly drainTimeout?: number | undefined };

/** An admin command: every {@link WorkerCommand} but the reads (`stats`, `process`). */
export type AdminCommand = Exclude<WorkerCommand, { readonly op: 'stats' } | { readonly op: 'process' }>;

/** One worker's answer to a command. */
export type WorkerReply =
  | { readonly worker: number; readonly pid: number; readonly ok: true; readonly result: unknown }
  | { readonly worker: number; readonly pid: number; readonly ok: false; readonly error: { readonly code: string; readonly message: string } };

/** Where a new worker starts from: the backends with their tunables, the verdicts, the admin states. */
export interface ControlSnapshot {
  readonly backends: readonly BackendAddress[];
  readonly verdicts: readonly HealthMessage[];
  readonly replay: readonly AdminCommand[];
}

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

/** The settings a worker gets in its `start` message. */
export function workerSettings(config: BalancerConfig): WorkerSettings {
  return {
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
}

/** What the primary sends a worker. */
export type ToWorker =
  | { readonly type: 'start'; readonly settings: WorkerSettings; readonly verdicts: ControlSnapshot['verdicts']; readonly replay: ControlSnapshot['replay'] }
  | HealthMessage
  | { readonly type: 'command'; readonly seq: number; readonly command: WorkerCommand }
  | { readonly type: 'shutdown'; readonly force: boolean; readonly timeout: number }
  | { readonly type: 'tick' }
  | { readonly type: 'verdicts'; readonly verdicts: ControlSnapshot['verdicts'] };

/** What a worker sends its primary. */
export type FromWorker =
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
/** How often the primary tells its workers it is alive (a `tick` message). */
export const HEARTBEAT_INTERVAL = 1000;
/**
 * A worker that has heard nothing from its primary for this long (and at
 * least three check intervals) checks the backends itself until the primary
 * speaks again: a stopped primary (SIGSTOP, a debugger, a stall) must not
 * freeze every worker's verdicts.
 */
export const PRIMARY_SILENCE = 5000;

/** Sends `message` to the primary; a closed channel (the primary died) is not an exception here. */
export function toPrimary(message: FromWorker): void {
  // A callback: a closed channel is reported to it, not thrown.
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

/** Sends `message` to a worker, while its channel is open. */
export function toWorker(worker: Worker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message, undefined, undefined, () => {});
}

/** An error as a reply carries it: a stable `code` (`ERROR` when it has none) and its message. */
export function errorOf(err: unknown): { code: string; message: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return { code: typeof code === 'string' ? code : 'ERROR', message: err instanceof Error ? err.message : String(err) };
}
