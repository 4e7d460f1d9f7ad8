/**
 * A stand-in for a Kubernetes apiserver, just enough of one to test a proxy in
 * front of several: `/readyz` and `/healthz` for health probes, `/watch` for
 * the long-lived streams that make silent failures hurt, `/echo` for bytes.
 *
 * Usable in-process (`await ApiserverBackend.start(...)`) or as a child
 * process, which is how the e2e suite runs one per network namespace and
 * freezes it with SIGSTOP:
 *
 * ```sh
 * tsx examples/support/apiserver-backend.ts --name b1 --listen 127.0.0.2:6443 [--plain]
 *     [--request-cert] [--watch-interval-ms 200]
 * # prints "listening 127.0.0.2:6443" (IPv6: "listening [::1]:6443") once
 * # bound; exits 0 on SIGTERM or SIGINT
 * ```
 *
 * To SIGSTOP it, spawn `node --import tsx examples/support/apiserver-backend.ts ...`
 * (`process.execPath`) rather than the `tsx` command: `tsx` runs the script in
 * a child process, so stopping the pid you spawned would freeze only the
 * wrapper while the server kept answering. (SIGTERM is relayed either way.)
 *
 * @module
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { basename, resolve as resolvePath } from 'node:path';
import { pipeline } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import createDebug from 'debug';
import { loadCerts } from './certs.js';
import { resetSocket } from './reset-socket.js';

const debug = createDebug('failover-proxy:support:apiserver');

/** TLS material of an {@link ApiserverBackend}. */
export interface ApiserverTlsOptions {
  /** Server certificate chain (PEM). */
  readonly cert: string | Buffer;
  /** Server private key (PEM). */
  readonly key: string | Buffer;
  /** CAs to verify client certificates against (PEM). */
  readonly ca?: string | Buffer | undefined;
  /**
   * Ask clients for a certificate. As in Node, clients without one that
   * verifies against `ca` are then refused during the handshake.
   * @default false
   */
  readonly requestCert?: boolean | undefined;
}

/** Options of {@link ApiserverBackend.start}. */
export interface ApiserverBackendOptions {
  /** Carried in every watch event and the `x-backend` header, so clients can tell backends apart. */
  readonly name: string;
  /**
   * Address to listen on.
   * @default '127.0.0.1'
   */
  readonly host?: string | undefined;
  /**
   * Port to listen on; `0` picks a free one.
   * @default 0
   */
  readonly port?: number | undefined;
  /**
   * TLS material, or `false` for plain HTTP.
   * @default the `server` certificate and `ca` from test/fixtures
   */
  readonly tls?: ApiserverTlsOptions | false | undefined;
  /**
   * Milliseconds between two events on every open watch.
   * @default 200
   */
  readonly watchIntervalMs?: number | undefined;
}

/** One line of a `/watch` stream, as JSON. */
export interface WatchEvent {
  readonly type: 'BOOKMARK';
  /** The `name` of the backend that sent it. */
  readonly backend: string;
  /** Per-backend tick counter, shared by every watch. */
  readonly seq: number;
  /** `Date.now()` on the backend when sent. */
  readonly ts: number;
}

// Per-watch listeners are module-level functions that find their hub through
// this back-reference, so opening a watch allocates no closures.
const kHub = Symbol('apiserver-backend.hub');

interface TaggedResponse extends ServerResponse {
  [kHub]: WatchHub;
}

function onWatchClose(this: ServerResponse): void {
  (this as TaggedResponse)[kHub].remove(this);
}

/**
 * Every open watch of one backend, fed by a single timer: a line is encoded
 * once per tick and the same buffer written to every stream.
 */
class WatchHub {
  readonly streams = new Set<ServerResponse>();
  readonly #name: string;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;

  constructor(name: string, intervalMs: number) {
    this.#name = name;
    this.#intervalMs = intervalMs;
  }

