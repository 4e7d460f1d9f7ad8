/**
 * The pool: a facade over membership and state ({@link BackendTable}), the
 * registry of live members ({@link MemberRegistry}) and the placement path
 * ({@link PlacementEngine}). A backend leaving service takes its members with
 * it, synchronously. This file is the API, its options and its
 * events; the table writes the records, the registry holds the members,
 * placement grants leases, and the lifecycle closes.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { PoolGate } from './admission.js';
import { resolveBackend, resolveTunables, type Backend, type BackendInput, type BackendTunables } from './backend.js';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { BackendStatus, HealthCause } from './backend-status.js';
import { abortable, checkSignal } from './abortable.js';
import { BackendTable } from './backend-table.js';
import type { PickContext } from './balancers/balancer.js';
import { createBalancer } from './balancers/create-balancer.js';
import { dialBackend } from './dial.js';
import { ConnectError, DuplicateBackendError, FailoverProxyError, PoolClosedError } from './errors.js';
import type { ConnectionClosedInfo, StateChange, TeardownReason, UpstreamPoolEvents } from './events.js';
import { Evacuations } from './leaving-evacuation.js';
import { MemberRegistry } from './member-registry.js';
import { resolveUpstreamPoolOptions, type ResolvedUpstreamPoolOptions, type UpstreamPoolOptions } from './options.js';
import { PinnedConnection } from './pinned-connection.js';
import { PinnedSocket } from './pinned-socket.js';
import { kReportWriteStall, WriteStallDetector } from './write-stall-detector.js';
import { localErrorCode } from './local-errors.js';
import { PlacementEngine, type ConnectOptions, type MemberFactory, type PinOptions, type PlaceOptions } from './placement.js';
import type { Lease } from './lease.js';
import { PoolAgent, type PoolAgentOptions } from './pool-agent.js';
import type { CloseOptions, DrainOptions, ReconcileOptions, ReconcileResult, RemoveOptions, RemoveResult, UpstreamSocket } from './pool-call-options.js';
import { PoolLifecycle } from './pool-lifecycle.js';
import { snapshot, type PoolState, type PoolStats } from './pool-stats.js';
import type { PoolMember } from './pool-member.js';
import { planReconcile } from './reconcile-plan.js';
import * as v from './validate.js';
import { publishBackendStateChanged, publishConnectionClosed, publishConnectionOpened } from './diagnostics.js';
import { MAX_TIMER_MS } from './limits.js';
import { noop } from './noop.js';

const log = createDebug('failover-proxy:pool');

const DEFAULT_DRAIN_TIMEOUT = 30_000;
const REMOVED: RemoveResult = Object.freeze({ removed: true });

/**
 * A set of backends with two state axes, a picker, and a registry of the
 * members pinned to each.
 *
 * `pin(socket)` picks an eligible backend (health `up`, admin `active`),
 * dials it (retrying the next one when a dial fails), and pipes the client to
 * it. `markDown(id)` sets a backend's health to `down` and takes every member
 * pinned to it out before returning, so a {@link HealthProbe} verdict reaches
 * every client in the same tick. Operators drain, put in maintenance and make
 * ready on the other axis; `update()` and `reconcile()` change live backends.
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { UpstreamPool, HealthProbe } from 'failover-proxy';
 *
 * const pool = new UpstreamPool({ backends: ['10.0.0.1:6443', '10.0.0.2:6443'], initialState: 'probe' });
 * const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', ca } });
 * probe.attach(pool);
 * await probe.checkNow();
 * net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => pool.accept(socket)).listen(6443);
 * ```
 */
export class UpstreamPool extends EventEmitter<UpstreamPoolEvents> {
  readonly #options: ResolvedUpstreamPoolOptions;
  readonly #registry: MemberRegistry;
  readonly #table: BackendTable;
  readonly #placement: PlacementEngine;
  readonly #life: PoolLifecycle;
  readonly #admission: PoolGate;
  readonly #pinFailures: Record<string, number> = Object.create(null) as Record<string, number>;
  /** Dials that failed in this process (EMFILE...), counted against no backend. */
  #localDialErrors = 0;
  #nextId = 1;
  #allDown = false;
  /** Leaving backends: their grace, then their paced evacuation. */
  readonly #evacuations: Evacuations;
  readonly #stalls: WriteStallDetector | undefined;

