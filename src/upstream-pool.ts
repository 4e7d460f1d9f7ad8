/**
 * The pool: backends, their states, a picker, and the registry of live
 * connections indexed by backend, so that a backend leaving service takes its
 * connections with it, synchronously.
 *
 * @module
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { resolveBackend, type Backend, type BackendSpec, type BackendState } from './backend.js';
import type { Balancer, PickCandidate, PickContext } from './balancers/balancer.js';
import { createBalancer } from './balancers/create-balancer.js';
import { dialBackend } from './dial.js';
import {
  BackendDownError,
  ClientClosedError,
  ConnectError,
  ConnectTimeoutError,
  DuplicateBackendError,
  FailoverProxyError,
  MaxConnectionsError,
  NoHealthyBackendError,
  PoolClosedError,
  UnknownBackendError,
} from './errors.js';
import type { ConnectionClosedInfo, StateChange, TeardownReason, UpstreamPoolEvents } from './events.js';
import { PinnedConnection } from './pinned-connection.js';
import { PinnedSocket } from './pinned-socket.js';
import { PoolAgent, type PoolAgentOptions } from './pool-agent.js';
import { proxyAddressesOf, proxyHeader } from './proxy-protocol.js';
import { resolveUpstreamPoolOptions, type DialFunction, type ResolvedUpstreamPoolOptions, type UpstreamPoolOptions } from './options.js';
import * as v from './validate.js';

const log = createDebug('failover-proxy:pool');

/** The reason a backend added under `initialState: 'probe'` is down for. */
export const AWAITING_PROBE = 'awaiting-probe';

/** Where a backend stands: its state, since when, and why. */
export interface BackendStatus {
  readonly state: BackendState;
  /** Clock time of the last transition (ms since epoch). */
  readonly since: number;
  readonly reason: string;
}

/** A per-backend snapshot in {@link PoolStats}. */
export interface BackendStats extends BackendStatus {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  /** Connections open now. */
  readonly active: number;
  /** Dials in flight now. */
  readonly dialling: number;
  /** Connections pinned since the backend was added. */
  readonly total: number;
  /** Failed dials (refused, timed out, reset) since the backend was added. */
  readonly connectFailures: number;
  /** Bytes read from clients and sent to this backend (open and closed connections). */
  readonly bytesFromClient: number;
  /** Bytes read from this backend and sent to clients. */
  readonly bytesFromUpstream: number;
  /** Closed connections by teardown reason. */
  readonly teardowns: Readonly<Record<string, number>>;
}

/** A snapshot of the pool, from {@link UpstreamPool.stats}. */
export interface PoolStats {
  /** Clock time of the snapshot. */
  readonly at: number;
  readonly closed: boolean;
  /** Connections open now, all backends. */
  readonly active: number;
  /** Clients waiting for a backend to come up. */
  readonly waiting: number;
  /** Connections pinned since the pool was made. */
  readonly total: number;
  readonly backends: readonly BackendStats[];
  /** Closed connections by teardown reason, all backends (including removed ones). */
  readonly teardowns: Readonly<Record<string, number>>;
  /** Clients that could not be placed, by error code. */
  readonly pinFailures: Readonly<Record<string, number>>;
}

