/**
 * A TCP forwarder that can make its target look dead without telling anyone.
 *
 * The failure failover-proxy exists for is the *silent* one: a backend host
 * loses power or is partitioned away, and its connections neither close nor
 * reset — bytes just stop. `FaultProxy` reproduces that on loopback so tests
 * can run unprivileged and fast; the e2e suite does the same thing for real
 * with network namespaces and nftables `drop`.
 *
 * What it simulates, and what it does not:
 * - `cut()` stops forwarding at the application layer. Neither peer ever sees
 *   a FIN, an RST or a byte from the other again on that connection.
 * - The proxy's own kernel is still alive, so it still ACKs what a peer sends
 *   until the receive window closes, and still answers TCP keepalive probes.
 *   A peer's writes therefore block once buffers fill, exactly as on a dead
 *   link, but kernel-level liveness (`SO_KEEPALIVE`, `TCP_USER_TIMEOUT` before
 *   the window fills) will *not* notice this cut. That is deliberate: what is
 *   under test here is detection by health probes and application timeouts.
 *
 * @module
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import createDebug from 'debug';
import { resetSocket } from './reset-socket.js';

const debug = createDebug('failover-proxy:support:fault-proxy');

/** A TCP endpoint. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link FaultProxy.start}. */
export interface FaultProxyOptions {
  /** Where accepted connections are forwarded. */
  readonly target: HostPort;
  /**
   * Address to listen on.
   * @default '127.0.0.1'
   */
  readonly host?: string | undefined;
  /**
   * Port to listen on; `0` picks a free one (read it back from `proxy.port`).
   * @default 0
   */
  readonly port?: number | undefined;
}

/** What the proxy does with new connections. */
export type FaultMode = 'forwarding' | 'cut' | 'refusing';

// Listeners are module-level functions that find their pair through this
// back-reference, so accepting a connection allocates no closures.
const kPair = Symbol('fault-proxy.pair');

interface TaggedSocket extends Socket {
  [kPair]: Pair;
}

/** One accepted connection and, unless it was accepted while cut, its upstream. */
class Pair {
  readonly client: Socket;
  upstream: Socket | null = null;
  /** Once true, never false again: the peers' TCP state is assumed lost. */
  silent = false;
  /** Sockets of this pair that have not emitted `'close'` yet. */
  open = 1;
  readonly registry: PairRegistry;

  constructor(client: Socket, registry: PairRegistry) {
    this.client = client;
    this.registry = registry;
  }
}

/** Open pairs, plus a way to wait until there are none. */
class PairRegistry {
  readonly pairs = new Set<Pair>();
  #waiters: (() => void)[] = [];

