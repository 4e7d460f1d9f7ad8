/**
 * An `http.Agent` whose connections come from an {@link UpstreamPool}: each
 * new socket is dialled to the backend the pool picks and registered under
 * it, so a backend leaving service takes its requests, streaming responses
 * and idle keep-alive sockets with it.
 *
 * @module
 */
import { Agent, type AgentOptions, type ClientRequest, type ClientRequestArgs, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import createDebug from 'debug';
import type { Backend } from './backend.js';
import type { BackendStatus } from './backend-status.js';
import { ConnectError } from './errors.js';
import type { ConnectionClosedInfo } from './events.js';
import { PinnedSocket } from './pinned-socket.js';
import type { MemberFactory, PinOptions, PlaceOptions } from './placement.js';
import type { PoolMember } from './pool-member.js';
import * as v from './validate.js';

/**
 * What an agent needs of a pool ({@link UpstreamPool} has it): the placement
 * path, backend status, and the drain event. Declared here so the agent does
 * not depend on the pool's module.
 */
export interface AgentPool {
  place<M extends PoolMember>(options: PlaceOptions, build: MemberFactory<M>): Promise<M>;
  status(id: string): BackendStatus | undefined;
  on(event: 'backendDraining', fn: (backend: Backend) => void, context?: unknown): unknown;
  off(event: 'backendDraining', fn: (backend: Backend) => void, context?: unknown): unknown;
}

const log = createDebug('failover-proxy:agent');

/** Options of a {@link PoolAgent}: Node's agent options, plus how to use the pool. */
export interface PoolAgentOptions extends AgentOptions {
  /**
   * Keep sockets open between requests. Unlike Node's `http.Agent`, on by
   * default: a gateway reuses its upstream connections.
   * @default true
   */
  readonly keepAlive?: boolean | undefined;
  /**
   * Serve `https.request` (the agent's `protocol` becomes `'https:'`). The
   * pool dials TLS (its `tls` option, or the backend's): the agent only
   * checks that it did, and fails a request whose backend was dialled in
   * clear with `CONNECT_FAILED` rather than send it unencrypted.
   * @default false
   */
  readonly secure?: boolean | undefined;
  /**
   * Pick context for a new connection (`key` for the `hash` strategy, `meta`
   * for a custom picker), from the options of the request that needs it.
   * Keep-alive sockets are shared between requests, so this only steers
   * which backend a *new* socket goes to.
   */
  readonly context?: ((request: ClientRequestArgs) => PinOptions | undefined) | undefined;
}

// Back-references for module-level listeners (no closure per socket).
const kAgent = Symbol('failover-proxy.agent');
const kPinned = Symbol('failover-proxy.agent-socket');
type AgentSocket = Socket & { [kPinned]?: PinnedSocket };
type AgentPinned = PinnedSocket & { [kAgent]?: PoolAgent };
type HttpMessageSocket = Socket & { _httpMessage?: (ClientRequest & { res?: IncomingMessage | null }) | null };

/**
 * An `http.Agent` over an {@link UpstreamPool}. Use it with `http.request`,
 * `https.request` (with `secure: true`) or any library that takes an `agent`:
 * the request's own host and port are ignored, the pool chooses.
 *
 * - A new socket goes through `pool.connect()`: a health-aware pick, retries
 *   on another backend when a dial fails (each failure is a passive health
 *   signal), the queue while nothing is up. If that fails, the request fails
 *   with the pool's code (`NO_HEALTHY_BACKEND`, `CONNECT_FAILED`, …).
 * - Every socket is registered with the pool under its backend (a
 *   {@link PinnedSocket}). When the backend is marked down, put in
 *   maintenance or removed, requests in flight and streaming responses on
 *   it fail at once with `BACKEND_DOWN` (on the request's and the response's
 *   `'error'`; the response also emits `'aborted'`), and its idle keep-alive
 *   sockets are evicted, so the next request dials a live backend.
 * - A draining backend keeps its in-flight requests, but its idle sockets
 *   are evicted and no socket goes back to the free list.
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { UpstreamPool } from 'failover-proxy';
 *
 * const pool = new UpstreamPool({ backends: [{ host: '10.0.0.1', port: 8080 }, { host: '10.0.0.2', port: 8080 }] });
 * const agent = pool.createAgent();
 * http.get({ host: 'backend', path: '/watch', agent }, (res) => {
 *   res.on('error', (err) => console.log((err as FailoverProxyError).code)); // 'BACKEND_DOWN' when its backend goes
 *   res.pipe(process.stdout);
 * });
 * ```
 */
export class PoolAgent extends Agent {
  /** `'http:'`, or `'https:'` for a `secure` agent (Node checks it against the request). */
  declare protocol: string;
  /** `80`, or `443` for a `secure` agent. */
  declare defaultPort: number;
  /** The pool the agent's connections come from. */
  readonly pool: AgentPool;
  readonly #secure: boolean;
  readonly #keepAlive: boolean;
  readonly #keepAliveMsecs: number;
  readonly #context: ((request: ClientRequestArgs) => PinOptions | undefined) | undefined;
  #destroyed = false;

  constructor(pool: AgentPool, options: PoolAgentOptions = {}) {
    const raw = v.object('options', options);
    const { secure, context, ...agentOptions } = options;
    const isSecure = v.boolean('secure', secure ?? false);
    if (context !== undefined) v.func('context', context);
    if (raw.keepAlive !== undefined) v.boolean('keepAlive', raw.keepAlive);
    super({ ...agentOptions, keepAlive: options.keepAlive ?? true });
    this.pool = pool;
    this.#secure = isSecure;
    this.#keepAlive = options.keepAlive ?? true;
    // Node's own default, which its agent applies to the sockets it dials.
    this.#keepAliveMsecs = options.keepAliveMsecs ?? 1000;
    this.#context = context;
    if (isSecure) {
      this.protocol = 'https:';
      this.defaultPort = 443;
    }
    // Idle sockets of a draining backend would otherwise take new requests
    // to it; markDown and removal need no hook, the registry tears those down.
    pool.on('backendDraining', onBackendDraining, this);
  }

  /**
   * Opens a socket through the pool. Always asynchronous: it returns nothing
   * and hands the socket (or the pool's error) to `callback`, which Node's
   * agent always passes.
   */
  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const done = v.func<(err: Error | null, stream: Duplex) => void>('callback', callback);
    this.#open(options).then(
      (socket) => done(null, socket),
      (err: unknown) => done(err as Error, undefined as unknown as Duplex),
    );
    return undefined;
  }

  /**
   * Keeps a finished socket for reuse only while its backend is `up`:
   * a socket to a draining (or otherwise leaving) backend is closed instead.
   */
  override keepSocketAlive(socket: Duplex): boolean {
    const pinned = (socket as AgentSocket)[kPinned];
    if (pinned !== undefined && (pinned.closed || pinned.closing || !isUp(this.pool, pinned.backend))) return false;
    return super.keepSocketAlive(socket) as unknown as boolean;
  }

  /** Destroys every socket of the agent and detaches it from the pool. */
  override destroy(): void {
    if (!this.#destroyed) {
      this.#destroyed = true;
      this.pool.off('backendDraining', onBackendDraining, this);
    }
    super.destroy();
  }

  /** `await using agent = pool.createAgent()` destroys it (and its sockets) at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    this.destroy();
    return Promise.resolve();
  }

  async #open(request: ClientRequestArgs): Promise<Socket> {
    const context = this.#context?.(request) ?? {};
    // The pool checks the backend and registers the socket in one step with
    // the end of the dial: no markDown can slip in between.
    const pinned = await this.pool.place<AgentPinned>({ key: context.key, meta: context.meta }, (backend, socket, id) => {
      if (this.#secure && !(socket instanceof TLSSocket)) {
        throw new ConnectError(backend.id, {
          cause: new Error('the pool dialled this backend without TLS, but the agent is secure: set `tls` on the pool or the backend'),
        });
      }
      // An HTTP socket must close when the server closes: half-open (as the
      // pool dials for piping) it would sit in the free list and be reused.
      socket.allowHalfOpen = false;
      configure(socket, this.#keepAlive, this.#keepAliveMsecs);
      if (typeof request.timeout === 'number' && request.timeout > 0) socket.setTimeout(request.timeout);
      const member = new PinnedSocket(socket, { backend, id: `agent-${id}` }) as AgentPinned;
      member[kAgent] = this;
      (socket as AgentSocket)[kPinned] = member;
      member.on('closed', onAgentSocketClosed);
      return member;
    });
    if (log.enabled) log('%s: new socket to %s', pinned.id, pinned.backend?.id);
    return pinned.upstream;
  }
}

function isUp(pool: AgentPool, backend: Backend | undefined): boolean {
  return backend !== undefined && pool.status(backend.id)?.state === 'up';
}

function configure(socket: Socket, keepAlive: boolean, delay: number): void {
  try {
    socket.setNoDelay(true);
    if (keepAlive) socket.setKeepAlive(true, delay);
  } catch {
    /* not a TCP socket (a custom dialler's duplex) */
  }
}