/** Per-connection input to {@link UpstreamPool.pin}. */
export interface PinOptions {
  /** Hash key for the `hash` strategy. @default the client's remote address */
  readonly key?: string | undefined;
  /** Data for a custom picker (a zone, a tenant). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** Options of {@link UpstreamPool.drain}. */
export interface DrainOptions {
  /**
   * Deadline in ms; connections still open then are destroyed with reason `drained`.
   * @default 30000
   */
  readonly timeout?: number | undefined;
}

/** Options of {@link UpstreamPool.remove}. */
export interface RemoveOptions {
  /** Drain before removing, instead of tearing down at once. @default false */
  readonly drain?: boolean | undefined;
  /** Drain deadline, in ms. @default 30000 */
  readonly timeout?: number | undefined;
}

/** Options of {@link UpstreamPool.close}. */
export interface CloseOptions {
  /** Grace period in ms before open connections are destroyed. @default the pool's `closeTimeout` */
  readonly timeout?: number | undefined;
}

/** A connected upstream socket and the backend it leads to, from {@link UpstreamPool.connect}. */
export interface UpstreamSocket {
  readonly backend: Backend;
  readonly socket: Socket;
}

/** Per-connection input to {@link UpstreamPool.connect}. */
export interface ConnectOptions extends PinOptions {
  /**
   * The client the upstream is opened for, when there is one: given to the
   * picker, and its addresses are sent in the PROXY protocol header when the
   * pool sends one. Without it the header says the connection is the
   * proxy's own (`LOCAL` in v2, `UNKNOWN` in v1).
   */
  readonly client?: Socket | undefined;
  /** Cancels the pick, the dial and the wait in the queue (the promise rejects with `signal.reason`). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * What the registry holds: client-to-upstream pairs from {@link UpstreamPool.pin}
 * (or built by hand), and single upstream sockets owned by someone else (a
 * {@link PoolAgent}). Both have `backend`, `closed`, `destroy(reason)` and a
 * `closed` event; tell them apart with `instanceof`.
 */
export type PoolConnection = PinnedConnection | PinnedSocket;

const DEFAULT_DRAIN_TIMEOUT = 30_000;

/** The pool's bookkeeping for one backend. */
class BackendEntry implements PickCandidate {
  state: BackendState;
  since: number;
  reason: string;
  readonly connections = new Set<PoolConnection>();
  dialling = 0;
  total = 0;
  connectFailures = 0;
  closedBytesFromClient = 0;
  closedBytesFromUpstream = 0;
  readonly teardowns: Record<string, number> = Object.create(null) as Record<string, number>;
  drainTimer: unknown = undefined;
  drainWaiters: (() => void)[] = [];
  removed = false;

  constructor(
    readonly backend: Backend,
    state: BackendState,
    reason: string,
    since: number,
  ) {
    this.state = state;
    this.reason = reason;
    this.since = since;
  }

  get active(): number {
    return this.connections.size + this.dialling;
  }
}

/** A client (or agent request) waiting for a backend: aborted when it leaves or the pool closes. */
class Placement {
  readonly controller = new AbortController();
  wake: (() => void) | undefined = undefined;
  constructor(
    readonly client: Socket | undefined,
    /** Bytes the dialler sends first (a PROXY protocol header). */
    readonly preamble: Buffer | undefined = undefined,
  ) {}
  get signal(): AbortSignal {
    return this.controller.signal;
  }
}

/**
 * The pick context of a client connection. The hash key defaults to the
 * client's address, read only when a picker asks: `remoteAddress` is a
 * `getpeername()` syscall that least-connections never needs.
 */
class ClientPickContext implements PickContext {
  readonly #key: string | undefined;
  readonly meta: Readonly<Record<string, unknown>> | undefined;
  constructor(
    readonly client: Socket,
    options: PinOptions,
  ) {
    this.#key = options.key;
    this.meta = options.meta;
  }
  get key(): string | undefined {
    return this.#key ?? this.client.remoteAddress;
  }
}

// Pending client sockets find their placement through this back-reference.
const kPlacement = Symbol('failover-proxy.placement');
const kEntry = Symbol('failover-proxy.entry');
const kPool = Symbol('failover-proxy.pool');
type PendingSocket = Socket & { [kPlacement]?: Placement | undefined };
type PooledConnection = PoolConnection & { [kEntry]?: BackendEntry; [kPool]?: UpstreamPool };

let connectionClosed: (conn: PooledConnection, info: ConnectionClosedInfo) => void;

/**
 * A set of backends with health states, a picker, and a registry of the
 * connections pinned to each.
 *
 * `pin(socket)` picks an `up` backend, dials it (retrying the next one when a
 * dial fails), and pipes the client to it. `markDown(id)` takes a backend out
 * of rotation and destroys every connection pinned to it before returning, so
 * a {@link HealthProbe} verdict reaches every client in the same tick.
 *
 * @example
 * ```ts
 * import net from 'node:net';
 * import { UpstreamPool, HealthProbe } from 'failover-proxy';
 *
 * const pool = new UpstreamPool({
 *   backends: [{ host: '10.0.0.1', port: 6443 }, { host: '10.0.0.2', port: 6443 }],
 * });
 * const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', rejectUnauthorized: false } });
 * probe.attach(pool);
 * net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => pool.accept(socket)).listen(6443);
 * ```
 */
export class UpstreamPool extends EventEmitter<UpstreamPoolEvents> {
  readonly #options: ResolvedUpstreamPoolOptions;
  readonly #balancer: Balancer;
  readonly #dial: DialFunction;
  readonly #entries = new Map<string, BackendEntry>();
  readonly #placements = new Set<Placement>();
  /** Placements parked until a backend comes up (insertion order = arrival order). */
  readonly #waiting = new Set<Placement>();
  readonly #candidates: BackendEntry[] = [];
  readonly #teardowns: Record<string, number> = Object.create(null) as Record<string, number>;
  readonly #pinFailures: Record<string, number> = Object.create(null) as Record<string, number>;
  #active = 0;
  #dialling = 0;
  #total = 0;
  #nextId = 1;
  #closing = false;
  #closePromise: Promise<void> | undefined;
  #idle: (() => void) | undefined;

