/**
 * How requests reach the Kubernetes API: first through the pool's own
 * healthy backends (`pool.place`, registered as a member, so a verdict on
 * that backend tears the watch down with everything else), then by dialling
 * bootstrap and discovered addresses directly, then the kubeconfig's server.
 * A route that failed or went silent is demoted: the next attempt starts at
 * the next route. Learning the list only through oneself is how a node-local
 * proxy locks itself out (canonical/k8s-snap#1939).
 *
 * @module
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import createDebug from 'debug';
import type { Backend } from '../backend.js';
import { PinnedSocket } from '../pinned-socket.js';
import type { PoolMember } from '../pool-member.js';
import type { Clock } from '../clock.js';
import type { KubeAccess } from './kubeconfig.js';

const log = createDebug('failover-proxy:discovery:kube');

/** What the transport needs of a pool: {@link UpstreamPool} fits. */
export interface KubeTransportPool {
  place<M extends PoolMember>(options: { signal?: AbortSignal }, build: (backend: Backend, socket: Socket, id: string) => M): Promise<M>;
  readonly closed: boolean;
}

/** A route to the API. */
export interface KubeRoute {
  readonly kind: 'pool' | 'direct' | 'server';
  readonly host?: string | undefined;
  readonly port?: number | undefined;
}

/** @internal */
export interface KubeTransportOptions {
  readonly access: KubeAccess;
  readonly pool?: KubeTransportPool | undefined;
  /** Addresses to dial directly, in order (bootstrap first, then discovered). */
  readonly direct?: (() => readonly { host: string; port: number }[]) | undefined;
  readonly connectTimeout: number;
  /** For the response deadline. */
  readonly clock: Clock;
}

/** A response and the route that carried it. */
export interface KubeResponse {
  readonly response: IncomingMessage;
  readonly route: KubeRoute;
  /** Destroys the request and its socket (a silent watch). */
  abort(): void;
}

/** @internal */
export class KubeTransport {
  readonly #o: KubeTransportOptions;
  readonly #servername: string;
  #start = 0;
  #closed = false;
  readonly #open = new Set<Socket>();
  /** Requests per route kind. */
  readonly counts = { pool: 0, direct: 0, server: 0, dialFailures: 0 };
  lastRoute: KubeRoute | undefined;

  constructor(options: KubeTransportOptions) {
    this.#o = options;
    const url = new URL(options.access.server);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    // An IP in the kubeconfig says nothing about the other apiservers' names;
    // every apiserver certificate carries `kubernetes.default.svc`.
    this.#servername = options.access.servername ?? (/^[\d.]+$|:/.test(host) ? 'kubernetes.default.svc' : host);
  }

  #routes(): KubeRoute[] {
    const routes: KubeRoute[] = [];
    if (this.#o.pool !== undefined && !this.#o.pool.closed) routes.push({ kind: 'pool' });
    const seen = new Set<string>();
    for (const a of this.#o.direct?.() ?? []) {
      const key = `${a.host}:${a.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      routes.push({ kind: 'direct', host: a.host, port: a.port });
    }
    const url = new URL(this.#o.access.server);
    routes.push({ kind: 'server', host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 443) });
    return routes;
  }

  /** The next attempt starts at the route after the one last used. */
  demote(): void {
    this.#start++;
  }

  /** The next attempt starts with the pool again. */
  promote(): void {
    this.#start = 0;
  }

  async #dial(route: KubeRoute, signal: AbortSignal): Promise<TLSSocket> {
    let raw: Socket;
    if (route.kind === 'pool') {
      const member = await this.#o.pool!.place({ signal }, (backend, socket, id) => new PinnedSocket(socket, { backend, id: `kube-${id}` }));
      raw = member.upstream;
    } else {
      raw = netConnect({ host: route.host!, port: route.port! });
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          raw.destroy();
          reject(signal.reason as Error);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        raw.once('connect', () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
        raw.once('error', (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        });
      });
    }
    const a = this.#o.access;
    const tls = tlsConnect({
      socket: raw,
      servername: this.#servername,
      ca: a.ca,
      cert: a.cert,
      key: a.key,
      rejectUnauthorized: a.insecureSkipTlsVerify !== true,
      ALPNProtocols: ['http/1.1'],
    });
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        tls.destroy();
        raw.destroy();
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      tls.once('secureConnect', () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
      tls.once('error', (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        raw.destroy();
        reject(err);
      });
    });
    return tls;
  }

  /**
   * GETs `path`, trying routes from the current one on; resolves with the
   * response (any status) of the first route that connects.
   */
  async get(path: string): Promise<KubeResponse> {
    const routes = this.#routes();
    let lastError: unknown = new Error('no route to the Kubernetes API');
    for (let i = 0; i < routes.length; i++) {
      if (this.#closed) throw new Error('transport closed');
      const index = (this.#start + i) % routes.length;
      const route = routes[index]!;
      let socket: TLSSocket;
      try {
        socket = await this.#dial(route, AbortSignal.timeout(this.#o.connectTimeout));
      } catch (err) {
        this.counts.dialFailures++;
        lastError = err;
        if (log.enabled) log('route %s %s failed: %s', route.kind, route.host ?? '', (err as Error).message);
        continue;
      }
      this.#start = index;
      this.counts[route.kind]++;
      this.lastRoute = route;
      return await this.#request(socket, route, path);
    }
    throw lastError;
  }

  #request(socket: TLSSocket, route: KubeRoute, path: string): Promise<KubeResponse> {
    const a = this.#o.access;
    let token = a.token;
    if (a.tokenFile !== undefined) {
      try {
        token = readFileSync(a.tokenFile, 'utf8').trim();
      } catch {
        // keep the static token, if any: the request then fails with 401 and is retried
      }
    }
    const headers: Record<string, string> = { accept: 'application/json', host: this.#servername, 'user-agent': 'failover-proxy-discovery' };
    if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
    this.#open.add(socket);
    socket.once('close', () => this.#open.delete(socket));
    const { clock } = this.#o;
    return new Promise((resolve, reject) => {
      const req = httpRequest({ method: 'GET', path, headers, createConnection: () => socket });
      const abort = (): void => {
        req.destroy();
        socket.destroy();
      };
      // A server that took the request and never answers (cut after the
      // handshake) must not hold the loop: headers come at once, even for a watch.
      const deadline = clock.setTimeout(() => {
        abort();
        reject(new Error(`no response within ${this.#o.connectTimeout} ms`));
      }, this.#o.connectTimeout);
      req.once('response', (response) => {
        clock.clearTimeout(deadline);
        response.once('end', () => socket.destroy());
        resolve({ response, route, abort });
      });
      req.once('error', (err) => {
        clock.clearTimeout(deadline);
        socket.destroy();
        reject(err);
      });
      req.end();
    });
  }

  close(): void {
    this.#closed = true;
    for (const s of this.#open) s.destroy();
    this.#open.clear();
  }
}