  constructor(options: UpstreamPoolOptions = {}) {
    super();
    const o = resolveUpstreamPoolOptions(options);
    this.#options = o;
    const { clock } = o;
    const tls = o.tls;
    const dial = o.dial ?? ((backend, { signal, preamble }) => dialBackend(backend, { signal, tls, preamble }));
    const table = (this.#table = new BackendTable(
      clock,
      {
        changed: (entry, change) => this.#changed(entry, change),
        takeOut: (entry, reason) => this.#registry.takeOut(entry, reason, o.resetOnTeardown),
      },
      { duration: o.slowStart, floor: 0.1, clock },
    ));
    const registry = (this.#registry = new MemberRegistry(
      {
        opened: (member) => {
          this.emit('connectionOpened', member);
          publishConnectionOpened(this, member);
        },
        closed: (member, entry, info) => this.#memberClosed(member, entry, info),
      },
      table,
      o.teardown,
    ));
    const placement = (this.#placement = new PlacementEngine({
      clock,
      connectTimeout: o.connectTimeout,
      retries: o.retries,
      queueMax: o.queue.max,
      queueTimeout: o.queue.timeout,
      maxConnections: o.maxConnections,
      proxyProtocol: o.proxyProtocol,
      balancer: createBalancer(o.balancer, { random: o.random }),
      dial,
      entries: table.entries,
      gate: (this.#admission = this.#gate()),
      dialStarted: (entry) => table.dialStarted(entry),
      dialEnded: (entry) => table.dialEnded(entry),
      register: (entry, member) => registry.attach(entry, member),
      connectFailed: (entry, error) => {
        // Out of descriptors, buffers, ports: this process's failure, not the backend's.
        if (localErrorCode(error) === undefined) table.countConnectFailure(entry);
        else this.#localDialErrors++;
        if (log.enabled) log('%s connect failed: %s', entry.backend.id, error.message);
        this.emit('connectFailed', entry.backend, error);
      },
    }));
    this.#evacuations = new Evacuations({ clock, grace: o.leavingGrace, rate: o.leavingRate, closeTimeout: o.closeTimeout });
    this.#life = new PoolLifecycle({
      clock,
      registry,
      entries: table.entries,
      closing: () => {
        this.#evacuations.stopAll();
        placement.abortAll(new PoolClosedError());
      },
      quiet: () => this.#stalls?.close(),
      closed: () => {
        table.endDrains();
        this.emit('closed');
      },
    });
    // Validate every spec before adding any: a bad list changes nothing.
    const initial = o.backends.map((spec, i) => resolveBackend(spec, `backends[${i}]`));
    const seen = new Set<string>();
    for (const backend of initial) {
      if (seen.has(backend.id)) throw new DuplicateBackendError(backend.id);
      seen.add(backend.id);
    }
    for (const backend of initial) this.#add(backend, false);
    this.#allDown = table.allDown;
    if (o.writeStallTimeout > 0) this.#stalls = new WriteStallDetector(this, { timeout: o.writeStallTimeout, now: () => clock.now() });
  }

  /** The pool's side of the admission rule, read live by placement. */
  #gate(): PoolGate {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const pool = this;
    const o = this.#options;
    return {
      get closing() {
        return pool.#life.closing;
      },
      get failOpen() {
        return pool.#allDown && o.allDown === 'fail-open';
      },
      get active() {
        return pool.#registry.active + pool.#placement.dialling;
      },
      maxConnections: o.maxConnections,
    };
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
      if (change.health === 'leaving' && !this.#life.closing) this.#evacuations.start(entry);
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
    if (this.#placement.waiting > 0) this.#placement.wakeAll();
  }

  // ----------------------------------------------------------- connections

  /**
   * Chooses the backend the next connection would get, without dialling and
   * without counting anything. Prefer {@link place}, which counts the dial
   * from the pick and registers in the same step.
   */
  pick(context: PickContext = {}): Backend | undefined {
    return this.#placement.pick(context, undefined)?.backend;
  }

  /**
   * Pins a client socket to a backend: picks one, dials it with
   * `connectTimeout`, tries the next untried backend when the dial fails (up to
   * `retries`), and pipes the two. While no backend can take it the client
   * waits in the queue. Bytes the client sent meanwhile (a TLS ClientHello)
   * stay in its socket buffer and are forwarded once the upstream is connected.
   *
   * On failure the client is closed, `pinFailed` is emitted, and the promise
   * rejects with `NO_HEALTHY_BACKEND`, `CONNECT_TIMEOUT`, `CONNECT_FAILED`,
   * `MAX_CONNECTIONS`, `CLIENT_CLOSED`, `POOL_CLOSED` or `INVALID_ARGUMENT`.
   * Use {@link accept} when you do not want to handle the promise.
   *
   * @example
   * ```ts
   * server.on('connection', async (socket) => {
   *   try { await pool.pin(socket, { key: socket.remoteAddress }); }
   *   catch (err) { log((err as FailoverProxyError).code); }
   * });
   * ```
   */
  async pin(client: Socket, options: PinOptions = {}): Promise<PinnedConnection> {
    if (typeof client !== 'object' || client === null || typeof (client).on !== 'function') {
      throw v.invalid('client', 'a net.Socket', client);
    }
    if (typeof options !== 'object' || options === null) throw v.invalid('options', 'an object', options);
    const connection = this.#options.connection;
    const clock = this.#options.clock;
    try {
      return await this.#place({ key: options.key, meta: options.meta, client }, (lease) =>
        lease.attach(new PinnedConnection(client, lease.upstream, { ...connection, backend: lease.backend, id: this.#newId(), clock })),
      );
    } catch (err) {
      const error = err instanceof FailoverProxyError ? err : new ConnectError('?', { cause: err });
      client.destroy();
      this.#pinFailures[error.code] = (this.#pinFailures[error.code] ?? 0) + 1;
      if (log.enabled) log('pin failed: %s', error.message);
      this.emit('pinFailed', error, client);
      throw error;
    }
  }

  /**
   * Fire-and-forget {@link pin}: for `server.on('connection', …)`. Failures
   * are reported through the `pinFailed` event (and `debug`), never thrown.
   */
  accept(client: Socket, options?: PinOptions): void {
    this.pin(client, options).catch(noop);
  }

  /**
   * The one placement path, for every kind of member: picks a backend (the
   * dial counts toward it from the pick), dials with retries and the queue
   * like {@link pin}, then — in one synchronous step with the last check that
   * the backend may still take it — calls `build(backend, upstream, id)` and
   * registers what it returns. If the backend left service during the dial,
   * another is picked. `pin()`, upgrades and the agent all go through here;
   * so can a balancer of your own.
   *
   * Rejects like {@link pin} (without closing anything of yours), or with
   * `signal.reason`, or with what `build` threw (the upstream is then destroyed).
   *
   * @example
   * ```ts
   * const pinned = await pool.place({}, (backend, socket, id) => new PinnedSocket(socket, { backend, id }));
   * ```
   */
  place<M extends PoolMember>(options: PlaceOptions, build: MemberFactory<M>): Promise<M> {
    return this.#place(options, (lease) => lease.attach(build(lease.backend, lease.upstream, this.#newId())));
  }

  #newId(): string {
    return `${this.#nextId++}`;
  }

  /** Places a connection and hands its lease to `use`, in one synchronous step with the last admission check. */
  async #place<T>(options: PlaceOptions, use: (lease: Lease) => T): Promise<T> {
    this.#assertOpen();
    return await this.#placement.placeFor(options, use);
  }

  /**
   * Picks and dials a backend like {@link pin}, with the same retries and
   * queue, but hands back the bare upstream socket. The caller owns the
   * socket; wrap it in a member and `register()` it to have it torn down with
   * its backend — or use {@link place}, which does both in one step. When the
   * pool sends PROXY protocol headers, the socket has already sent one.
   *
   * @example
   * ```ts
   * const { backend, socket } = await pool.connect({ client, signal: AbortSignal.timeout(5000) });
   * pool.register(new PinnedConnection(client, socket, { backend }));
   * ```
   */
  connect(options: ConnectOptions = {}): Promise<UpstreamSocket> {
    if (typeof options !== 'object' || options === null) return Promise.reject(v.invalid('options', 'an object', options));
    return this.#place({ ...options, watchClient: false }, (lease) => ({ backend: lease.backend, socket: lease.take() }));
  }

  /**
   * An `http.Agent` whose sockets come from this pool through {@link place}
   * and are registered under their backends.
   *
   * @throws `POOL_CLOSED`
   * @example
   * ```ts
   * const agent = pool.createAgent();
   * http.get({ host: 'api', path: '/readyz', agent }, (res) => res.resume());
   * ```
   */
  createAgent(options?: PoolAgentOptions): PoolAgent {
    this.#assertOpen();
    return new PoolAgent(this, options);
  }

  /**
   * Adds a member built by hand (see {@link connect}) to the registry under
   * its `backend`, so it is torn down with that backend. A member belongs to
   * one pool at most.
   *
   * @throws `INVALID_ARGUMENT` when it is not a member or has no backend,
   * `MEMBER_ALREADY_REGISTERED` when another pool holds it (that pool is
   * unaffected), `UNKNOWN_BACKEND`, `BACKEND_DOWN` when the backend is not
   * up or is in maintenance (the member is then destroyed), `POOL_CLOSED` (likewise).
   */
  register(member: PoolMember): void {
    this.#registry.register(member, (id) => this.#table.get(id), this.#admission, this.#options.resetOnTeardown);
  }

  /**
   * Every member pinned to one backend, or to all when `id` is omitted,
   * oldest first per backend. Filter by `member.kind`.
   *
   * @throws `UNKNOWN_BACKEND`
   */
  *members(id?: string): IterableIterator<PoolMember> {
    if (id !== undefined) {
      yield* this.#table.get(id).members;
      return;
    }
    for (const entry of this.#table.entries.values()) yield* entry.members;
  }

  /** Client-to-upstream pairs ({@link PinnedConnection}) pinned to one backend, or all. */
  *connections(id?: string): IterableIterator<PinnedConnection> {
    for (const member of this.members(id)) if (member instanceof PinnedConnection) yield member;
  }

  /** Single upstream sockets ({@link PinnedSocket}: an agent's) held on one backend, or all. */
  *sockets(id?: string): IterableIterator<PinnedSocket> {
    for (const member of this.members(id)) if (member instanceof PinnedSocket) yield member;
  }

  #memberClosed(member: PoolMember, entry: ReadonlyBackendEntry, info: ConnectionClosedInfo): void {
    this.emit('connectionClosed', member, info);
    publishConnectionClosed(this, member, info);
    this.#placement.slotFreed(entry);
    if (this.#registry.active === 0) this.#life.idle();
  }

  /**
   * Tears down a member whose writes stalled (reason `write-stalled`). When
   * the backend is the side that stopped reading, `writeStalled` is emitted
   * as evidence about it (an attached probe checks it at once; it never
   * counts as a failed check); a client that stopped reading says nothing
   * about the backend. Only the pool's {@link WriteStallDetector} calls it.
   *
   * @internal
   */
  [kReportWriteStall](member: PoolMember, towardBackend: boolean): void {
    const backend = member.backend;
    member.destroy('write-stalled', { reset: this.#options.resetOnTeardown });
    if (towardBackend && backend !== undefined && this.#table.entries.get(backend.id)?.backend === backend) {
      this.emit('writeStalled', backend, member);
    }
  }

  /** New work (placements, backends, tunables) is refused from the moment `close()` is called. */
  #assertOpen(): void {
    if (this.#life.closing) throw new PoolClosedError();
  }

  /** Verdicts and operator intents stay live while the pool closes. */
  #assertNotClosed(): void {
    if (this.#life.state === 'closed') throw new PoolClosedError();
  }

  // ------------------------------------------------------------------ stats

  /** A snapshot of every backend and the pool's counters. */
  stats(): PoolStats {
    return snapshot(this.#table.entries.values(), {
      at: this.#options.clock.now(),
      state: this.#life.state,
      closed: this.#life.closing,
      closing: this.#registry.closing,
      waiting: this.#placement.waiting,
      total: this.#registry.total,
      allDown: this.#allDown,
      teardowns: { ...this.#registry.teardowns },
      pinFailures: { ...this.#pinFailures },
      localDialErrors: this.#localDialErrors,
    });
  }

  // -------------------------------------------------------------- lifecycle

  /** Whether `close()` or `destroy()` was called (the pool is `closing` or `closed`). */
  get closed(): boolean {
    return this.#life.closing;
  }

  /**
   * Where the pool is in its life: `open`; `closing` from the first
   * `close()` or `destroy()` until every member is gone (verdicts, drains and
   * removals still act; new placements, backends and tunables are refused
   * with `POOL_CLOSED`); then `closed`.
   */
  get state(): PoolState {
    return this.#life.state;
  }

  /**
   * Closes gracefully: refuses new placements and fails waiting clients with
   * `POOL_CLOSED`, asks every member to close (reason `pool-closing`: a FIN
   * both ways on a pair, an idle agent socket evicted at once, a busy one
   * after its request), and destroys what is left after `timeout` ms
   * (reason `pool-closed`). While
   * it closes, health verdicts act as usual. Idempotent: every call without
   * a `signal` returns the same promise, which never rejects. Leaves no
   * socket and no timer behind.
   */
  close(options: CloseOptions = {}): Promise<void> {
    try {
      v.knownKeys('options', v.object('options', options), ['timeout', 'signal']);
      const signal = checkSignal('signal', options.signal);
      signal?.throwIfAborted();
      const closed = this.#life.close(() => v.integer('timeout', options.timeout ?? this.#options.closeTimeout, 0, MAX_TIMER_MS));
      return abortable(closed, signal);
    } catch (err) {
      return Promise.reject(asError(err));
    }
  }

  /**
   * Destroys every member at once (reason `pool-destroyed`) and closes the
   * pool. Idempotent; resolves with the same promise as `close()`, and cuts
   * a graceful close short.
   */
  destroy(): Promise<void> {
    return this.#life.destroy();
  }

  /** `await using pool = new UpstreamPool(…)`: the same as `await pool.close()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
