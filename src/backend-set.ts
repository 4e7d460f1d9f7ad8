/**
 * The backend side of a pool: a set of backends with two state axes, and
 * the calls that change it (membership, verdicts, operator intents,
 * reconcile). {@link UpstreamPool} extends it with the connections. Every
 * write to a backend's record goes through the {@link BackendTable}.
 *
 * @module
 */
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { resolveBackend, resolveTunables, type Backend, type BackendInput, type BackendTunables } from './backend.js';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { BackendStatus, HealthCause } from './backend-status.js';
import { abortable, checkSignal } from './abortable.js';
import { BackendTable } from './backend-table.js';
import { DuplicateBackendError, PoolClosedError } from './errors.js';
import type { StateChange, TeardownReason, UpstreamPoolEvents } from './events.js';
import { Evacuations } from './leaving-evacuation.js';
import { MAX_TIMER_MS } from './limits.js';
import { noop } from './noop.js';
import type { ResolvedUpstreamPoolOptions } from './options.js';
import type { DrainOptions, ReconcileOptions, ReconcileResult, RemoveOptions, RemoveResult } from './pool-call-options.js';
import { planReconcile } from './reconcile-plan.js';
import * as v from './validate.js';
import { publishBackendStateChanged } from './diagnostics.js';

const log = createDebug('failover-proxy:pool');

const DEFAULT_DRAIN_TIMEOUT = 30_000;
const REMOVED: RemoveResult = Object.freeze({ removed: true });

/** What the backend side needs of the rest of the pool. @internal */
export interface BackendSetHooks {
  /** `close()` or `destroy()` was called. */
  closing(): boolean;
  /** The pool is closed. */
  closed(): boolean;
  /** Takes every member of `entry` out now (the registry's teardown); returns how many. */
  takeOut(entry: ReadonlyBackendEntry, reason: TeardownReason): number;
  /** A backend may take connections it could not before: waiting clients re-pick. */
  capacityAppeared(): void;
}

/** What the pool reads of its backend side. @internal */
export interface BackendSetParts {
  readonly table: BackendTable;
  readonly evacuations: Evacuations;
  /** There are backends and none is eligible. */
  readonly allDown: () => boolean;
}

// Assigned in the class's static block, where it may read private state.
let backendSetParts: (set: BackendSet) => BackendSetParts;

/** The table, evacuations and all-down flag of a backend set, for the pool that extends it. @internal */
export function partsOf(set: BackendSet): BackendSetParts {
  return backendSetParts(set);
}

/**
 * The backends of an {@link UpstreamPool} and the calls that change them.
 * Not made on its own: it is the pool's base.
 */
export class BackendSet extends EventEmitter<UpstreamPoolEvents> {
  readonly #options: ResolvedUpstreamPoolOptions;
  readonly #table: BackendTable;
  readonly #hooks: BackendSetHooks;
  #allDown = false;
  /** Leaving backends: their grace, then their paced evacuation. */
  readonly #evacuations: Evacuations;

  /** @internal */
  constructor(o: ResolvedUpstreamPoolOptions, hooks: BackendSetHooks) {
    super();
    this.#options = o;
    this.#hooks = hooks;
    const { clock } = o;
    this.#table = new BackendTable(
      clock,
      { changed: (entry, change) => this.#changed(entry, change), takeOut: (entry, reason) => hooks.takeOut(entry, reason) },
      { duration: o.slowStart, floor: 0.1, clock },
    );
    this.#evacuations = new Evacuations({ clock, grace: o.leavingGrace, rate: o.leavingRate, closeTimeout: o.closeTimeout });
    // Validate every spec before adding any: a bad list changes nothing.
    const initial = o.backends.map((spec, i) => resolveBackend(spec, `backends[${i}]`));
    const seen = new Set<string>();
    for (const backend of initial) {
      if (seen.has(backend.id)) throw new DuplicateBackendError(backend.id);
      seen.add(backend.id);
    }
    for (const backend of initial) this.#add(backend, false);
    this.#allDown = this.#table.allDown;
  }

  // ---------------------------------------------------------------- backends