  constructor(options: UpstreamPoolOptions = {}) {
    super();
    this.#options = resolveUpstreamPoolOptions(options);
    this.#balancer = createBalancer(this.#options.balancer, { random: this.#options.random });
    const tls = this.#options.tls;
    this.#dial = this.#options.dial ?? ((backend, { signal, preamble }) => dialBackend(backend, { signal, tls, preamble }));
    this.#options.backends.forEach((spec, i) => this.#add(spec, `backends[${i}]`));
  }

  // ---------------------------------------------------------------- backends

  /**
   * Adds a backend. It starts `up`, or `down` (reason `awaiting-probe`) when
   * the pool's `initialState` is `'probe'`.
   *
   * @throws `INVALID_ARGUMENT` for a bad spec, `DUPLICATE_BACKEND` for a taken id, `POOL_CLOSED`.
   */
  add(spec: BackendSpec): Backend {
    this.#assertOpen();
    return this.#add(spec, 'backend');
  }

  #add(spec: BackendSpec, name: string): Backend {
    const backend = resolveBackend(spec, name);
    if (this.#entries.has(backend.id)) throw new DuplicateBackendError(backend.id);
    const probeFirst = this.#options.initialState === 'probe';
    const entry = new BackendEntry(
      backend,
      probeFirst ? 'down' : 'up',
      probeFirst ? AWAITING_PROBE : 'added',
      this.#options.clock.now(),
    );
    this.#entries.set(backend.id, entry);
    if (log.enabled) log('%s added (%s)', backend.id, entry.state);
    this.emit('backendAdded', backend);
    if (entry.state === 'up') this.#wakeWaiting();
    return backend;
  }

  /**
   * Removes a backend. Without `drain`, every connection pinned to it is
   * destroyed (reason `backend-removed`) before this returns and the promise is
   * already settled; with `drain`, it first drains with the given deadline.
   *
   * @throws `UNKNOWN_BACKEND`
   */
  remove(id: string, options: RemoveOptions = {}): Promise<void> {
    const entry = this.#entry(id);
    v.knownKeys('options', v.object('options', options), ['drain', 'timeout']);
    if (options.drain === true) {
      return this.drain(id, { timeout: options.timeout }).then(() => {
        if (!entry.removed) this.#delete(entry);
      });
    }
    this.#delete(entry);
    return Promise.resolve();
  }

  #delete(entry: BackendEntry): void {
    entry.removed = true;
    this.#stopDrain(entry);
    const tornDown = this.#destroyAll(entry, 'backend-removed', this.#options.resetOnTeardown);
    this.#entries.delete(entry.backend.id);
    if (log.enabled) log('%s removed, %d connections torn down', entry.backend.id, tornDown);
    this.emit('backendRemoved', entry.backend);
  }

  /** The backend with this id, or `undefined`. */
  get(id: string): Backend | undefined {
    return this.#entries.get(id)?.backend;
  }

