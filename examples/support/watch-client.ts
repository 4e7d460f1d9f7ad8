/**
 * Watch clients that behave like Kubernetes reflectors: each holds one
 * long-lived `GET /watch` on its own connection and, whenever that stream
 * ends or fails, opens a new one after a short fixed backoff, forever.
 *
 * Like a reflector they have no read timeout of their own: a watch whose
 * backend died silently just stops receiving events and stays open. That is
 * the failure failover-proxy must cure, and {@link WatchFleet.stalled} is how
 * a test sees it.
 *
 * @module
 */
import { EventEmitter } from 'eventemitter3';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import createDebug from 'debug';
import type { WatchEvent } from './apiserver-backend.js';
import { loadCerts } from './certs.js';

const debug = createDebug('failover-proxy:support:watch');

/** TLS settings of a {@link WatchClient}. */
export interface WatchClientTlsOptions {
  /** CAs to trust (PEM). @default test/fixtures/ca.crt */
  readonly ca?: string | Buffer | undefined;
  /** Client certificate (PEM), for backends that request one. */
  readonly cert?: string | Buffer | undefined;
  /** Client private key (PEM). */
  readonly key?: string | Buffer | undefined;
}

/** Options of a {@link WatchClient}. */
export interface WatchClientOptions {
  /** Host to connect to: a backend, or the proxy in front of them. */
  readonly host: string;
  readonly port: number;
  /**
   * SNI name and the name the certificate is checked against.
   * @default `host` (an IP host is checked against the certificate's IP SANs)
   */
  readonly servername?: string | undefined;
  /**
   * TLS settings, or `false` for plain HTTP.
   * @default `{ ca: <test/fixtures/ca.crt> }`
   */
  readonly tls?: WatchClientTlsOptions | false | undefined;
  /**
   * Request path.
   * @default '/watch'
   */
  readonly path?: string | undefined;
  /**
   * Delay before re-watching after a stream ends or fails. Fixed, not
   * exponential, so tests see reconnects promptly.
   * @default 50
   */
  readonly backoffMs?: number | undefined;
  /**
   * Entries kept in {@link WatchClient.history}; the oldest are dropped first.
   * @default 1000
   */
  readonly historyLimit?: number | undefined;
  /** Name used in logs. @default 'watch' */
  readonly id?: string | undefined;
  /** Time source for `at` and `lastEventAt`. @default Date.now */
  readonly now?: (() => number) | undefined;
}

/** One entry of {@link WatchClient.history}. */
export interface WatchHistoryEntry {
  /** Time of the entry (ms since epoch). */
  readonly at: number;
  /** The backend serving the watch, when known. */
  readonly backend: string | undefined;
  readonly event: 'connected' | 'closed' | 'error';
  /** `HTTP 200`, `EOF`, `aborted`, an error code... */
  readonly detail: string;
}

/** Events of a {@link WatchClient}. */
export interface WatchClientEvents {
  /** A watch was answered with 200. */
  connected: [entry: WatchHistoryEntry];
  /** A line arrived on the watch. */
  received: [event: WatchEvent];
  /** The watch ended (EOF or the connection closed); a re-watch is scheduled. */
  closed: [entry: WatchHistoryEntry];
  /** The watch failed (connect, TLS, status, socket); a re-watch is scheduled. */
  error: [entry: WatchHistoryEntry, error: Error];
  /** `stop()` finished. */
  stopped: [];
}

const defaults = Object.freeze({ path: '/watch', backoffMs: 50, historyLimit: 1000, id: 'watch' });

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new TypeError(`Expected \`${name}\` to be an integer >= 0, got \`${String(value)}\` (${typeof value})`);
  }
  return value;
}

/**
 * A single reflector-like watch. Starts watching when constructed.
 *
 * Each attempt uses its own connection (`agent: false`), as every reflector
 * in a real cluster holds its own stream.
 *
 * @example
 * ```ts
 * const client = new WatchClient({ host: proxy.host, port: proxy.port, servername: 'apiserver.test' });
 * client.on('connected', (entry) => console.log('served by', entry.backend));
 * // ...
 * await client.stop();
 * ```
 */