function onAgentSocketClosed(this: AgentPinned, _info: ConnectionClosedInfo): void {
  const agent = this[kAgent];
  if (agent === undefined) return;
  const socket = this.upstream as HttpMessageSocket;
  // Node drops a destroyed socket from the free list only on 'close', a tick
  // later, and pops free sockets from the end of the list without checking
  // them: remove it now, so not even a request made in this same tick gets it.
  const free = agent.freeSockets as Record<string, Socket[] | undefined>;
  for (const name in free) {
    const list = free[name];
    const i = list === undefined ? -1 : list.indexOf(socket);
    if (i !== -1) {
      list!.splice(i, 1);
      if (list!.length === 0) delete free[name];
    }
  }
  // Node would abort a response cut short with a generic ECONNRESET
  // ('aborted'); give it the reason the socket was destroyed with instead.
  // `_httpMessage.res` is the link Node's own agent uses (keepSocketAlive).
  const err = socket.errored;
  const res = socket._httpMessage?.res;
  if (err != null && res != null && !res.complete && !res.destroyed) res.destroy(err);
}

function onBackendDraining(this: PoolAgent, backend: Backend): void {
  let evicted = 0;
  for (const name in this.freeSockets) {
    // A copy: each destroy removes the socket from this list.
    for (const socket of [...(this.freeSockets[name] ?? [])]) {
      const pinned = (socket as AgentSocket)[kPinned];
      if (pinned?.backend?.id === backend.id) {
        pinned.destroy('drained');
        evicted++;
      }
    }
  }
  if (evicted > 0 && log.enabled) log('%s draining: %d idle socket(s) evicted', backend.id, evicted);
}