  /** Whether a backend with this id is in the pool. */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Every backend, in the order they were added. */
  backends(): Backend[] {
    return Array.from(this.#entries.values(), (e) => e.backend);
  }

  /** Where a backend stands, or `undefined` when it is not in the pool. */
  status(id: string): BackendStatus | undefined {
    const entry = this.#entries.get(id);
    return entry && { state: entry.state, since: entry.since, reason: entry.reason };
  }

  // ------------------------------------------------------------- transitions

  /**
   * Takes a backend out of rotation and destroys every connection pinned to
   * it **before returning** (clients are reset when `resetOnTeardown`). Other
   * backends' connections are untouched. Returns how many were torn down.
   *
   * @param reason carried into each teardown and the `backendDown` event.
   * @throws `UNKNOWN_BACKEND`
   * @example
   * ```ts
   * const n = pool.markDown('10.0.0.3:6443', 'probe-failed');
   * // here every connection to 10.0.0.3 is already destroyed
   * ```
   */
  markDown(id: string, reason: TeardownReason = 'marked-down'): number {
    return this.#takeOut(this.#entry(id), 'down', reason);
  }

  /**
   * Puts a backend in maintenance: like `markDown`, but probe verdicts are
   * ignored until `markUp` is called.
   *
   * @throws `UNKNOWN_BACKEND`
   */
  markMaintenance(id: string, reason: TeardownReason = 'maintenance'): number {
    return this.#takeOut(this.#entry(id), 'maintenance', reason);
  }

  /**
   * Puts a backend back in rotation; clients waiting for a backend are served.
   *
   * @throws `UNKNOWN_BACKEND`
   */
  markUp(id: string, reason = 'marked-up'): void {
    const entry = this.#entry(id);
    if (entry.state === 'up') return;
    this.#stopDrain(entry);
    this.#transition(entry, 'up', reason);
    this.#wakeWaiting();
  }

  /**
   * Stops new connections to a backend and lets existing ones finish; at the
   * deadline those still open are destroyed with reason `drained`. Resolves
   * when the backend holds no connection (or the drain is superseded by
   * `markUp`, `markDown` or removal). The backend stays `draining` until
   * `markUp`.
   *
   * @throws `UNKNOWN_BACKEND`
   */
  drain(id: string, options: DrainOptions = {}): Promise<void> {
    const entry = this.#entry(id);
    v.knownKeys('options', v.object('options', options), ['timeout']);
    const timeout = v.integer('timeout', options.timeout ?? DEFAULT_DRAIN_TIMEOUT, 0, 2 ** 31 - 1);
    if (entry.state !== 'draining') {
      this.#stopDrain(entry);
      this.#transition(entry, 'draining', 'drain');
    }
    if (entry.connections.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      entry.drainWaiters.push(resolve);
      if (entry.drainTimer === undefined) {
        entry.drainTimer = this.#options.clock.setTimeout(() => {
          entry.drainTimer = undefined;
          const n = this.#destroyAll(entry, 'drained', this.#options.resetOnTeardown);
          if (log.enabled) log('%s drain deadline: %d connections torn down', entry.backend.id, n);
        }, timeout);
      }
    });
  }

  #takeOut(entry: BackendEntry, to: 'down' | 'maintenance', reason: TeardownReason): number {
    const from = entry.state;
    this.#stopDrain(entry);
    entry.state = to;
    // No await between the verdict and the teardown: when this returns, no
    // connection is pinned to the backend any more.
    const tornDown = this.#destroyAll(entry, reason, this.#options.resetOnTeardown);
    if (from !== to) this.#transition(entry, to, reason, tornDown, from);
    return tornDown;
  }

  #transition(entry: BackendEntry, to: BackendState, reason: string, tornDown = 0, from = entry.state): void {
    const at = this.#options.clock.now();
    entry.state = to;
    entry.since = at;
    entry.reason = reason;
    const { backend } = entry;
    if (log.enabled) log('%s: %s -> %s (%s)%s', backend.id, from, to, reason, tornDown ? `, ${tornDown} torn down` : '');
    const change: StateChange = { from, to, reason, at };
    this.emit('backendStateChanged', backend, change);
    switch (to) {
      case 'up':
        this.emit('backendUp', backend, change);
        break;
      case 'down':
        this.emit('backendDown', backend, { ...change, tornDown });
        break;
      case 'maintenance':
        this.emit('backendMaintenance', backend, { ...change, tornDown });
        break;
      case 'draining':
        this.emit('backendDraining', backend, change);
        break;
    }
  }

  #destroyAll(entry: BackendEntry, reason: TeardownReason, reset: boolean): number {
    let n = 0;
    // Each destroy() emits `closed` synchronously and the handler deletes the
    // connection from this set; deleting visited members during iteration is safe.
    for (const conn of entry.connections) {
      conn.destroy(reason, { reset });
      n++;
    }
    return n;
  }

  #stopDrain(entry: BackendEntry): void {
    if (entry.drainTimer !== undefined) {
      this.#options.clock.clearTimeout(entry.drainTimer);
      entry.drainTimer = undefined;
    }
    const waiters = entry.drainWaiters;
    if (waiters.length > 0) {
      entry.drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  // ----------------------------------------------------------- connections

  /**
   * Chooses the backend the next connection would get, without dialling:
   * for balancers that dial their own upstream and then `register()` the pair.
   */
  pick(context: PickContext = {}): Backend | undefined {
    return this.#pick(context, undefined)?.backend;
  }

  /**
   * Pins a client socket to a backend: picks one, dials it with
   * `connectTimeout`, tries the next untried backend when the dial fails (up to
   * `retries`), and pipes the two. While no backend is up the client waits in
   * the queue. Bytes the client sent meanwhile (a TLS ClientHello) stay in its
   * socket buffer and are forwarded once the upstream is connected.
   *
   * On failure the client is closed, `pinFailed` is emitted, and the promise
   * rejects with `NO_HEALTHY_BACKEND`, `CONNECT_TIMEOUT`, `CONNECT_FAILED`,
   * `MAX_CONNECTIONS`, `CLIENT_CLOSED` or `POOL_CLOSED`. Use {@link accept} when
   * you do not want to handle the promise.
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
    const context = new ClientPickContext(client, options);
    const placement = new Placement(client, this.#preambleFor(client));
    const pending = client as PendingSocket;
    pending[kPlacement] = placement;
    // Until the connection is pinned, a client reset must not crash the
    // process, and a client leaving must cancel its dial.
    client.on('error', onPendingClientError);
    client.on('close', onPendingClientClose);
    // Read into the socket's own buffer (bounded by its high-water mark, then
    // backpressure): early bytes are kept for the upstream, and a client reset
    // is noticed even if the server was created with `pauseOnConnect`. A FIN is
    // not an abort: it is forwarded once the upstream is connected.
    if (!client.destroyed) client.read(0);
    try {
      const { entry, socket } = await this.#place(placement, context);
      const conn = new PinnedConnection(client, socket, {
        ...this.#options.connection,
        backend: entry.backend,
        id: `${this.#nextId++}`,
        clock: this.#options.clock,
      });
      this.#register(entry, conn);
      return conn;
    } catch (err) {
      const error = err instanceof FailoverProxyError ? err : new ConnectError('?', { cause: err });
      client.destroy();
      this.#pinFailures[error.code] = (this.#pinFailures[error.code] ?? 0) + 1;
      if (log.enabled) log('pin failed: %s', error.message);
      this.emit('pinFailed', error, client);
      throw error;
    } finally {
      client.off('error', onPendingClientError);
      client.off('close', onPendingClientClose);
      // Not `delete`: deleting a property turns the socket into a slow
      // dictionary-mode object for the rest of its life (~1.6 kB each).
      pending[kPlacement] = undefined;
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
   * Picks and dials a backend like {@link pin}, with the same retries and
   * queue, but hands back the bare upstream socket (for an agent or a custom
   * proxy). The caller owns the socket; wrap it in a {@link PinnedConnection}
   * (or a {@link PinnedSocket}) and `register()` it to have it torn down with
   * its backend. When the pool sends PROXY protocol headers, the socket has
   * already sent one (for `options.client`, or a `LOCAL` one).
   *
   * Rejects like {@link pin} (without `CLIENT_CLOSED`), or with
   * `signal.reason` when `options.signal` aborts.
   *
   * @example
   * ```ts
   * const { backend, socket } = await pool.connect({ client, signal: AbortSignal.timeout(5000) });
   * pool.register(new PinnedConnection(client, socket, { backend }));
   * ```
   */
  async connect(options: ConnectOptions = {}): Promise<UpstreamSocket> {
    const { client, signal } = options;
    signal?.throwIfAborted();
    const placement = new Placement(client, this.#preambleFor(client));
    // The caller's signal cancels the placement as a leaving client cancels pin()'s.
    const onAbort = (): void => placement.controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const context = client === undefined ? { key: options.key, meta: options.meta } : new ClientPickContext(client, options);
      const { entry, socket } = await this.#place(placement, context);
      return { backend: entry.backend, socket };
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * An `http.Agent` (`https.Agent`-compatible with `secure: true`) whose
   * sockets come from this pool and are torn down with their backend: see
   * {@link PoolAgent}.
   *
   * @example
   * ```ts
   * const agent = pool.createAgent({ keepAlive: true });
   * http.get({ host: 'apiserver', path: '/readyz', agent }, (res) => res.resume());
   * ```
   */
  createAgent(options?: PoolAgentOptions): PoolAgent {
    return new PoolAgent(this, options);
  }

  /** The PROXY protocol header for a connection made for `client`, when the pool sends one. */
  #preambleFor(client: Socket | undefined): Buffer | undefined {
    const version = this.#options.proxyProtocol;
    if (version === false) return undefined;
    return proxyHeader(version, client === undefined ? undefined : proxyAddressesOf(client));
  }

  /**
   * Adds a connection built by hand (see {@link connect}) to the registry, under
   * its `backend`, so it is torn down with that backend: a {@link PinnedConnection},
   * or a {@link PinnedSocket} for an upstream socket whose I/O you do yourself.
   *
   * @throws `INVALID_ARGUMENT` when it has no backend, `UNKNOWN_BACKEND`,
   * `BACKEND_DOWN` when the backend is not up or draining (the connection is then destroyed),
   * `POOL_CLOSED` (likewise).
   */
  register(conn: PoolConnection): void {
    if (!(conn instanceof PinnedConnection) && !(conn instanceof PinnedSocket)) {
      throw v.invalid('connection', 'a PinnedConnection or a PinnedSocket', conn);
    }
    if (conn.backend === undefined) throw v.invalid('connection.backend', 'a Backend of this pool', conn.backend);
    if (this.#closing) {
      conn.destroy('pool-closed');
      throw new PoolClosedError();
    }
    const entry = this.#entry(conn.backend.id);
    if (entry.state !== 'up' && entry.state !== 'draining') {
      conn.destroy(entry.state === 'maintenance' ? 'maintenance' : entry.reason, { reset: this.#options.resetOnTeardown });
      throw new BackendDownError(entry.backend.id, entry.state);
    }
    if (conn.closed || this.#isRegistered(conn)) return;
    this.#register(entry, conn);
  }

  #isRegistered(conn: PooledConnection): boolean {
    return conn[kPool] === this;
  }

  /**
   * Client-to-upstream connections pinned to one backend, or to all when `id`
   * is omitted. Agent sockets are listed by {@link sockets}; both count in
   * `stats()` and are torn down together.
   */
  *connections(id?: string): IterableIterator<PinnedConnection> {
    for (const conn of this.#registered(id)) if (conn instanceof PinnedConnection) yield conn;
  }

  /**
   * Single upstream sockets (a {@link PoolAgent}'s, or any registered
   * {@link PinnedSocket}) held on one backend, or on all when `id` is omitted.
   *
   * @example
   * ```ts
   * const idleAndBusy = [...pool.sockets('10.0.0.3:6443')].length;
   * ```
   */
  *sockets(id?: string): IterableIterator<PinnedSocket> {
    for (const conn of this.#registered(id)) if (conn instanceof PinnedSocket) yield conn;
  }

  *#registered(id: string | undefined): IterableIterator<PoolConnection> {
    if (id !== undefined) {
      yield* this.#entry(id).connections;
      return;
    }
    for (const entry of this.#entries.values()) yield* entry.connections;
  }

  #register(entry: BackendEntry, conn: PooledConnection): void {
    conn[kEntry] = entry;
    conn[kPool] = this;
    entry.connections.add(conn);
    entry.total++;
    this.#active++;
    this.#total++;
    conn.on('closed', onPooledConnectionClosed);
    // Two event pairs so each listener gets one precise type; the registry,
    // stats and teardowns treat both alike.
    if (conn instanceof PinnedSocket) this.emit('socketOpened', conn);
    else this.emit('connectionOpened', conn);
  }

  static {
    connectionClosed = (conn, info) => {
      const pool = conn[kPool];
      const entry = conn[kEntry];
      if (pool === undefined || entry === undefined) return;
      entry.connections.delete(conn);
      pool.#active--;
      entry.closedBytesFromClient += info.bytesFromClient;
      entry.closedBytesFromUpstream += info.bytesFromUpstream;
      entry.teardowns[info.reason] = (entry.teardowns[info.reason] ?? 0) + 1;
      pool.#teardowns[info.reason] = (pool.#teardowns[info.reason] ?? 0) + 1;
      if (conn instanceof PinnedSocket) pool.emit('socketClosed', conn, info);
      else pool.emit('connectionClosed', conn, info);
      if (entry.connections.size === 0 && entry.drainWaiters.length > 0) pool.#stopDrain(entry);
      // A freed slot may let a waiting client through a per-backend cap.
      if (pool.#waiting.size > 0 && entry.state === 'up') pool.#wakeWaiting();
      if (pool.#active === 0) pool.#idle?.();
    };
  }

  /** Picks, dials with retries, and waits in the queue while nothing is up. */
  async #place(placement: Placement, context: PickContext): Promise<{ entry: BackendEntry; socket: Socket }> {
    if (this.#closing) throw new PoolClosedError();
    const { maxConnections, retries, queue, clock } = this.#options;
    if (this.#active + this.#dialling >= maxConnections) throw new MaxConnectionsError(maxConnections);

    this.#placements.add(placement);
    const tried = new Set<string>();
    let failures = 0;
    let lastError: ConnectError | ConnectTimeoutError | undefined;
    let deadline = -1;
    try {
      while (true) {
        if (placement.signal.aborted) throw placement.signal.reason;
        const entry = this.#pick(context, tried);
        if (entry === undefined) {
          // Every backend we could try has failed us: report the last failure.
          if (lastError !== undefined) throw lastError;
          if (deadline < 0) deadline = clock.now() + queue.timeout;
          await this.#wait(placement, deadline);
          continue;
        }
        tried.add(entry.backend.id);
        let socket: Socket;
        entry.dialling++;
        this.#dialling++;
        try {
          socket = await this.#dialWithTimeout(entry, placement.signal, placement.preamble);
        } catch (err) {
          if (placement.signal.aborted) throw placement.signal.reason;
          lastError = err as ConnectError | ConnectTimeoutError;
          this.#connectFailed(entry, lastError);
          if (++failures > retries) throw lastError;
          continue;
        } finally {
          entry.dialling--;
          this.#dialling--;
        }
        if (placement.signal.aborted) {
          socket.destroy();
          throw placement.signal.reason;
        }
        // The backend may have left service while we dialled; never pin to it.
        if (entry.state !== 'up' || entry.removed) {
          socket.destroy();
          continue;
        }
        return { entry, socket };
      }
    } finally {
      this.#placements.delete(placement);
      this.#waiting.delete(placement);
    }
  }

  #pick(context: PickContext, tried: Set<string> | undefined): BackendEntry | undefined {
    // One reused array: picks are synchronous, so it is never shared.
    const candidates = this.#candidates;
    candidates.length = 0;
    for (const entry of this.#entries.values()) {
      if (entry.state === 'up' && entry.active < entry.backend.maxConnections && !tried?.has(entry.backend.id)) {
        candidates.push(entry);
      }
    }
    const picked = candidates.length === 0 ? undefined : (this.#balancer.pick(candidates, context) as BackendEntry | undefined);
    candidates.length = 0;
    // A custom picker may hand back something that is not one of ours.
    return picked !== undefined && this.#entries.get(picked.backend.id) === picked ? picked : undefined;
  }

  #wait(placement: Placement, deadline: number): Promise<void> {
    const { queue, clock } = this.#options;
    if (queue.max === 0) return Promise.reject(new NoHealthyBackendError('queue-disabled'));
    if (this.#waiting.size >= queue.max) return Promise.reject(new NoHealthyBackendError('queue-full'));
    const remaining = deadline - clock.now();
    if (remaining <= 0) return Promise.reject(new NoHealthyBackendError('queue-timeout'));
    return new Promise<void>((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        finish();
        reject(new NoHealthyBackendError('queue-timeout'));
      }, remaining);
      const onAbort = (): void => {
        finish();
        reject(placement.signal.reason as Error);
      };
      const finish = (): void => {
        clock.clearTimeout(timer);
        placement.signal.removeEventListener('abort', onAbort);
        placement.wake = undefined;
        this.#waiting.delete(placement);
      };
      placement.wake = () => {
        finish();
        resolve();
      };
      placement.signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.add(placement);
      if (log.enabled) log('client waiting for a backend (%d waiting)', this.#waiting.size);
    });
  }

  #wakeWaiting(): void {
    // Woken in arrival order; each re-picks, and one that still finds nothing
    // queues again with what is left of its deadline.
    for (const placement of this.#waiting) placement.wake?.();
  }

  async #dialWithTimeout(entry: BackendEntry, outer: AbortSignal, preamble: Buffer | undefined): Promise<Socket> {
    const { backend } = entry;
    const { clock, connectTimeout } = this.#options;
    const controller = new AbortController();
    const onOuterAbort = (): void => controller.abort(outer.reason);
    outer.addEventListener('abort', onOuterAbort, { once: true });
    const timer = clock.setTimeout(() => controller.abort(new ConnectTimeoutError(backend.id, connectTimeout)), connectTimeout);
    try {
      const dialled = this.#dial(backend, { signal: controller.signal, preamble });
      // A custom dialler that ignores the signal must not hold us past the
      // deadline, nor leak the socket it produces afterwards.
      return await new Promise<Socket>((resolve, reject) => {
        const onAbort = (): void => {
          reject(controller.signal.reason as Error);
          dialled.then((late) => late.destroy(), noop);
        };
        controller.signal.addEventListener('abort', onAbort, { once: true });
        dialled.then(
          (socket) => {
            controller.signal.removeEventListener('abort', onAbort);
            if (controller.signal.aborted) socket.destroy();
            else resolve(socket);
          },
          (err: Error) => {
            controller.signal.removeEventListener('abort', onAbort);
            reject(err);
          },
        );
      });
    } catch (err) {
      if (controller.signal.aborted) throw controller.signal.reason;
      throw err instanceof FailoverProxyError ? err : new ConnectError(backend.id, { cause: err });
    } finally {
      clock.clearTimeout(timer);
      outer.removeEventListener('abort', onOuterAbort);
    }
  }

  #connectFailed(entry: BackendEntry, error: ConnectError | ConnectTimeoutError): void {
    entry.connectFailures++;
    if (log.enabled) log('%s connect failed: %s', entry.backend.id, error.message);
    this.emit('connectFailed', entry.backend, error);
  }

  #entry(id: string): BackendEntry {
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new UnknownBackendError(String(id));
    return entry;
  }

  #assertOpen(): void {
    if (this.#closing) throw new PoolClosedError();
  }

  // ------------------------------------------------------------------ stats

  /** A snapshot of every backend and the pool's counters. */
  stats(): PoolStats {
    const backends: BackendStats[] = [];
    let active = 0;
    for (const entry of this.#entries.values()) {
      let bytesFromClient = entry.closedBytesFromClient;
      let bytesFromUpstream = entry.closedBytesFromUpstream;
      for (const conn of entry.connections) {
        bytesFromClient += conn.bytesFromClient;
        bytesFromUpstream += conn.bytesFromUpstream;
      }
      active += entry.connections.size;
      const { backend } = entry;
      backends.push({
        id: backend.id,
        host: backend.host,
        port: backend.port,
        weight: backend.weight,
        state: entry.state,
        since: entry.since,
        reason: entry.reason,
        active: entry.connections.size,
        dialling: entry.dialling,
        total: entry.total,
        connectFailures: entry.connectFailures,
        bytesFromClient,
        bytesFromUpstream,
        teardowns: { ...entry.teardowns },
      });
    }
    return {
      at: this.#options.clock.now(),
      closed: this.#closing,
      active,
      waiting: this.#waiting.size,
      total: this.#total,
      backends,
      teardowns: { ...this.#teardowns },
      pinFailures: { ...this.#pinFailures },
    };
  }

  // -------------------------------------------------------------- lifecycle

  /** Whether `close()` or `destroy()` was called. */
  get closed(): boolean {
    return this.#closing;
  }

  /**
   * Stops accepting connections, fails waiting clients with `POOL_CLOSED`,
   * lets open connections finish for `timeout` ms, then destroys the rest
   * (reason `pool-closed`). Idempotent: every call returns the same promise.
   * Leaves no socket and no timer behind.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closePromise === undefined) {
      v.knownKeys('options', v.object('options', options), ['timeout']);
      const timeout = v.integer('timeout', options.timeout ?? this.#options.closeTimeout, 0, 2 ** 31 - 1);
      this.#closePromise = this.#shutdown(timeout);
    }
    return this.#closePromise;
  }

  /**
   * Destroys every connection at once (reason `pool-destroyed`) and closes the
   * pool. Idempotent; resolves with the same promise as `close()`.
   */
  destroy(): Promise<void> {
    this.#beginShutdown();
    for (const entry of this.#entries.values()) this.#destroyAll(entry, 'pool-destroyed', false);
    return this.close({ timeout: 0 });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #beginShutdown(): void {
    if (this.#closing) return;
    this.#closing = true;
    log('closing');
    const error = new PoolClosedError();
    for (const placement of this.#placements) placement.controller.abort(error);
  }

  async #shutdown(timeout: number): Promise<void> {
    this.#beginShutdown();
    if (this.#active > 0) {
      const { clock } = this.#options;
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
        timer = clock.setTimeout(() => {
          for (const entry of this.#entries.values()) this.#destroyAll(entry, 'pool-closed', false);
        }, timeout);
      });
      clock.clearTimeout(timer);
      this.#idle = undefined;
    }
    for (const entry of this.#entries.values()) this.#stopDrain(entry);
    log('closed');
    this.emit('closed');
  }
}

function noop(): void {}

function onPendingClientError(this: PendingSocket, err: Error): void {
  this[kPlacement]?.controller.abort(new ClientClosedError({ cause: err }));
}

function onPendingClientClose(this: PendingSocket): void {
  this[kPlacement]?.controller.abort(new ClientClosedError());
}

function onPooledConnectionClosed(this: PooledConnection, info: ConnectionClosedInfo): void {
  connectionClosed(this, info);
}
