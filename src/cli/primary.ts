/**
 * Multi-core mode of the reference balancer (`--workers N`, `--workers auto`):
 * the primary.
 *
 * Node serves a proxy from one thread, so one process tops out at one core.
 * With `--workers N` the process becomes a `node:cluster` primary that forks N
 * workers sharing the listening socket (each runs worker.ts; the messages
 * between them are ipc.ts).
 *
 * The **primary** accepts nothing itself beyond what `node:cluster` does for
 * it. It runs the one {@link HealthProbe}, attached to a {@link ControlPool}:
 * a pool with the same options and no listener, that never holds a
 * connection. Its health changes are broadcast to every worker as verdicts;
 * the workers' passive signals are emitted on it for the probe to count; the
 * admin API and a reload change it, and each change it accepts is run in
 * every worker too. A new worker starts from its current state (backends and
 * tunables, verdicts, drains and maintenance) before it listens. The primary
 * serves `/stats`, `/metrics` and `/api/`, with the workers' `pool.stats()`
 * gathered over IPC and merged (merge-stats.ts); it replaces a worker that
 * dies and, on SIGTERM, drains every worker and exits 0, with the shutdown
 * every mode shares (shutdown.ts).
 *
 * **Fan-out of admin commands** (the {@link ControlPool}, and
 * {@link RunningWorkers.broadcast} for a program): a command such as
 * `{ op: 'drain', id: 'b1', timeout: 30000 }` is first run on the control
 * pool, then sent to every worker; each runs it on its own pool
 * (`runCommand` in worker.ts) and replies once it has taken effect; one
 * {@link WorkerReply} per worker (a worker that does not answer within
 * {@link STATS_TIMEOUT}, or exits first, gets `ok: false`, and the primary
 * logs it). A replacement worker needs no replay of past commands: it starts
 * from the control pool's state. To add an operation: extend
 * {@link WorkerCommand}, send it from the {@link ControlPool} method that
 * makes the change, handle it in `runCommand` (worker.ts).
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
import { ConnectError, ConnectTimeoutError, HealthProbe, UpstreamPool, type CheckResult, type PoolStats } from '../index.js';
import { formatAddress, type HostPort } from './address.js';
import { handleAdminRequest, type AdminPool, type AdminReply, type AdminRequest } from './admin-api.js';
import type { ClientCapStats } from './client-cap.js';
import type { BalancerConfig } from './config.js';
import { ControlPool } from './control-pool.js';
import { describeCheck } from './event-log.js';
import {
  STATS_TIMEOUT,
  HEARTBEAT_INTERVAL,
  errorOf,
  toWorker,
  workerSettings,
  type AdminCommand,
  type FromWorker,
  type ToWorker,
  type WorkerCommand,
  type WorkerReply,
} from './ipc.js';
import { mergeReplies, withWorkerCounts, workerEntries, workerMetrics, type WorkerInfo, type WorkersStats } from './merge-stats.js';
import { renderMetrics } from './metrics.js';
import { ProbeStats } from './probe-stats.js';
import { ProcessStats, type ProcessFigures } from './process-stats.js';
import { RecentEvents } from './recent-events.js';
import type { ReloadSummary } from './reload.js';
import { reloadConfig } from './reload-config.js';
import { asConfigError, buildInfo, checkLabel, poolOptions, probeCheck, probeOptions, probeSummary, readToken, statusOptions, type BalancerIo } from './setup.js';
import { Shutdown } from './shutdown.js';
import { startStatusServer, type StatusServer } from './status-server.js';
import { VerdictCounts } from './verdict-counts.js';

/** After the drain deadline, how long a worker gets to exit before it is killed. */
const EXIT_GRACE = 5000;
/** A worker that died before it listened is replaced after this long, not at once (no fork storm). */
const RESPAWN_DELAY = 1000;