  add(res: ServerResponse): void {
    (res as TaggedResponse)[kHub] = this;
    res.on('close', onWatchClose);
    this.streams.add(res);
    // The first event goes out at once, so a client knows who serves it
    // without waiting a full interval.
    res.write(this.#line());
    if (this.#timer === undefined) {
      // unref: an in-process backend must not keep a test process alive; the
      // listening server does that when it should.
      this.#timer = setInterval(() => this.#tick(), this.#intervalMs).unref();
    }
  }

  remove(res: ServerResponse): void {
    this.streams.delete(res);
    // No watches, no timer: an idle backend has nothing ticking.
    if (this.streams.size === 0) this.#stop();
  }

  /** Ends every stream cleanly, with the terminating chunk. */
  endAll(): void {
    this.#stop();
    for (const res of this.streams) res.end();
  }

  /** Ends every stream abruptly (no terminating chunk), as a dying apiserver would. */
  destroyAll(): void {
    this.#stop();
    for (const res of this.streams) res.destroy();
    this.streams.clear();
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    this.#seq++;
    const line = this.#line();
    for (const res of this.streams) {
      // A watcher that is not reading (its peer is cut off) would make this
      // buffer grow forever; skip it until it drains. The apiserver does
      // similar, dropping slow watchers rather than buffering for them.
      if (res.writableNeedDrain || res.writableEnded) continue;
      res.write(line);
    }
  }

  #line(): Buffer {
    const event: WatchEvent = { type: 'BOOKMARK', backend: this.#name, seq: this.#seq, ts: Date.now() };
    return Buffer.from(`${JSON.stringify(event)}\n`);
  }
}

/** See {@link handlesClosed} in fault-proxy.ts: the server handle finishes closing after its callback. */
async function handlesClosed(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function positiveInteger(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new TypeError(`Expected \`${name}\` to be an integer >= ${min}, got \`${String(value)}\` (${typeof value})`);
  }
  return value;
}

/**
 * An HTTPS (or HTTP) server that answers like a Kubernetes apiserver:
 *
 * - `GET /readyz`: `200 ok`, or `500 not ready` after `setReady(false)`
 *   (`[-]etcd failed` after `setReady(false, 'etcd')`, `[-]shutdown failed`
 *   during {@link ApiserverBackend.shutdown}).
 * - `GET /healthz` (and `/livez`): always `200 ok` while the process runs.
 * - `GET /watch`: `200`, chunked `application/json`, one
 *   `{"type":"BOOKMARK","backend":"<name>","seq":N,"ts":<ms>}` line at once
 *   and then every `watchIntervalMs`, forever.
 * - `/echo` (any method): the request body back, with its content type.
 * - anything else: `404`.
 *
 * Every response carries `x-backend: <name>`.
 *
 * @example
 * ```ts
 * const b1 = await ApiserverBackend.start({ name: 'b1' });
 * t.after(() => b1.close());
 * const res = await fetch(`${b1.url}/readyz`); // with the fixtures CA trusted
 * b1.setReady(false);
 * ```
 */
export class ApiserverBackend {
  readonly #name: string;
  readonly #server: Server;
  readonly #tls: boolean;
  readonly #hub: WatchHub;
  /** Every accepted TCP socket, so close() leaves none behind, mid-handshake ones included. */
  readonly #sockets = new Set<Socket>();
  #ready = true;
  /** The check `/readyz` reports failed while not ready (`backend` keeps the historical body). */
  #failing = 'backend';
  /** Set once {@link ApiserverBackend.shutdown} started: every answer then closes its connection. */
  #shuttingDown: Promise<void> | undefined;
  #shutdownTimers = new Set<NodeJS.Timeout>();
  #closing: Promise<void> | undefined;
  #listenedOn: { host: string; port: number } | undefined;

