/**
 * The pool: the connection side of the API (pin, place, connect, register,
 * the members, stats, close) over its backend side ({@link BackendSet}).
 * It wires the parts and owns none of their work: the table writes the
 * backend records, the registry holds the members, placement grants leases,
 * the lifecycle closes. A backend leaving service takes its members with it,
 * synchronously.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import type { PoolGate } from './admission.js';
import type { Backend } from './backend.js';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import { abortable, checkSignal } from './abortable.js';
import type { BackendTable } from './backend-table.js';
import { BackendSet, partsOf } from './backend-set.js';
import type { PickContext } from './balancers/balancer.js';
import { createBalancer } from './balancers/create-balancer.js';
import { ConnectError, FailoverProxyError, PoolClosedError } from './errors.js';
import type { ConnectionClosedInfo } from './events.js';
import { MemberRegistry } from './member-registry.js';
import {
  kResolvedOptions,
  resolveUpstreamPoolOptions,
  type ResolvedPinnedConnectionOptions,
  type ResolvedUpstreamPoolOptions,
  type UpstreamPoolOptions,
} from './options.js';
import { KeepAliveSweep } from './keepalive-sweep.js';
import { PinnedConnection } from './pinned-connection.js';
import { PinnedSocket } from './pinned-socket.js';
import { kReportWriteStall, WriteStallDetector } from './write-stall-detector.js';
import { localErrorCode } from './local-errors.js';
import { PlacementEngine, type ConnectOptions, type MemberFactory, type PinOptions, type PlaceOptions } from './placement.js';
import type { Lease } from './lease.js';
import { PoolAgent, type PoolAgentOptions } from './pool-agent.js';
import type { CloseOptions, UpstreamSocket } from './pool-call-options.js';
import { PoolLifecycle } from './pool-lifecycle.js';
import { snapshot, type PoolState, type PoolStats } from './pool-stats.js';
import type { PoolMember } from './pool-member.js';
import * as v from './validate.js';
import { publishConnectionClosed, publishConnectionOpened } from './diagnostics.js';
import { MAX_TIMER_MS } from './limits.js';
import { noop } from './noop.js';

const log = createDebug('failover-proxy:pool');

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
export class UpstreamPool extends BackendSet {
  readonly #options: ResolvedUpstreamPoolOptions;
  readonly #registry: MemberRegistry;
  readonly #table: BackendTable;
  readonly #placement: PlacementEngine;
  readonly #life: PoolLifecycle;
  readonly #admission: PoolGate;
  readonly #allDown: () => boolean;
  readonly #pinFailures: Record<string, number> = Object.create(null) as Record<string, number>;
  /** Dials that failed in this process (EMFILE...), counted against no backend. */
  #localDialErrors = 0;
  #nextId = 1;
  readonly #stalls: WriteStallDetector | undefined;
  /** Switches keepalive on for pinned connections that outlive a sweep period (when `connection.keepAlive`). */
  readonly #keepAlive: KeepAliveSweep | undefined;
  /** The options `pin()` builds connections with: keepalive left to {@link #keepAlive}. */
  readonly #pinOptions: ResolvedPinnedConnectionOptions;

  constructor(options: UpstreamPoolOptions = {}) {
    const o = resolveUpstreamPoolOptions(options);
    // The backend side is made first (it adds the initial backends); what it
    // calls back reaches the parts made below once they exist.
    const late: { registry?: MemberRegistry; placement?: PlacementEngine; life?: PoolLifecycle } = {};
    super(o, {
      closing: () => late.life?.closing ?? false,
      closed: () => late.life?.state === 'closed',
      takeOut: (entry, reason) => late.registry?.takeOut(entry, reason, o.resetOnTeardown) ?? 0,
      capacityAppeared: () => {
        if (late.placement !== undefined && late.placement.waiting > 0) late.placement.wakeAll();
      },
    });
    this.#options = o;
    const { clock } = o;
    const { table, evacuations, allDown } = partsOf(this);
    this.#table = table;
    this.#allDown = allDown;
    const registry = (late.registry = this.#registry = new MemberRegistry(
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
    const placement = (late.placement = this.#placement = new PlacementEngine({
      clock,
      connectTimeout: o.connectTimeout,
      retries: o.retries,
      queueMax: o.queue.max,
      queueTimeout: o.queue.timeout,
      maxConnections: o.maxConnections,
      proxyProtocol: o.proxyProtocol,
      balancer: createBalancer(o.balancer, { random: o.random }),
      dial: o.dial,
      tls: o.tls,
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
    late.life = this.#life = new PoolLifecycle({
      clock,
      registry,
      entries: table.entries,
      closing: () => {
        evacuations.stopAll();
        placement.abortAll(new PoolClosedError());
      },
      quiet: () => {
        this.#stalls?.close();
        this.#keepAlive?.close();
      },
      closed: () => {
        table.endDrains();
        this.emit('closed');
      },
    });
    if (o.writeStallTimeout > 0) this.#stalls = new WriteStallDetector(this, { timeout: o.writeStallTimeout, now: () => clock.now() });
    const connection = o.connection;
    this.#keepAlive = connection.keepAlive ? new KeepAliveSweep(connection.keepAliveInitialDelay, clock) : undefined;
    this.#pinOptions = connection.keepAlive ? Object.freeze({ ...connection, keepAlive: false }) : connection;
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
        return pool.#allDown() && o.allDown === 'fail-open';
      },
      get active() {
        return pool.#registry.active + pool.#placement.dialling;
      },
      maxConnections: o.maxConnections,
    };
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
    const connection = this.#pinOptions;
    const clock = this.#options.clock;
    try {
      this.#assertOpen();
      const pinned = await this.#placement.placeClient(client, options, (lease) =>
        lease.attach(new PinnedConnection(client, lease.upstream, { [kResolvedOptions]: connection, backend: lease.backend, id: this.#newId(), clock })),
      );
      this.#keepAlive?.add(pinned);
      return pinned;
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
    if (member instanceof PinnedConnection) this.#keepAlive?.forget(member);
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
      allDown: this.#allDown(),
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