/** A command as the log names it: `drain b1`, `reconcile`. */
function describeCommand(command: AdminCommand): string {
  switch (command.op) {
    case 'add':
      return `add ${command.spec.id ?? formatAddress(command.spec)}`;
    case 'reconcile':
      return 'reconcile';
    default:
      return `${command.op} ${command.id}`;
  }
}

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
 * listens. Throws `ConfigError` before anything starts when the config
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
  const probe = asConfigError(() => new HealthProbe(probeOptions(config, check)));
  const pool = asConfigError(() => new UpstreamPool(poolOptions(config)));
  const info = (message: string): void => io.log(`${new Date().toISOString()} ${message}`);
  const slots = new Map<number, Slot>();
  const gatherings = new Map<number, Gathering>();
  let seq = 0;
  let restarts = 0;
  /** Set once the workers are asked to stop (a shutdown, or a start that failed): an exit is then not replaced. */
  let stopping = false;
  const respawns = new Set<NodeJS.Timeout>();
  let heartbeat: NodeJS.Timeout | undefined = undefined;
  /** Workers that did not exit cleanly while draining: the shutdown reports them and fails. */
  const crashed: string[] = [];
  /** Workers the primary itself killed (still starting, or past the drain deadline). */
  const killed = new Set<number>();

  const send = (slot: Slot, message: ToWorker): void => toWorker(slot.worker, message);
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

  const settings = workerSettings(config);
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
      if (stopping) {
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
          if (!stopping) fork();
        },
        slot.listening ? 0 : RESPAWN_DELAY,
      );
      respawns.add(timer);
    });
  };

  // What each step of the shared shutdown sequence is here (shutdown.ts).
  /** No more forks, no more heartbeats: the workers stop accepting on their `shutdown` message. */
  const stopForking = (): void => {
    stopping = true;
    clearInterval(heartbeat);
    for (const timer of respawns) clearTimeout(timer);
    respawns.clear();
  };
  /**
   * Has every started worker drain for `timeout` ms (`force`: close now) and
   * resolves once every worker exited; one still running {@link EXIT_GRACE} ms
   * past the deadline is killed, as is one still starting (nothing to drain).
   */
  const drainWorkers = async (force: boolean, timeout: number): Promise<void> => {
    const allGone = new Promise<void>((resolve) => {
      exitedAll = resolve;
      if (slots.size === 0) resolve();
    });
    for (const slot of slots.values()) {
      // The drain deadline in force now (a reload may have changed it).
      if (slot.started) send(slot, { type: 'shutdown', force, timeout });
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
    }, (force ? 0 : timeout) + EXIT_GRACE);
    await allGone;
    clearTimeout(deadline);
  };
  let status: StatusServer | undefined;
  /** Once the workers are gone: the probe, the primary's own figures, the control pool, the status endpoint. */
  const release = async (): Promise<void> => {
    probe.off('checked', onChecked);
    await probe.stop();
    probeStats.detach();
    events.close();
    verdictCounts.close();
    proc.close();
    await control.close();
    await status?.close();
  };
  /** A start that failed: the same steps, without the lines. */
  const abandon = async (): Promise<void> => {
    stopForking();
    await drainWorkers(true, 0);
    await release();
  };
  const shutdown = new Shutdown(
    {
      announce: (force, timeout) =>
        force ? `closing every connection now in ${slots.size} workers` : `shutting down: not accepting; ${slots.size} workers draining, ${timeout} ms to finish`,
      stopAccepting: stopForking,
      drain: drainWorkers,
      cutShort() {
        for (const slot of slots.values()) send(slot, { type: 'shutdown', force: true, timeout: 0 });
      },
      release,
      finish: () =>
        crashed.length === 0
          ? { line: 'stopped' }
          : {
              line: `stopped; ${crashed.length} worker${crashed.length === 1 ? '' : 's'} did not drain cleanly`,
              // The program exits non-zero with this on stderr: a crash is never a clean stop.
              failure: new Error(crashed.join('; ')),
            },
    },
    { log: info, drainTimeout: () => drainTimeout },
  );

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
    await abandon();
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
    return { ...mergeReplies(replies), replies };
  };

  const stats = async (): Promise<WorkersStats> => {
    const { merged, replies, clients } = await gather();
    const listening = new Map(workers().map((w) => [w.worker, w.listening]));
    return { ...merged, clients, probe: probeSummary(config, probeStats), workers: workerEntries(replies, listening), restarts };
  };

  const metrics = async (): Promise<string> => {
    const [{ merged, replies, clients }, procs] = await Promise.all([gather(), sendToWorkers({ op: 'process' })]);
    const processes: ProcessFigures[] = [proc.snapshot(), ...procs.flatMap((r) => (r.ok && r.result !== undefined ? [r.result as ProcessFigures] : []))];
    return (
      renderMetrics(merged, probeStats.snapshot(), { clients, build, processes, verdicts: verdictCounts.snapshot() }) +
      workerMetrics(slots.size, replies.filter((r) => r.ok).length, restarts)
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

  if (config.status !== undefined || config.adminSocket !== undefined) {
    try {
      // /readyz as in a single process: the control pool holds the verdicts every worker follows.
      const ready = (): boolean => !stopping && pool.backends().some((b) => pool.status(b.id)?.state === 'up');
      status = await startStatusServer(config.status, { stats, metrics, api, ready }, statusOptions(config));
    } catch (err) {
      await abandon();
      throw err;
    }
  }

  info(
    upCount === 0
      ? `warning: no backend passed its first check; clients wait up to ${config.queueTimeout} ms for one`
      : `first checks: ${upCount} of ${first.length} backends up`,
  );

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
    close: () => shutdown.close(),
    destroy: () => shutdown.destroy(),
  };
}
