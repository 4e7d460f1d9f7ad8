/**
 * A worker of `--workers N`: it runs its own {@link UpstreamPool} with the
 * same backends as every other worker and accepts clients on the shared
 * socket. It applies every health verdict it receives to its pool
 * synchronously, in the tick the message arrives, so the teardown of a down
 * backend's connections still happens in that one call (`pool.markDown`). It
 * forwards its pool's passive signals (`connectFailed`, `writeStalled`) to
 * the primary, runs the admin commands the primary fans out
 * ({@link runCommand}), and stops with the shutdown every mode shares
 * (shutdown.ts).
 *
 * **When the primary stops or dies**, the worker never serves on frozen
 * verdicts. After {@link PRIMARY_SILENCE} ms without a message (a stopped
 * primary), it runs its own probe with the same check until the primary
 * speaks again, then asks for its verdicts (`resync`). When the IPC channel
 * closes (the primary died), it stops accepting (freeing the port for the
 * unit a supervisor restarts), checks alone while its connections drain for
 * `drain-timeout`, and exits 0; `node:cluster`'s own habit, exiting at once,
 * would drop every connection.
 *
 * @module
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { ConnectTimeoutError, HealthProbe, UpstreamPool, type PoolStats, type Rebalancer } from '../index.js';
import type { AccessLog } from './access-log.js';
import { ClientCap, clientShare, descriptorLimit } from './client-cap.js';
import { EventLog } from './event-log.js';
import {
  HEARTBEAT_INTERVAL,
  PRIMARY_SILENCE,
  errorOf,
  toPrimary,
  type HealthMessage,
  type ToWorker,
  type WorkerCommand,
  type WorkerSettings,
} from './ipc.js';
import { ProcessStats } from './process-stats.js';
import { accessLogFor, listen, poolOptions, probeCheck, probeOptions, rebalancerFor, type BalancerIo } from './setup.js';
import { Shutdown, announceConnections, exitWhenStopped, stoppedLine } from './shutdown.js';

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

function applyVerdict(pool: UpstreamPool, verdict: HealthMessage): void {
  // Live while the pool drains; nothing to act on once it closed (the worker is exiting).
  if (pool.state === 'closed' || pool.status(verdict.id) === undefined) return;
  if (verdict.health === 'down') pool.markDown(verdict.id, verdict.reason, verdict.cause);
  else if (verdict.health === 'leaving') pool.markLeaving(verdict.id, verdict.reason, verdict.cause);
  else pool.markUp(verdict.id, verdict.reason, verdict.cause);
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
  let cap: ClientCap | undefined;
  let settings: WorkerSettings | undefined;
  let drainTimeout = 0;
  /** Made with the pool: before it, a stop has nothing to drain. */
  let shutdown: Shutdown | undefined;
  /** The worker's own probe while the primary is silent. */
  let ownProbe: HealthProbe | undefined;
  let lastHeard = Date.now();
  let watchdog: NodeJS.Timeout | undefined;
  const proc = new ProcessStats(`worker-${workerId}`);
  const stopping = (): boolean => shutdown?.started ?? false;

  /** SIGTERM, the primary's `shutdown`, or the primary gone: drain (a second one closes everything), then exit. */
  const stop = (force: boolean, timeout?: number): void => {
    if (shutdown === undefined) process.exit(0);
    exitWhenStopped(force ? shutdown.destroy() : shutdown.close(timeout), (message) => {
      write(`${new Date().toISOString()} ${message}`);
      process.exit(1);
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
    if (ownProbe === undefined || stopping()) return;
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
    const rebalancer: Rebalancer | undefined = rebalancerFor(p, current);
    // The log first: the verdicts so far are logged as this worker's transitions.
    const l = new EventLog(p, undefined, { write });
    log = l;
    const access: AccessLog | undefined = accessLogFor(p, current, (line) => l.info(line), { worker: workerId });
    const s = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => p.accept(socket));
    shutdown = new Shutdown(
      {
        announce: (force, timeout) => announceConnections(p.stats().active, force, timeout),
        stopAccepting() {
          s.close();
          // No moves during a drain: they would close connections the drain lets finish.
          rebalancer?.close();
        },
        drain: (force, timeout) => (force ? p.destroy() : p.close({ timeout })),
        cutShort: () => p.destroy(),
        async release() {
          if (watchdog !== undefined) clearInterval(watchdog);
          await ownProbe?.stop();
          await access?.close();
          proc.close();
          l.close();
        },
        finish: () => ({ line: stoppedLine(p.stats().teardowns['pool-closed'] ?? 0) }),
      },
      { log: (line) => l.info(line), drainTimeout: () => drainTimeout },
    );
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
      if (!stopping() && Date.now() - lastHeard > silence) probeAlone(`no word from the primary for ${Date.now() - lastHeard} ms`);
    }, HEARTBEAT_INTERVAL);
    watchdog.unref();
    // Each worker has its own descriptors: its share of the cap, or its own default.
    const limit = descriptorLimit();
    cap = new ClientCap(s, clientShare(current.maxClients, current.workers, limit), (line) => l.info(line));
    l.info(`max clients ${cap.max}${current.maxClients === undefined ? ` (from the descriptor limit ${limit})` : ` (a share of ${current.maxClients})`}`);
    try {
      const address = await listen(s, current.listen);
      s.on('error', (err) => l.info(`listener error: ${err.message}`));
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
        stop(message.force, message.timeout);
        return;
    }
  });
  // The primary died or exited (its IPC channel closed): stop accepting,
  // so the port is free for the unit a supervisor restarts, keep checking
  // the backends here while the connections drain, then exit 0.
  process.on('disconnect', () => {
    if (stopping()) return;
    if (pool === undefined) process.exit(0);
    probeAlone('the primary is gone', 'not accepting; checking the backends in this worker while its connections drain');
    stop(false);
  });
  // A Ctrl-C reaches the whole process group: drain like the primary asks.
  let signals = 0;
  const onSignal = (): void => stop(++signals > 1);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  toPrimary({ type: 'ready' });
}