  release(pair: Pair): void {
    this.pairs.delete(pair);
    if (this.pairs.size === 0 && this.#waiters.length > 0) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  drained(): Promise<void> {
    if (this.pairs.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

function tag(socket: Socket, pair: Pair): void {
  (socket as TaggedSocket)[kPair] = pair;
  // Attached before anything can fail: a fault must never crash the process.
  socket.on('error', onSocketError);
  socket.on('close', onSocketClose);
}

function onSocketError(this: Socket, err: NodeJS.ErrnoException): void {
  const pair = (this as TaggedSocket)[kPair];
  const side = this === pair.client ? 'client' : 'upstream';
  debug('%s socket error %s (silent=%s)', side, err.code ?? err.message, pair.silent);
  // A silent pair must stay silent on the other side, whatever happens here.
  if (pair.silent) return;
  // While forwarding, an abrupt failure on one side is passed on as an abrupt
  // failure (RST) on the other, as a transparent middlebox would.
  const other = this === pair.client ? pair.upstream : pair.client;
  if (other !== null) abort(other);
}

function onSocketClose(this: Socket): void {
  const pair = (this as TaggedSocket)[kPair];
  if (--pair.open === 0) pair.registry.release(pair);
}

/**
 * Resolves after libuv has run the close callbacks of every handle closed
 * before the call. `server.close()` calls back from a nextTick, while its
 * handle is still closing (and still listed by `getActiveResourcesInfo()`);
 * closing handles are finished at the end of a loop iteration, after the check
 * phase, so the second of two `setImmediate` hops always comes after it.
 */
async function handlesClosed(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Sends an RST where there is a connection to reset; just destroys otherwise (see {@link resetSocket}). */
function abort(socket: Socket): void {
  resetSocket(socket);
}

function silence(pair: Pair): void {
  if (pair.silent) return;
  pair.silent = true;
  // unpipe() drops the pipe's 'end' handler too, so a FIN from one peer is not
  // passed on either. pause() stops reading once the stream's buffer reaches
  // its highWaterMark: memory stays bounded, the kernel buffers fill and the
  // peer's writes block, as on a dead link. Whatever was buffered is never
  // delivered: the socket is never resumed.
  pair.client.unpipe();
  pair.client.pause();
  if (pair.upstream !== null) {
    pair.upstream.unpipe();
    pair.upstream.pause();
  }
}

/**
 * A TCP forwarder in front of one target whose faults can be switched at run
 * time: a silent network cut ({@link FaultProxy.cut}), a recovery
 * ({@link FaultProxy.restore}) and an abrupt failure ({@link FaultProxy.reset}).
 *
 * Half-closes are forwarded as such (both sides use `allowHalfOpen`), Nagle is
 * off on both sides, and bytes move with `pipe()` so backpressure holds.
 *
 * @example
 * ```ts
 * const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: backend.port } });
 * pool.add({ ...proxy.address, id: 'b1' });
 * // ... connections flow ...
 * proxy.cut();        // b1 now looks like a host that lost power
 * await proxy.close();
 * ```
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #target: HostPort;
  readonly #registry = new PairRegistry();
  #mode: FaultMode = 'forwarding';
  #cutAt: number | undefined;
  #closing: Promise<void> | undefined;

  private constructor(target: HostPort) {
    this.#target = Object.freeze({ host: target.host, port: target.port });
    this.#server = createServer({
      // A transparent forwarder must not answer a FIN with its own FIN: the
      // other direction may still be carrying data. Also keeps a FIN that
      // reaches a cut connection from being answered.
      allowHalfOpen: true,
      // Nothing is read from a socket until it is piped, so a connection
      // accepted while cut never has a single byte pulled from the kernel.
      pauseOnConnect: true,
      noDelay: true,
    });
    this.#server.on('connection', (client) => this.#accept(client));
    // Accept errors (EMFILE) are emitted here; never let them crash a test.
    this.#server.on('error', (err) => debug('server error %s', err.message));
  }

  /**
   * Starts listening and resolves once the port is bound.
   *
   * @example
   * ```ts
   * const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: 6443 } });
   * net.connect(proxy.port, proxy.host);
   * ```
   */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const { target } = options;
    if (typeof target?.host !== 'string' || !Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
      throw new TypeError(`Expected \`target\` to be { host: string, port: 1..65535 }, got \`${JSON.stringify(target)}\``);
    }
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new TypeError(`Expected \`port\` to be an integer 0..65535, got \`${String(port)}\` (${typeof port})`);
    }
    const proxy = new FaultProxy(target);
    const server = proxy.#server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    debug('listening on %s:%d -> %s:%d', proxy.host, proxy.port, target.host, target.port);
    return proxy;
  }

  /** The address the proxy listens on. */
  get host(): string {
    return (this.#server.address() as AddressInfo | null)?.address ?? '';
  }

  /** The port the proxy listens on (the real one when started with port 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** `{ host, port }` of the proxy, ready to spread into a backend spec. */
  get address(): HostPort {
    return { host: this.host, port: this.port };
  }

  /** Where connections are forwarded. */
  get target(): HostPort {
    return this.#target;
  }

  /** `'cut'` between {@link FaultProxy.cut} and {@link FaultProxy.restore}, `'refusing'` after {@link FaultProxy.refuse}. */
  get mode(): FaultMode {
    return this.#mode;
  }

  /**
   * Accepted connections not fully closed yet (forwarded, silenced by a cut,
   * or accepted while cut), each counted once whatever its number of sockets.
   */
  get connections(): number {
    return this.#registry.pairs.size;
  }

  /** `Date.now()` at the last {@link FaultProxy.cut}, `undefined` if never cut. */
  get cutAt(): number | undefined {
    return this.#cutAt;
  }

  /**
   * Silent network cut. Every open connection stops forwarding in both
   * directions and nothing is ever sent on it again: no byte, no FIN, no RST.
   * New connections are accepted (the proxy's kernel completes the handshake)
   * but are never forwarded, answered or closed.
   *
   * Bytes the proxy had already taken in before the cut may still drain to the
   * other side, like packets already in flight; bytes sent after it never
   * arrive. Connections open across a cut stay silent even after
   * {@link FaultProxy.restore}: after a real partition the peers' TCP state is
   * gone, so nothing would get through on them either.
   *
   * @example
   * ```ts
   * proxy.cut();
   * // a client's writes now vanish and it never hears back
   * ```
   */
  cut(): void {
    this.#mode = 'cut';
    this.#cutAt = Date.now();
    for (const pair of this.#registry.pairs) silence(pair);
    debug('cut: %d connection(s) silenced', this.#registry.pairs.size);
  }

  /**
   * Ends a cut for *new* connections, which are forwarded again. Connections
   * open across the cut stay silent forever (see {@link FaultProxy.cut}); they
   * are only released by {@link FaultProxy.reset} or {@link FaultProxy.close}.
   *
   * @example
   * ```ts
   * proxy.restore();
   * await waitFor(() => probe.isHealthy('b1'));
   * ```
   */
  restore(): void {
    this.#mode = 'forwarding';
    debug('restored');
  }

  /**
   * New connections are refused: each is reset (RST) as soon as it is
   * accepted, the way a host without a listener (or that lost its connection
   * state) answers. Open connections are left as they are; {@link FaultProxy.reset}
   * resets them. {@link FaultProxy.restore} forwards new connections again.
   *
   * @example
   * ```ts
   * proxy.refuse();
   * proxy.reset(); // a rebooted host: every connection reset, new ones refused
   * ```
   */
  refuse(): void {
    this.#mode = 'refusing';
    debug('refusing new connections');
  }

  /**
   * Abrupt failure for comparison with a cut: every open socket, on both
   * sides, is closed with an RST (`resetAndDestroy()`), so both peers see
   * `ECONNRESET`. The mode is unchanged: new connections are still forwarded
   * (or silenced, if cut).
   *
   * @example
   * ```ts
   * proxy.reset();
   * const err = await once(client, 'error'); // err.code === 'ECONNRESET'
   * ```
   */
  reset(): void {
    debug('reset: %d connection(s)', this.#registry.pairs.size);
    for (const pair of this.#registry.pairs) {
      // Marked silent first, so the resulting socket errors are not also
      // forwarded as resets to the other side (it gets its own RST here).
      pair.silent = true;
      abort(pair.client);
      if (pair.upstream !== null) abort(pair.upstream);
    }
  }

  /**
   * Stops listening and destroys every socket. Idempotent: later calls return
   * the same promise, which resolves once every socket and the server have
   * closed, leaving no handle behind.
   *
   * @example
   * ```ts
   * t.after(() => proxy.close());
   * ```
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Delegates to {@link FaultProxy.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => {
      // The error ("not running") is irrelevant: either way it is closed.
      this.#server.close(() => resolve());
    });
    for (const pair of this.#registry.pairs) {
      pair.silent = true;
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    await Promise.all([serverClosed, this.#registry.drained()]);
    await handlesClosed();
    debug('closed');
  }

  #accept(client: Socket): void {
    const pair = new Pair(client, this.#registry);
    this.#registry.pairs.add(pair);
    tag(client, pair);
    if (this.#mode === 'refusing' && this.#closing === undefined) {
      pair.silent = true;
      resetSocket(client);
      return;
    }
    if (this.#mode === 'cut' || this.#closing !== undefined) {
      // Accepted by the kernel, then silence: thanks to pauseOnConnect nothing
      // is ever read, so the client's bytes pile up in kernel buffers.
      pair.silent = true;
      if (this.#closing !== undefined) client.destroy();
      return;
    }
    const upstream = connect({
      host: this.#target.host,
      port: this.#target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    pair.upstream = upstream;
    pair.open = 2;
    tag(upstream, pair);
    // Bytes the client sends before the upstream connects are queued by the
    // upstream socket and flushed on connect; pipe() ends each side when the
    // other sends FIN, so half-closes pass through.
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
