/**
 * The primary's pool in multi-core mode (`--workers N`): a real
 * {@link UpstreamPool} built from the same options as every worker's, with no
 * listener, that never holds a connection. It is the one place the
 * backends' state lives in the primary: the probe attaches to it, the admin
 * API and a reload change it, and every change it accepts is sent to every
 * worker as a command to run on its own pool. A replacement worker starts from
 * its {@link ControlPool.snapshot}.
 *
 * The fan-out is done by the calls, not by the pool's events: an event does
 * not carry a drain's deadline, nor tell a drained removal from an immediate
 * one, and a reload must reach each worker as one `reconcile` (so a backend a
 * worker is still draining and the new config lists again is kept there, as
 * in a single process). Health is the exception: the probe's verdicts are the
 * control pool's `backendUp`/`backendDown` events, sent as they happen.
 *
 * @module
 */
import type { EventEmitter } from 'eventemitter3';
import { backendId } from '../index.js';
import type { ConnectError, ConnectTimeoutError, ProbeTargetEvents, Backend, BackendInput, BackendSpec, BackendTunables, PoolStats, ReconcileOptions, ReconcileResult, RemoveOptions, RemoveResult, DrainOptions, StateChange, UpstreamPool } from '../index.js';
import type { BackendAddress } from './config.js';
import type { AdminCommand, ControlSnapshot, HealthMessage, WorkerReply } from './ipc.js';
import { MAX_MS } from './limits.js';

/** How the control pool reaches the workers. */
export interface ControlPoolLinks {
  /** Sends a verdict to every started worker (fire and forget: verdicts are applied on receipt). */
  readonly verdict: (verdict: HealthMessage) => void;
  /** Runs a command in every started worker; resolves with each one's reply. */
  readonly command: (command: AdminCommand) => Promise<WorkerReply[]>;
  /**
   * The ids of the workers now started: those a drained removal waits for.
   * @default () => [] (a removal then ends at its deadline)
   */
  readonly workers?: (() => readonly number[]) | undefined;
}

/** After a drained removal's deadline, how long the control pool waits for the workers' word before it removes the backend anyway. */
export const REMOVAL_GRACE = 5000;

/** The pool's default drain deadline, for a removal given none. */
const DEFAULT_DRAIN = 30_000;

/** A drained removal under way: the workers that still hold the backend. */
interface Removal {
  readonly waiting: Set<number>;
  readonly timer: NodeJS.Timeout;
  readonly done: Promise<RemoveResult>;
  /** Settles the removal: removed (the default), or called off with a reason. */
  readonly finish: (result?: RemoveResult) => void;
}

function specOf(b: Backend): BackendSpec {
  return { id: b.id, host: b.host, port: b.port, weight: b.weight, maxConnections: b.maxConnections };
}

/** A spec's id as the pool gives it (the balancer always names its backends). */
function idOf(spec: BackendInput): string {
  if (typeof spec === 'string') return spec;
  return spec.id ?? backendId(spec.host, spec.port);
}

function validTimeout(timeout: number | undefined): boolean {
  return timeout === undefined || (Number.isSafeInteger(timeout) && timeout >= 0 && timeout <= MAX_MS);
}

/**
 * The primary's pool and its fan-out. Offers the pool calls the admin API and
 * the reload make (same validation, same errors, since the real pool runs
 * them first); each accepted call is sent to every worker.
 *
 * @example
 * ```ts
 * const control = new ControlPool(new UpstreamPool(poolOptions(config)), {
 *   verdict: (v) => sendToEveryWorker(v),
 *   command: (c) => runInEveryWorker(c),
 * });
 * probe.attach(control.pool);
 * control.markMaintenance('b1'); // every worker's pool too
 * ```
 */