export class WatchClient extends EventEmitter<WatchClientEvents> {
  /** Name used in logs. */
  readonly id: string;
  /** `now()` when constructed: the reference for a client that never got an event. */
  readonly startedAt: number;
  readonly #host: string;
  readonly #port: number;
  readonly #servername: string | undefined;
  readonly #tls: WatchClientTlsOptions | false;
  readonly #path: string;
  readonly #backoffMs: number;
  readonly #historyLimit: number;
  readonly #now: () => number;
  readonly #history: WatchHistoryEntry[] = [];
  #backend: string | undefined;
  #lastEventAt: number | undefined;
  #reconnects = 0;
  #events = 0;
  #req: ClientRequest | undefined;
  /** Settles once the latest request, and so its socket, has closed. */
  #reqClosed: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #halted = false;
  #stopping: Promise<void> | undefined;

  constructor(options: WatchClientOptions) {
    super();
    if (typeof options.host !== 'string' || options.host === '') {
      throw new TypeError(`Expected \`host\` to be a non-empty string, got \`${String(options.host)}\``);
    }
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new TypeError(`Expected \`port\` to be an integer 1..65535, got \`${String(options.port)}\` (${typeof options.port})`);
    }
    this.#host = options.host;
    this.#port = options.port;
    this.#servername = options.servername;
    this.#tls = options.tls === false ? false : { ...options.tls, ca: options.tls?.ca ?? loadCerts().ca };
    this.#path = options.path ?? defaults.path;
    this.#backoffMs = nonNegativeInteger('backoffMs', options.backoffMs ?? defaults.backoffMs);
    this.#historyLimit = nonNegativeInteger('historyLimit', options.historyLimit ?? defaults.historyLimit);
    this.id = options.id ?? defaults.id;
    this.#now = options.now ?? Date.now;
    this.startedAt = this.#now();
    this.#connect();
  }

  /** Name of the backend serving the open watch; `undefined` between watches. */
  get backend(): string | undefined {
    return this.#backend;
  }

  /** When the last line arrived, `undefined` before the first. */
  get lastEventAt(): number | undefined {
    return this.#lastEventAt;
  }

  /** Watches opened after the first one. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Lines received over all watches. */
  get events(): number {
    return this.#events;
  }

  /** `true` while a watch has been answered and has not ended. */
  get connected(): boolean {
    return this.#backend !== undefined;
  }

  /** `true` once `stop()` was called. */
  get stopped(): boolean {
    return this.#halted;
  }

  /** Connects, closes and errors, oldest first (a copy). */
  get history(): readonly WatchHistoryEntry[] {
    return [...this.#history];
  }

  /**
   * Stops re-watching and closes the open watch. Idempotent: later calls
   * return the same promise, which resolves once the connection's socket has
   * closed, leaving no handle behind.
   *
   * @example
   * ```ts
   * t.after(() => client.stop());
   * ```
   */
  stop(): Promise<void> {
    if (this.#stopping === undefined) {
      // Set before anything else, so no handler of the attempt being torn
      // down schedules another one.
      this.#halted = true;
      this.#stopping = this.#stop();
    }
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#backend = undefined;
    this.#req?.destroy();
    this.#req = undefined;
    // A ClientRequest emits 'close' only after its socket has closed, even
    // when destroyed before it was handed one.
    await this.#reqClosed;
    debug('%s: stopped', this.id);
    this.emit('stopped');
  }

  #record(event: WatchHistoryEntry['event'], detail: string, backend: string | undefined): WatchHistoryEntry {
    const entry: WatchHistoryEntry = Object.freeze({ at: this.#now(), backend, event, detail });
    this.#history.push(entry);
    if (this.#history.length > this.#historyLimit) this.#history.splice(0, this.#history.length - this.#historyLimit);
    debug('%s: %s %s (%s)', this.id, event, backend ?? '-', detail);
    return entry;
  }

  #connect(): void {
    this.#timer = undefined;
    const common = { host: this.#host, port: this.#port, path: this.#path, agent: false as const, headers: { accept: 'application/json' } };
    const req =
      this.#tls === false
        ? httpRequest(common)
        : httpsRequest({
            ...common,
            ...(this.#servername !== undefined && { servername: this.#servername }),
            ...this.#tls,
          });
    this.#req = req;
    this.#reqClosed = new Promise((resolve) => req.once('close', resolve));
    // One handler per attempt: whichever of error, EOF or close comes first
    // ends the attempt and schedules the next; later ones are ignored.
    let ended = false;
    const end = (event: 'closed' | 'error', detail: string, err?: Error): void => {
      if (ended) return;
      ended = true;
      const backend = this.#backend;
      this.#backend = undefined;
      if (this.#req === req) this.#req = undefined;
      // Tear the attempt down fully, so an EOF'd stream's socket is not left behind.
      req.destroy();
      if (this.#halted) return;
      const entry = this.#record(event, detail, backend);
      if (event === 'error') this.emit('error', entry, err ?? new Error(detail));
      else this.emit('closed', entry);
      // Not unref()ed, unlike library timers: re-watching is this client's
      // whole job, and between two attempts nothing else may be keeping the
      // process alive. A running client holds the process open like a socket
      // would, until stop().
      this.#timer = setTimeout(() => this.#reconnect(), this.#backoffMs);
    };
    req.on('error', (err: NodeJS.ErrnoException) => end('error', err.code ?? err.message, err));
    req.on('close', () => end('closed', 'connection closed'));
    req.on('response', (res: IncomingMessage) => {
      res.on('error', (err: NodeJS.ErrnoException) => end('error', err.code ?? err.message, err));
      if (res.statusCode !== 200) {
        res.resume();
        end('error', `HTTP ${res.statusCode ?? 0}`);
        return;
      }
      const header = res.headers['x-backend'];
      this.#backend = typeof header === 'string' ? header : undefined;
      this.emit('connected', this.#record('connected', 'HTTP 200', this.#backend));
      res.setEncoding('utf8');
      let partial = '';
      res.on('data', (chunk: string) => {
        let start = 0;
        for (let nl = chunk.indexOf('\n'); nl !== -1; nl = chunk.indexOf('\n', start)) {
          const line = partial + chunk.slice(start, nl);
          partial = '';
          start = nl + 1;
          if (line !== '') this.#line(line);
        }
        partial += chunk.slice(start);
      });
      res.on('end', () => end('closed', 'EOF'));
      // 'close' without 'end': the stream was cut short (reset, destroyed).
      res.on('close', () => end('closed', res.complete ? 'EOF' : 'aborted'));
    });
    req.end();
  }

  #reconnect(): void {
    if (this.#halted) return;
    this.#reconnects++;
    this.#connect();
  }

  #line(line: string): void {
    let event: WatchEvent;
    try {
      event = JSON.parse(line) as WatchEvent;
    } catch {
      debug('%s: ignored a line that is not JSON', this.id);
      return;
    }
    this.#lastEventAt = this.#now();
    this.#events++;
    // Without the x-backend header (some other server), the events say who it is.
    if (this.#backend === undefined && typeof event.backend === 'string') this.#backend = event.backend;
    this.emit('received', event);
  }
}

/** Options of a {@link WatchFleet}: those of every client, plus how many. */
export interface WatchFleetOptions extends Omit<WatchClientOptions, 'id'> {
  /** Number of clients. */
  readonly size: number;
  /**
   * Prefix of the clients' ids (`${idPrefix}-${index}`).
   * @default 'watch'
   */
  readonly idPrefix?: string | undefined;
}

/**
 * N {@link WatchClient}s against the same target, with the views a failover
 * test asserts on. Starts every client when constructed.
 *
 * @example
 * ```ts
 * const fleet = new WatchFleet({ size: 50, host: proxy.host, port: proxy.port });
 * t.after(() => fleet.stop());
 * await fleet.waitFor((f) => f.connectedCount === 50);
 * faultProxyForB1.cut();
 * await fleet.waitFor((f) => f.byBackend()['b1'] === undefined && f.stalled(1000).length === 0);
 * ```
 */
export class WatchFleet {
  /** The clients, in creation order. */
  readonly clients: readonly WatchClient[];
  readonly #now: () => number;
  #stopping: Promise<void> | undefined;

  constructor(options: WatchFleetOptions) {
    const { size, idPrefix, ...clientOptions } = options;
    if (!Number.isInteger(size) || size < 1) {
      throw new TypeError(`Expected \`size\` to be an integer >= 1, got \`${String(size)}\` (${typeof size})`);
    }
    this.#now = options.now ?? Date.now;
    // Load the CA once for the whole fleet rather than once per client.
    const tls = clientOptions.tls === false ? false : { ...clientOptions.tls, ca: clientOptions.tls?.ca ?? loadCerts().ca };
    const clients: WatchClient[] = [];
    for (let i = 0; i < size; i++) {
      clients.push(new WatchClient({ ...clientOptions, tls, id: `${idPrefix ?? 'watch'}-${i}` }));
    }
    this.clients = Object.freeze(clients);
  }

  /** Clients whose watch is open. */
  get connectedCount(): number {
    let n = 0;
    for (const c of this.clients) if (c.connected) n++;
    return n;
  }

  /** Total re-watches over all clients. */
  get reconnects(): number {
    let n = 0;
    for (const c of this.clients) n += c.reconnects;
    return n;
  }

  /**
   * How many clients each backend serves right now. Clients between two
   * watches are not counted (see `connectedCount`).
   *
   * @example
   * ```ts
   * fleet.byBackend(); // { b1: 12, b2: 13 }
   * ```
   */
  byBackend(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const c of this.clients) {
      const b = c.backend;
      if (b !== undefined) counts[b] = (counts[b] ?? 0) + 1;
    }
    return counts;
  }

  /**
   * Clients that received no line for more than `thresholdMs` (counting from
   * their start when they never received one). With a backend sending a line
   * every 200 ms, a client stalled for seconds is on a dead connection, or
   * cannot get one.
   *
   * @example
   * ```ts
   * assert.equal(fleet.stalled(2000).length, 0);
   * ```
   */
  stalled(thresholdMs: number): WatchClient[] {
    const now = this.#now();
    return this.clients.filter((c) => now - (c.lastEventAt ?? c.startedAt) > thresholdMs);
  }

  /**
   * Resolves once `predicate(fleet)` holds, re-checking it whenever a client
   * connects, closes, fails or receives a line (no polling). Rejects after
   * `timeoutMs`, with the fleet's state in the message.
   *
   * @example
   * ```ts
   * await fleet.waitFor((f) => (f.byBackend()['b2'] ?? 0) === f.clients.length);
   * ```
   */
  waitFor(predicate: (fleet: this) => boolean, timeoutMs = 10_000): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const names = ['connected', 'closed', 'error', 'received'] as const;
      const cleanup = (): void => {
        clearTimeout(timer);
        for (const c of this.clients) for (const name of names) c.off(name, check);
      };
      const check = (): void => {
        let ok: boolean;
        try {
          ok = predicate(this);
        } catch (err) {
          cleanup();
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        if (ok) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `WatchFleet.waitFor: condition not met within ${timeoutMs} ms ` +
              `(connected ${this.connectedCount}/${this.clients.length}, byBackend ${JSON.stringify(this.byBackend())})`,
          ),
        );
      }, timeoutMs);
      for (const c of this.clients) for (const name of names) c.on(name, check);
    });
  }

  /**
   * Stops every client. Idempotent: later calls return the same promise,
   * which resolves once every connection has closed, leaving no handle.
   *
   * @example
   * ```ts
   * t.after(() => fleet.stop());
   * ```
   */
  stop(): Promise<void> {
    this.#stopping ??= Promise.all(this.clients.map((c) => c.stop())).then(() => undefined);
    return this.#stopping;
  }

  /** Delegates to {@link WatchFleet.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