  private constructor(name: string, tls: ApiserverTlsOptions | false, intervalMs: number) {
    this.#name = name;
    this.#hub = new WatchHub(name, intervalMs);
    this.#tls = tls !== false;
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.#handle(req, res);
    this.#server =
      tls === false
        ? createHttpServer(handler)
        : createHttpsServer(
            {
              cert: tls.cert,
              key: tls.key,
              ...(tls.ca !== undefined && { ca: tls.ca }),
              requestCert: tls.requestCert ?? false,
              rejectUnauthorized: true,
            },
            handler,
          );
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    // Faults are the point of this server: failed handshakes and broken
    // clients are logged, never thrown.
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      debug('%s: client error %s', name, err.code ?? err.message);
      socket.destroy();
    });
    this.#server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      debug('%s: TLS client error %s', name, err.code ?? err.message);
    });
    this.#server.on('error', (err) => debug('%s: server error %s', name, err.message));
  }

  /**
   * Starts listening and resolves once the port is bound.
   *
   * @example
   * ```ts
   * const certs = loadCerts();
   * const b2 = await ApiserverBackend.start({
   *   name: 'b2',
   *   host: '127.0.0.2',
   *   tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, requestCert: true },
   *   watchIntervalMs: 50,
   * });
   * ```
   */
  static async start(options: ApiserverBackendOptions): Promise<ApiserverBackend> {
    if (typeof options.name !== 'string' || options.name === '') {
      throw new TypeError(`Expected \`name\` to be a non-empty string, got \`${String(options.name)}\``);
    }
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new TypeError(`Expected \`port\` to be an integer 0..65535, got \`${String(port)}\` (${typeof port})`);
    }
    const intervalMs = positiveInteger('watchIntervalMs', options.watchIntervalMs ?? 200, 1);
    let tls = options.tls;
    if (tls === undefined) {
      const certs = loadCerts();
      tls = { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca };
    }
    const backend = new ApiserverBackend(options.name, tls, intervalMs);
    const server = backend.#server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    debug('%s: listening on %s', options.name, backend.url);
    return backend;
  }

  /** The name given at start. */
  get name(): string {
    return this.#name;
  }

  /** The address listened on. */
  get host(): string {
    return (this.#server.address() as AddressInfo | null)?.address ?? '';
  }

  /** The port listened on (the real one when started with port 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** `{ host, port }`, ready to spread into a backend spec or a proxy target. */
  get address(): { readonly host: string; readonly port: number } {
    return { host: this.host, port: this.port };
  }

  /** `https://host:port` (or `http://`), IPv6 hosts in brackets. */
  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `${this.#tls ? 'https' : 'http'}://${host}:${this.port}`;
  }

  /** What `/readyz` answers: `true` for 200. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Watch streams currently open. */
  get activeWatches(): number {
    return this.#hub.streams.size;
  }

  /**
   * Sets what `/readyz` answers from now on; `/healthz` is unaffected, as on
   * an apiserver that is alive but not ready (etcd unreachable, shutting down).
   *
   * @example
   * ```ts
   * b1.setReady(false); // probes now see 500 on /readyz
   * ```
   */
  setReady(ready: boolean, failing = 'backend'): void {
    this.#ready = ready;
    this.#failing = failing;
    debug('%s: ready=%s%s', this.#name, ready, ready ? '' : ` (${failing})`);
  }

  /**
   * Shuts down gracefully, as a kube-apiserver does on SIGTERM:
   *
   * 1. `/readyz` fails at once, HTTP 500, its body listing each check with
   *    `[-]shutdown failed: reason withheld` (`/livez` keeps passing);
   * 2. it keeps accepting and serving for `delayMs`
   *    (`--shutdown-delay-duration`), every answer closing its connection;
   * 3. it ends its watches itself, cleanly (terminating chunk, then FIN),
   *    spread evenly over `graceMs` (`--shutdown-watch-termination-grace-period`);
   * 4. it stops listening (new connections are refused) and resolves.
   *
   * With `listenerClosesFirst`, steps 3 and 4 come in kube-apiserver's own
   * order: the listener closes when the delay is over (checks are refused
   * from then on) while the open watches are still being ended over
   * `graceMs`.
   *
   * Idempotent; {@link close} cuts it short.
   *
   * @example
   * ```ts
   * await b1.shutdown({ delayMs: 1500, graceMs: 2500 });
   * ```
   */
  shutdown(options: { readonly delayMs: number; readonly graceMs: number; readonly listenerClosesFirst?: boolean }): Promise<void> {
    this.#shuttingDown ??= this.#shutdown(positiveInteger('delayMs', options.delayMs, 0), positiveInteger('graceMs', options.graceMs, 0), options.listenerClosesFirst === true);
    return this.#shuttingDown;
  }

  async #shutdown(delayMs: number, graceMs: number, listenerClosesFirst: boolean): Promise<void> {
    this.setReady(false, 'shutdown');
    debug('%s: shutting down: serving %d ms, then ending watches over %d ms', this.#name, delayMs, graceMs);
    await this.#sleep(delayMs);
    // server.close() stops accepting at once; its callback waits for the open connections.
    const closed = listenerClosesFirst ? new Promise<void>((resolve) => this.#server.close(() => resolve())) : undefined;
    if (closed !== undefined) debug('%s: stopped listening, still ending watches', this.#name);
    const streams = Array.from(this.#hub.streams);
    const step = streams.length === 0 ? 0 : graceMs / streams.length;
    for (const res of streams) {
      if (this.#closing !== undefined) return;
      endWatch(res);
      await this.#sleep(step);
    }
    // Watches opened meanwhile (a client that got here during the delay) end now.
    for (const res of Array.from(this.#hub.streams)) endWatch(res);
    if (this.#closing !== undefined) return;
    await (closed ?? new Promise<void>((resolve) => this.#server.close(() => resolve())));
    debug('%s: stopped listening', this.#name);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#shutdownTimers.delete(timer);
        resolve();
      }, ms);
      this.#shutdownTimers.add(timer);
    });
  }

  /**
   * Ends every open watch cleanly (terminating chunk, connection kept), as an
   * apiserver does when a watch reaches its `timeoutSeconds`. Reflectors
   * re-watch at once, so this is how a test makes clients reconnect without
   * any failure.
   *
   * @example
   * ```ts
   * b1.endWatches();
   * await fleet.waitFor((f) => f.reconnects >= f.clients.length);
   * ```
   */
  endWatches(): void {
    this.#hub.endAll();
  }

  /**
   * Resets every open connection (an RST, not a FIN: `resetAndDestroy()`),
   * as a host that lost its connection state answers; the server keeps
   * listening. Returns how many were reset.
   *
   * @example
   * ```ts
   * b1.resetConnections(); // every client of b1 sees ECONNRESET
   * ```
   */
  resetConnections(): number {
    let n = 0;
    for (const socket of this.#sockets) {
      if (socket.destroyed) continue;
      n++;
      resetSocket(socket);
    }
    debug('%s: reset %d connection(s)', this.#name, n);
    return n;
  }

  /**
   * Stops accepting (new connections are refused by the kernel: no listener)
   * and resets every open connection: an apiserver that crashed, seen from
   * its peers. {@link ApiserverBackend.listenAgain} undoes it. Returns how
   * many connections were reset.
   *
   * @example
   * ```ts
   * await b1.refuseAndReset();
   * await b1.listenAgain();
   * ```
   */
  async refuseAndReset(): Promise<number> {
    const { address, port } = this.#server.address() as { address: string; port: number };
    this.#listenedOn = { host: address, port };
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const n = this.resetConnections();
    await closed;
    return n;
  }

  /** Listens again on the address {@link ApiserverBackend.refuseAndReset} stopped. */
  async listenAgain(): Promise<void> {
    const at = this.#listenedOn;
    if (at === undefined) return;
    this.#listenedOn = undefined;
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(at.port, at.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  /**
   * Stops listening and destroys every socket, open watches included (they
   * end without a terminating chunk, as when an apiserver dies). Idempotent:
   * later calls return the same promise, which resolves with no handle left.
   *
   * @example
   * ```ts
   * t.after(() => backend.close());
   * ```
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Delegates to {@link ApiserverBackend.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    for (const timer of this.#shutdownTimers) clearTimeout(timer);
    this.#shutdownTimers.clear();
    const closed = new Promise<void>((resolve) => {
      // An error only says it was not listening: closed either way.
      this.#server.close(() => resolve());
    });
    this.#hub.destroyAll();
    const socketsClosed: Promise<unknown>[] = [];
    for (const socket of this.#sockets) {
      socketsClosed.push(new Promise((resolve) => socket.once('close', resolve)));
      socket.destroy();
    }
    await Promise.all([closed, ...socketsClosed]);
    await handlesClosed();
    debug('%s: closed', this.#name);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    res.setHeader('x-backend', this.#name);
    // A server shutting down closes each connection after its answer (Go's
    // net/http does once Shutdown is called).
    if (this.#shuttingDown !== undefined) res.setHeader('connection', 'close');
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/echo') {
      const type = req.headers['content-type'];
      res.writeHead(200, type === undefined ? {} : { 'content-type': type });
      // pipeline, not pipe: it listens for errors on both sides, so a client
      // that vanishes mid-body cannot crash the process.
      pipeline(req, res, (err) => {
        if (err) debug('%s: echo failed: %s', this.#name, err.message);
      });
      return;
    }
    // Other routes ignore any body; draining it keeps keep-alive connections usable.
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(res, 405, 'method not allowed\n');
      return;
    }
    switch (path) {
      case '/readyz':
        if (this.#ready) reply(res, 200, 'ok');
        else if (this.#failing === 'backend') reply(res, 500, '[-]backend not ready\nreadyz check failed\n');
        // As kube-apiserver lists its checks; the failing one says why no more.
        else reply(res, 500, `[+]ping ok\n[+]log ok\n[-]${this.#failing} failed: reason withheld\n[+]poststarthook/start-apiextensions-controllers ok\nreadyz check failed\n`);
        return;
      case '/healthz':
      case '/livez':
        reply(res, 200, 'ok');
        return;
      case '/watch':
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
        res.flushHeaders();
        this.#hub.add(res);
        return;
      default:
        reply(res, 404, 'not found\n');
    }
  }
}

/** Ends a watch cleanly (terminating chunk), then its connection (FIN), as a server shutting down does. */
function endWatch(res: ServerResponse): void {
  if (res.writableEnded || res.destroyed) return;
  const socket = res.socket;
  res.end(() => socket?.end());
}

function reply(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Parses `host:port` or `[v6]:port`. */
function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new TypeError(`Expected \`--listen\` to be HOST:PORT, got \`${text}\``);
  return { host: (match[1] ?? match[2])!, port };
}

/** The CLI: see the module comment. */
async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      plain: { type: 'boolean', default: false },
      'request-cert': { type: 'boolean', default: false },
      'watch-interval-ms': { type: 'string', default: '200' },
    },
    strict: true,
  });
  if (values.name === undefined) throw new TypeError('Expected `--name`');
  const { host, port } = parseListen(values.listen);
  let tls: ApiserverTlsOptions | false = false;
  if (!values.plain) {
    const certs = loadCerts();
    tls = { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, requestCert: values['request-cert'] };
  }
  const backend = await ApiserverBackend.start({
    name: values.name,
    host,
    port,
    tls,
    watchIntervalMs: Number(values['watch-interval-ms']),
  });
  const shown = backend.host.includes(':') ? `[${backend.host}]` : backend.host;
  // The parent waits for exactly this line before it starts the test.
  process.stdout.write(`listening ${shown}:${backend.port}\n`);
  const stop = (): void => {
    backend.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// Only when run as a program: importing this module must have no side effects.
// The name check keeps a bundle that includes this module (dist/verify.js, where
// import.meta.url is the bundle's own file) from running this CLI instead.
const self = fileURLToPath(import.meta.url);
if (process.argv[1] !== undefined && /^apiserver-backend\.[cm]?[jt]s$/.test(basename(self)) && resolvePath(process.argv[1]) === self) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`apiserver-backend: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