export class ControlPool {
  /** The pool the probe attaches to; change it only through this object, or the workers do not follow. */
  readonly pool: UpstreamPool;
  readonly #links: ControlPoolLinks;
  readonly #verdicts = new Map<string, HealthMessage>();
  /**
   * Drained removals under way. This pool holds no connection, so its own
   * drain would end at once and the probe would stop checking a backend the
   * workers still hold connections to (a backend that fails while draining
   * would then keep them until the deadline). It stays here, `draining` and
   * checked, until every worker removed it or its deadline (plus
   * {@link REMOVAL_GRACE}) passed, as in a single process.
   */
  readonly #removals = new Map<string, Removal>();
  #captured: Promise<WorkerReply[]>[] | undefined;
  readonly #onHealth = (backend: Backend, change: StateChange): void => {
    if (change.health === 'unknown') return;
    const verdict: HealthMessage = { type: 'health', id: backend.id, health: change.health, reason: change.reason, cause: change.cause };
    this.#verdicts.set(backend.id, verdict);
    this.#links.verdict(verdict);
  };
  readonly #onRemoved = (backend: Backend): void => {
    this.#verdicts.delete(backend.id);
  };

  constructor(pool: UpstreamPool, links: ControlPoolLinks) {
    this.pool = pool;
    this.#links = links;
    pool.on('backendUp', this.#onHealth);
    pool.on('backendDown', this.#onHealth);
    pool.on('backendRemoved', this.#onRemoved);
  }

  // ------------------------------------------------------------- reads

  stats(): PoolStats {
    return this.pool.stats();
  }

  has(id: string): boolean {
    return this.pool.has(id);
  }

  backends(): Backend[] {
    return this.pool.backends();
  }

  /** Where a worker started now begins: the current backends, verdicts and admin states. */
  snapshot(): ControlSnapshot {
    const backends: BackendAddress[] = [];
    const replay: AdminCommand[] = [];
    for (const b of this.pool.backends()) {
      // Being removed: a new worker holds nothing of it, so it never has it.
      if (this.#removals.has(b.id)) continue;
      backends.push({ id: b.id, host: b.host, port: b.port, weight: b.weight, maxConnections: b.maxConnections });
      // A new worker holds nothing: its drain has nothing to wait for, the deadline does not matter.
      const admin = this.pool.status(b.id)?.admin;
      if (admin === 'draining') replay.push({ op: 'drain', id: b.id });
      else if (admin === 'maintenance') replay.push({ op: 'maintenance', id: b.id, reason: 'maintenance' });
    }
    const verdicts = [...this.#verdicts.values()].filter((v) => this.pool.has(v.id) && !this.#removals.has(v.id));
    return { backends, verdicts, replay };
  }

  // ------------------------------------------------------------ changes

  add(spec: BackendInput): Backend {
    const backend = this.pool.add(spec);
    this.#fanOut({ op: 'add', spec: specOf(backend) });
    return backend;
  }

  update(id: string, tunables: BackendTunables): Backend {
    const backend = this.pool.update(id, tunables);
    this.#fanOut({
      op: 'update',
      id,
      tunables: { ...(tunables.weight !== undefined && { weight: tunables.weight }), ...(tunables.maxConnections !== undefined && { maxConnections: tunables.maxConnections }) },
    });
    return backend;
  }

  /** Resolves at once here (this pool holds nothing); each worker closes what is left at its own deadline. */
  drain(id: string, options: DrainOptions = {}): Promise<void> {
    const done = this.pool.drain(id, options);
    if (this.pool.status(id)?.admin === 'draining' && validTimeout(options.timeout)) this.#fanOut({ op: 'drain', id, timeout: options.timeout });
    return done;
  }

  markMaintenance(id: string, reason?: string): number {
    // 0: this pool has nothing to take out; each worker logs its own count.
    const n = this.pool.markMaintenance(id, reason);
    this.#fanOut({ op: 'maintenance', id, reason });
    return n;
  }

  markReady(id: string, reason?: string): void {
    this.pool.markReady(id, reason);
    // As in a single process: ready calls a drained removal off.
    this.#cancelRemoval(id, reason ?? 'ready');
    this.#fanOut({ op: 'ready', id, reason });
  }

  /**
   * Without `drain`: removed here and in every worker at once. With `drain`:
   * `draining` here (still checked) until every worker has drained and
   * removed it, or its deadline passed; each worker closes what is left at
   * its own deadline. The promise settles when it is gone from this pool.
   */
  remove(id: string, options: RemoveOptions = {}): Promise<RemoveResult> {
    const drain = options.drain === true;
    if (!drain || !this.pool.has(id) || !validTimeout(options.timeout) || this.pool.status(id) === undefined) {
      const known = this.pool.has(id);
      const done = this.pool.remove(id, options);
      if (known && !this.pool.has(id)) {
        // A drained removal under way ends here: removed at once.
        this.#removals.get(id)?.finish();
        this.#fanOut({ op: 'remove', id, drain: false, timeout: options.timeout });
      }
      return done;
    }
    const done = this.#beginRemoval(id, options.timeout);
    this.#fanOut({ op: 'remove', id, drain: true, timeout: options.timeout });
    return done;
  }

  /** Worker `worker` no longer has backend `id` (its pool emitted `backendRemoved`). */
  workerRemoved(worker: number, id: string): void {
    const removal = this.#removals.get(id);
    if (removal === undefined) return;
    removal.waiting.delete(worker);
    if (removal.waiting.size === 0) removal.finish();
  }

  /** Worker `worker` exited: no removal waits for it any more. */
  workerExited(worker: number): void {
    for (const removal of [...this.#removals.values()]) {
      removal.waiting.delete(worker);
      if (removal.waiting.size === 0) removal.finish();
    }
  }

  /** The ids being drained for removal. */
  removing(): string[] {
    return [...this.#removals.keys()];
  }

  #beginRemoval(id: string, timeout: number | undefined): Promise<RemoveResult> {
    const existing = this.#removals.get(id);
    if (existing !== undefined) return existing.done;
    // Draining here: no placement (there is none), the probe goes on.
    this.pool.drain(id, {}).catch(() => {});
    let finish!: (result?: RemoveResult) => void;
    const done = new Promise<RemoveResult>((resolve) => {
      finish = (result: RemoveResult = { removed: true }) => {
        const current = this.#removals.get(id);
        if (current?.done !== done) return;
        clearTimeout(current.timer);
        this.#removals.delete(id);
        // Nothing to drain here: removed at once (the workers have done theirs).
        if (result.removed && this.pool.has(id) && !this.pool.closed) this.pool.remove(id).catch(() => {});
        resolve(result);
      };
    });
    const waiting = new Set(this.#links.workers?.() ?? []);
    const timer = setTimeout(() => finish(), (timeout ?? DEFAULT_DRAIN) + REMOVAL_GRACE);
    timer.unref();
    this.#removals.set(id, { waiting, timer, done, finish });
    if (waiting.size === 0) queueMicrotask(() => finish());
    return done;
  }

  /** A drained removal called off (the backend made ready, or listed again): its caller learns it stays. */
  #cancelRemoval(id: string, reason = 'relisted'): void {
    this.#removals.get(id)?.finish({ removed: false, reason });
  }

  /**
   * The reload: sent to every worker as one `reconcile` of the same list.
   * Here, a backend no longer listed is kept (draining, checked) until the
   * workers have removed it, as {@link ControlPool.remove} with `drain`; one
   * listed again while it drains is kept and made active, as the pool does.
   */
  reconcile(specs: readonly BackendInput[], options: ReconcileOptions = {}): ReconcileResult {
    const wanted = new Set(specs.map(idOf));
    const leaving = this.pool.backends().filter((b) => !wanted.has(b.id));
    // Listed to the pool so it keeps them; validates every spec before any change.
    const result = this.pool.reconcile([...specs, ...leaving.map(specOf)], options);
    const relisted: string[] = [];
    for (const id of wanted) {
      if (!this.#removals.has(id)) continue;
      this.#cancelRemoval(id);
      if (this.pool.status(id)?.admin === 'draining') this.pool.markReady(id, 'relisted');
      relisted.push(id);
    }
    const drains = leaving.map((b) => this.#beginRemoval(b.id, options.drainTimeout));
    const gone = new Set(leaving.map((b) => b.id));
    // The list as given: the workers drain the backends it leaves out.
    this.#fanOut({ op: 'reconcile', specs, drainTimeout: options.drainTimeout });
    return {
      added: result.added,
      updated: [...result.updated.filter((id) => !relisted.includes(id)), ...relisted.filter((id) => !result.updated.includes(id))],
      removed: [...gone],
      replaced: result.replaced,
      unchanged: result.unchanged.filter((id) => !gone.has(id) && !relisted.includes(id)),
      settled: Promise.all([result.settled, ...drains]).then(() => {}),
    };
  }

  /**
   * Runs an admin command here, then in every worker: what
   * `RunningWorkers.broadcast` does with one. Rejects with what the pool
   * throws or rejects with (nothing is sent then); resolves with the workers'
   * replies.
   */
  async apply(command: AdminCommand): Promise<WorkerReply[]> {
    const { value: done, acks } = this.capture((): Promise<unknown> | undefined => {
      switch (command.op) {
        case 'drain':
          return this.drain(command.id, command.timeout === undefined ? {} : { timeout: command.timeout });
        case 'maintenance':
          this.markMaintenance(command.id, command.reason);
          return undefined;
        case 'ready':
          this.markReady(command.id, command.reason);
          return undefined;
        case 'update':
          this.update(command.id, command.tunables);
          return undefined;
        case 'add':
          this.add(command.spec);
          return undefined;
        case 'remove':
          return this.remove(command.id, { drain: command.drain, ...(command.timeout !== undefined && { timeout: command.timeout }) });
        case 'reconcile':
          return this.reconcile(command.specs, command.drainTimeout === undefined ? {} : { drainTimeout: command.drainTimeout }).settled;
      }
    });
    const replies = await acks;
    // Nothing sent: the pool refused it, and `done` says why.
    if (replies.length === 0) await done;
    else done?.catch(() => {});
    return replies[0] ?? [];
  }

  /**
   * Runs `fn` and collects the commands it sent: `acks` resolves with every
   * command's replies, in order, once every worker answered (or timed out).
   * The admin API answers after that, so a change it reports is in force in
   * every worker that answered.
   */
  capture<T>(fn: () => T): { readonly value: T; readonly acks: Promise<WorkerReply[][]> } {
    const outer = this.#captured;
    const mine: Promise<WorkerReply[]>[] = [];
    this.#captured = mine;
    try {
      const value = fn();
      return { value, acks: Promise.all(mine) };
    } finally {
      this.#captured = outer;
    }
  }

  /** A worker's dial to `id` failed: emitted here, where the probe counts it as in a single process. */
  connectFailed(id: string, error: ConnectError | ConnectTimeoutError): void {
    const backend = this.pool.get(id);
    if (backend !== undefined) this.pool.emit('connectFailed', backend, error);
  }

  /** A worker's member of `id` stalled its writes (the worker tore it down; the probe checks `id` at once). */
  writeStalled(id: string): void {
    const backend = this.pool.get(id);
    if (backend !== undefined) (this.pool as EventEmitter<ProbeTargetEvents>).emit('writeStalled', backend, undefined);
  }

  /** Stops following the pool's health events. */
  close(): Promise<void> {
    for (const removal of this.#removals.values()) clearTimeout(removal.timer);
    this.#removals.clear();
    this.pool.off('backendUp', this.#onHealth);
    this.pool.off('backendDown', this.#onHealth);
    this.pool.off('backendRemoved', this.#onRemoved);
    return this.pool.destroy();
  }

  #fanOut(command: AdminCommand): void {
    const replies = this.#links.command(command);
    this.#captured?.push(replies);
  }
}