  /**
   * Adds a backend (a spec or a `'host:port'` string). Its health starts
   * `up`, or `unknown` (cause `awaiting-probe`) when the pool's
   * `initialState` is `'probe'`; its admin state starts `active`.
   *
   * @throws `INVALID_ARGUMENT` for a bad spec, `DUPLICATE_BACKEND` for a taken id, `POOL_CLOSED`.
   * @example
   * ```ts
   * pool.add('10.0.0.4:6443');
   * pool.add({ host: '10.0.0.5', port: 6443, weight: 2 });
   * ```
   */
  add(spec: BackendInput): Backend {
    this.#assertOpen();
    const backend = resolveBackend(spec, 'backend');
    this.#table.assertFree(backend.id);
    return this.#add(backend, true);
  }

  #add(backend: Backend, warm: boolean): Backend {
    const at = this.#options.clock.now();
    const probeFirst = this.#options.initialState === 'probe';
    const cause: HealthCause = probeFirst
      ? { source: 'pool', code: 'awaiting-probe', message: 'waiting for the first health check', at }
      : { source: 'pool', code: 'added', message: 'assumed healthy until checked', at };
    const entry = this.#table.add(backend, probeFirst ? 'unknown' : 'up', cause, warm);
    if (log.enabled) log('%s added (%s)', backend.id, entry.state);
    this.emit('backendAdded', backend);
    if (entry.eligible) this.#capacityAppeared();
    return backend;
  }

  /**
   * Removes a backend. Without `drain`, every member pinned to it is taken
   * out (reason `backend-removed`) before this returns and the promise is
   * already settled; with `drain`, it first drains with the given deadline
   * (see {@link drain}). Resolves with `{ removed: true }` once the backend
   * is out of the pool, or `{ removed: false, reason }` when the removal was
   * called off while it drained (`markReady`, or a reconcile listing it
   * again: reason `relisted`). Works while the pool closes.
   *
   * Rejects with `UNKNOWN_BACKEND` for an id not in the pool,
   * `INVALID_ARGUMENT`, `POOL_CLOSED` once closed, or `signal.reason`.
   */
  remove(id: string, options: RemoveOptions = {}): Promise<RemoveResult> {
    try {
      this.#assertNotClosed();
      const entry = this.#table.get(id);
      v.knownKeys('options', v.object('options', options), ['drain', 'timeout', 'signal']);
      if (options.drain !== undefined) v.boolean('drain', options.drain);
      const timeout = v.integer('timeout', options.timeout ?? DEFAULT_DRAIN_TIMEOUT, 0, MAX_TIMER_MS);
      const signal = checkSignal('signal', options.signal);
      signal?.throwIfAborted();
      if (options.drain === true) return abortable(this.#drainToRemove(entry, timeout), signal);
      this.#delete(entry);
      return Promise.resolve(REMOVED);
    } catch (err) {
      return Promise.reject(asError(err));
    }
  }

  async #drainToRemove(entry: ReadonlyBackendEntry, timeout: number): Promise<RemoveResult> {
    await this.#table.drainToRemove(entry, timeout);
    const outcome = this.#table.removalOutcome(entry);
    if (outcome === 'gone') return REMOVED;
    if (outcome === 'remove') {
      this.#delete(entry);
      return REMOVED;
    }
    // A reconcile that listed it again (or markReady) called the removal off.
    return { removed: false, reason: outcome.calledOff };
  }

  #delete(entry: ReadonlyBackendEntry): void {
    this.#evacuations.stop(entry);
    const tornDown = this.#table.delete(entry, 'backend-removed');
    if (log.enabled) log('%s removed, %d members taken out', entry.backend.id, tornDown);
    this.emit('backendRemoved', entry.backend);
    this.#checkAllDown();
  }

  /**
   * Changes a live backend's tunables without touching its members: weight
   * (`0` takes it out of rotation, its members stay), per-backend
   * `maxConnections`, `meta`. Identity (id, host, port, TLS) is immutable:
   * a changed address is a remove and an add (see {@link reconcile}).
   *
   * @throws `UNKNOWN_BACKEND`, `INVALID_ARGUMENT` (nothing changed), `POOL_CLOSED`
   * @example
   * ```ts
   * pool.update('10.0.0.3:6443', { weight: 0 }); // no new connections; existing ones stay
   * ```
   */
  update(id: string, tunables: BackendTunables): Backend {
    this.#assertOpen();
    const entry = this.#table.get(id);
    const raw = v.object('tunables', tunables);
    v.knownKeys('tunables', raw, ['weight', 'maxConnections', 'meta']);
    const next = resolveTunables(tunables, 'tunables');
    return this.#applyTunables(entry, next);
  }

  #applyTunables(entry: ReadonlyBackendEntry, next: BackendTunables): Backend {
    const change = this.#table.applyTunables(entry, next);
    if (change === undefined) return entry.backend;
    this.emit('backendUpdated', entry.backend, change.changed);
    if (change.capacityAppeared) this.#capacityAppeared();
    this.#checkAllDown();
    return entry.backend;
  }

  /**
   * Makes the pool match a desired list of backends — the one call behind a
   * config reload and DNS re-resolution: adds new ones, updates changed
   * tunables live (their members untouched), drains then removes the ones no
   * longer listed (with `drainTimeout`), and replaces a backend whose address
   * or TLS settings changed (removed at once, added anew). Every spec is
   * validated first: a bad list throws and changes nothing.
   *
   * @throws `INVALID_ARGUMENT`, `DUPLICATE_BACKEND` (an id listed twice), `POOL_CLOSED`
   * @example
   * ```ts
   * const { added, removed } = pool.reconcile(['10.0.0.1:6443', '10.0.0.4:6443'], { drainTimeout: 60_000 });
   * ```
   */
  reconcile(specs: readonly BackendInput[], options: ReconcileOptions = {}): ReconcileResult {
    this.#assertOpen();
    if (!Array.isArray(specs)) throw v.invalid('specs', 'an array of backends', specs);
    v.knownKeys('options', v.object('options', options), ['drainTimeout']);
    const drainTimeout = v.integer('drainTimeout', options.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT, 0, MAX_TIMER_MS);
    const plan = planReconcile(specs, this.#table.entries.values());
    const drains = plan.remove.map((id) => this.remove(id, { drain: true, timeout: drainTimeout }));
    for (const step of plan.steps) {
      if (step.action === 'add') this.#add(step.backend, true);
      else if (step.action === 'replace') {
        this.#delete(this.#table.get(step.backend.id));
        this.#add(step.backend, true);
      } else if (step.action === 'update') {
        const { id, tunables, relisted } = step.update;
        // Listed again while an earlier reconcile drains it: keep it.
        if (relisted) this.#table.relist(this.#table.get(id));
        this.#applyTunables(this.#table.get(id), tunables);
      }
    }
    const ids = (backends: readonly Backend[]): string[] => backends.map((b) => b.id);
    const result = { added: ids(plan.add), updated: plan.update.map((u) => u.id), removed: [...plan.remove], replaced: ids(plan.replace), unchanged: [...plan.unchanged] };
    if (log.enabled) log('reconciled: +%d ~%d -%d replaced %d', result.added.length, result.updated.length, result.removed.length, result.replaced.length);
    return { ...result, settled: Promise.all(drains).then(noop) };
  }

  /** The backend with this id, or `undefined`. */
  get(id: string): Backend | undefined {
    return this.#table.entries.get(id)?.backend;
  }

  /** Whether a backend with this id is in the pool. */
  has(id: string): boolean {
    return this.#table.entries.has(id);
  }

  /** Every backend, in the order they were added. */
  backends(): Backend[] {
    return Array.from(this.#table.entries.values(), (e) => e.backend);
  }

  /**
   * Where a backend stands: both axes, the derived word, the cause, since
   * when; `undefined` when it is not in the pool.
   *
   * @example
   * ```ts
   * const s = pool.status('10.0.0.3:6443');
   * console.log(s?.health, s?.admin, s?.cause.code); // 'down' 'draining' 'PROBE_TIMEOUT'
   * ```
   */
  status(id: string): BackendStatus | undefined {
    return this.#table.entries.get(id)?.status();
  }

  // ------------------------------------------------------------ health axis

  /**
   * Sets a backend's health to `down` and takes every member pinned to it out
   * **before returning** (whatever its admin state): out of the registry,
   * forwarding no byte; clients are reset when `resetOnTeardown`. With many
   * members their sockets are closed in slices on the next turns (see the
   * pool's `teardown` option). Other backends' members are untouched.
   * Returns how many were taken out (0 when it was already down).
   *
   * Verdicts stay live while the pool closes: a backend that fails during a
   * graceful close is torn down as usual. Once closed, they throw.
   *
   * @param reason carried into each teardown and the `backendDown` event.
   * @param cause why, as data (a probe passes its check result); defaults to an operator cause.
   * @throws `UNKNOWN_BACKEND`, `POOL_CLOSED` (once closed)
   * @example
   * ```ts
   * const n = pool.markDown('10.0.0.3:6443', 'probe-failed');
   * // here no connection to 10.0.0.3 is in the registry or forwards a byte
   * ```
   */
  markDown(id: string, reason: TeardownReason = 'marked-down', cause?: Partial<HealthCause>): number {
    this.#assertNotClosed();
    const entry = this.#table.get(id);
    const change = this.#table.setHealth(entry, 'down', reason, this.#cause(reason, cause, 'down'));
    return change?.tornDown ?? 0;
  }

  /**
   * Sets a backend's health to `up`. It takes new connections again if its
   * admin state is `active` (a drain or maintenance stays as it was). Live
   * while the pool closes, like {@link markDown}.
   *
   * @throws `UNKNOWN_BACKEND`, `POOL_CLOSED` (once closed)
   */
  markUp(id: string, reason = 'marked-up', cause?: Partial<HealthCause>): void {
    this.#assertNotClosed();
    const entry = this.#table.get(id);
    this.#table.setHealth(entry, 'up', reason, this.#cause(reason, cause, 'up'));
  }

  /**
   * Sets a backend's health to `leaving`: it answered that it is shutting
   * down gracefully and still serves (a kube-apiserver whose `/readyz` reports
   * `[-]shutdown`). It takes no new connection from now on; its members stay,
   * for the backend to close. Those still open after the pool's
   * `leavingGrace` are closed gracefully (reason `leaving-grace`), oldest
   * first, at `leavingRate` per second. A later `markDown` tears down what is
   * left at once; `markUp` ends it. The admin axis is untouched.
   *
   * @param reason carried into the `backendLeaving` event.
   * @param cause why, as data (a probe passes its check result); defaults to an operator cause.
   * @throws `UNKNOWN_BACKEND`, `POOL_CLOSED`
   * @example
   * ```ts
   * pool.markLeaving('10.0.0.3:6443', 'probe-leaving');
   * pool.status('10.0.0.3:6443')?.health; // 'leaving'
   * ```
   */
  markLeaving(id: string, reason = 'marked-leaving', cause?: Partial<HealthCause>): void {
    // A verdict: live while the pool closes, as markDown and markUp are.
    this.#assertNotClosed();
    const entry = this.#table.get(id);
    this.#table.setHealth(entry, 'leaving', reason, this.#cause(reason, cause, 'leaving'));
  }

  #cause(reason: string, given: Partial<HealthCause> | undefined, health: 'up' | 'leaving' | 'down'): HealthCause {
    const at = given?.at ?? this.#options.clock.now();
    return {
      source: given?.source ?? 'operator',
      code: given?.code ?? reason,
      layer: given?.layer,
      message: given?.message ?? `marked ${health} (${reason})`,
      durationMs: given?.durationMs,
      at,
    };
  }

  // ------------------------------------------------------------- admin axis

  /**
   * Stops new connections to a backend and lets existing ones finish (a
   * {@link PoolAgent} evicts its idle sockets to it at once); at the deadline
   * those still open are destroyed with reason `drained`. A drain of a
   * backend already draining can bring that deadline forward, never back. Resolves when the backend holds no member (or the
   * drain is superseded by `markReady`, `markMaintenance` or removal). The
   * drain survives health changes: the backend stays `draining` until
   * `markReady`. Works while the pool closes. Rejects with
   * `UNKNOWN_BACKEND`, `POOL_CLOSED` (once closed), `INVALID_ARGUMENT`, or
   * `signal.reason` (the drain goes on).
   *
   * @example
   * ```ts
   * await pool.drain('10.0.0.3:6443', { timeout: 60_000 });
   * ```
   */
  drain(id: string, options: DrainOptions = {}): Promise<void> {
    try {
      this.#assertNotClosed();
      const entry = this.#table.get(id);
      v.knownKeys('options', v.object('options', options), ['timeout', 'signal']);
      const timeout = v.integer('timeout', options.timeout ?? DEFAULT_DRAIN_TIMEOUT, 0, MAX_TIMER_MS);
      const signal = checkSignal('signal', options.signal);
      signal?.throwIfAborted();
      return abortable(this.#table.drain(entry, timeout), signal);
    } catch (err) {
      return Promise.reject(asError(err));
    }
  }

  /**
   * Puts a backend in maintenance: every member is taken out now (as for
   * `markDown`); health verdicts are still recorded but act on nothing until
   * `markReady`. Returns how many members were taken out.
   *
   * @throws `UNKNOWN_BACKEND`, `POOL_CLOSED` (once closed; it works while the pool closes)
   */
  markMaintenance(id: string, reason: TeardownReason = 'maintenance'): number {
    this.#assertNotClosed();
    return this.#table.markMaintenance(this.#table.get(id), reason)?.tornDown ?? 0;
  }

  /**
   * Ends a drain or maintenance: the backend takes new connections again
   * when its health is `up`. A draining removal under way is called off: its
   * promise resolves with `{ removed: false, reason }`.
   *
   * @throws `UNKNOWN_BACKEND`, `POOL_CLOSED` (once closed; it works while the pool closes)
   */
  markReady(id: string, reason = 'ready'): void {
    this.#assertNotClosed();
    this.#table.markReady(this.#table.get(id), reason);
  }

  /** Every transition of either axis: emit, then let waiting clients through. */
  #changed(entry: ReadonlyBackendEntry, change: StateChange): void {
    const { backend } = entry;
    this.emit('backendStateChanged', backend, change);
    publishBackendStateChanged(this, backend, change);
    if (change.axis === 'health') {
      if (change.health === 'leaving' && !this.#hooks.closing()) this.#evacuations.start(entry);
      else if (change.health !== 'leaving') this.#evacuations.stop(entry);
      if (change.health === 'up') this.emit('backendUp', backend, change);
      else if (change.health === 'leaving') this.emit('backendLeaving', backend, change);
      else if (change.health === 'down') this.emit('backendDown', backend, change);
    } else if (change.admin === 'draining') this.emit('backendDraining', backend, change);
    else if (change.admin === 'maintenance') this.emit('backendMaintenance', backend, change);
    else this.emit('backendReady', backend, change);
    this.#checkAllDown();
    if (entry.eligible) this.#capacityAppeared();
  }

  #checkAllDown(): void {
    const now = this.#table.allDown;
    if (now === this.#allDown) return;
    this.#allDown = now;
    const policy = this.#options.allDown;
    if (log.enabled) log(now ? 'all backends down: %s' : 'a backend is eligible again (was all down, %s)', policy);
    this.emit('allDownChanged', now, policy);
    if (now && policy === 'fail-open') this.#capacityAppeared();
  }

  #capacityAppeared(): void {
    this.#hooks.capacityAppeared();
  }

  /** New work (backends, tunables) is refused from the moment `close()` is called. */
  #assertOpen(): void {
    if (this.#hooks.closing()) throw new PoolClosedError();
  }

  /** Verdicts and operator intents stay live while the pool closes. */
  #assertNotClosed(): void {
    if (this.#hooks.closed()) throw new PoolClosedError();
  }

  static {
    backendSetParts = (set) => ({ table: set.#table, evacuations: set.#evacuations, allDown: () => set.#allDown });
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
