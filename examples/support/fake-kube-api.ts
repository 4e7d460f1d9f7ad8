/**
 * A fake Kubernetes API server for tests: HTTPS (the fixtures' server
 * certificate) on one port of one or more loopback addresses, following the
 * list/watch contract closely enough for a reflector: lists carry a
 * resourceVersion; a watch from a version streams chunked JSON lines
 * (ADDED, MODIFIED, DELETED, BOOKMARK) and answers a version older than its
 * history with an ERROR event carrying a 410 Status; label selectors
 * (`k=v`) and field selectors (`metadata.name=x`) filter. Faults: `stop()`
 * (unreachable), `silenceWatches()` (open watches stay open and say nothing),
 * `compact()` (forget history: old versions get 410), `bookmark()`.
 *
 * @module
 */
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { loadCerts } from './certs.js';

/** An object of any kind, with metadata. */
export interface FakeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface Watcher {
  readonly collection: string;
  readonly res: ServerResponse;
  readonly filter: (o: FakeObject) => boolean;
  silent: boolean;
}

interface HistoryEvent {
  readonly rv: number;
  readonly collection: string;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: FakeObject;
}

/** Options of {@link FakeKubeApi.start}. */
export interface FakeKubeApiOptions {
  /** Loopback addresses to listen on, all on one port. @default ['127.0.0.1'] */
  readonly hosts?: readonly string[] | undefined;
  /** Bearer token required of every request; none when omitted. */
  readonly token?: string | undefined;
  /** Send a BOOKMARK on every open watch this often, in ms (a real apiserver does about once a minute); 0 never. @default 0 */
  readonly bookmarkEvery?: number | undefined;
}

/** Collection path of namespaced EndpointSlices. */
export const endpointSlicesPath = (ns: string): string => `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;
/** Collection path of namespaced ConfigMaps. */
export const configMapsPath = (ns: string): string => `/api/v1/namespaces/${ns}/configmaps`;

/** The fake API server. */
export class FakeKubeApi {
  readonly #servers: Server[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #collections = new Map<string, Map<string, FakeObject>>();
  readonly #watchers = new Set<Watcher>();
  #history: HistoryEvent[] = [];
  #oldest = 1;
  #rv = 1;
  #port = 0;
  #running = false;
  readonly #hosts: readonly string[];
  readonly #token: string | undefined;
  readonly #bookmarkEvery: number;
  #bookmarkTimer: NodeJS.Timeout | undefined;
  /** Requests served: lists and watches. */
  readonly counts = { lists: 0, watches: 0, unauthorized: 0 };

  private constructor(options: FakeKubeApiOptions) {
    this.#hosts = options.hosts ?? ['127.0.0.1'];
    this.#token = options.token;
    this.#bookmarkEvery = options.bookmarkEvery ?? 0;
  }

  /** Starts listening. */
  static async start(options: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const api = new FakeKubeApi(options);
    await api.resume();
    return api;
  }

  get port(): number {
    return this.#port;
  }

  /** Listening again after `stop()` (same port). */
  async resume(): Promise<void> {
    if (this.#running) return;
    const certs = loadCerts();
    for (const host of this.#hosts) {
      const server = createServer({ cert: certs.serverCert, key: certs.serverKey }, (req, res) => this.#handle(req, res));
      server.on('connection', (s: Socket) => {
        this.#sockets.add(s);
        s.once('close', () => this.#sockets.delete(s));
      });
      server.on('tlsClientError', () => {});
      server.listen(this.#port, host);
      await once(server, 'listening');
      this.#port = (server.address() as AddressInfo).port;
      this.#servers.push(server);
    }
    this.#running = true;
    if (this.#bookmarkEvery > 0) this.#bookmarkTimer = setInterval(() => this.bookmark(), this.#bookmarkEvery).unref();
  }

  /** Closes every listener and connection: the API is unreachable. */
  async stop(): Promise<void> {
    this.#running = false;
    clearInterval(this.#bookmarkTimer);
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
    for (const s of this.#sockets) s.destroy();
    await Promise.all(this.#servers.map((s) => new Promise((r) => s.close(r))));
    this.#servers.length = 0;
  }

  /** Creates or replaces an object in a collection, and tells the watchers. */
  put(collection: string, object: FakeObject): FakeObject {
    const objects = this.#collection(collection);
    const type = objects.has(object.metadata.name) ? 'MODIFIED' : 'ADDED';
    const stored = structuredClone(object);
    stored.metadata.resourceVersion = String(++this.#rv);
    objects.set(object.metadata.name, stored);
    this.#publish({ rv: this.#rv, collection, type, object: stored });
    return stored;
  }

  /** Deletes an object, and tells the watchers. */
  delete(collection: string, name: string): void {
    const objects = this.#collection(collection);
    const old = objects.get(name);
    if (old === undefined) return;
    objects.delete(name);
    const gone = structuredClone(old);
    gone.metadata.resourceVersion = String(++this.#rv);
    this.#publish({ rv: this.#rv, collection, type: 'DELETED', object: gone });
  }

  /** Forgets the history: a watch from an older version gets 410 Gone, and open watches get it now. */
  compact(): void {
    this.#history = [];
    this.#oldest = this.#rv + 1;
    for (const w of this.#watchers) {
      w.res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } })}\n`);
    }
    this.#watchers.clear();
  }

  /** A BOOKMARK at the current version on every open watch. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.silent) w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: String(this.#rv) } } })}\n`);
    }
  }

  /** Open watches stay open and never say anything again (new ones work). */
  silenceWatches(): void {
    for (const w of this.#watchers) w.silent = true;
  }

  /** Open (not silenced) watches. */
  get watching(): number {
    let n = 0;
    for (const w of this.#watchers) if (!w.silent) n++;
    return n;
  }

  #collection(path: string): Map<string, FakeObject> {
    let c = this.#collections.get(path);
    if (c === undefined) this.#collections.set(path, (c = new Map()));
    return c;
  }

  #publish(event: HistoryEvent): void {
    this.#history.push(event);
    for (const w of this.#watchers) {
      if (w.silent || w.collection !== event.collection || !w.filter(event.object)) continue;
      w.res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
    }
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake');
    const status = (code: number, reason: string): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code }));
    };
    if (this.#token !== undefined && req.headers.authorization !== `Bearer ${this.#token}`) {
      this.counts.unauthorized++;
      status(401, 'Unauthorized');
      return;
    }
    if (req.method !== 'GET') return status(405, 'MethodNotAllowed');
    const collection = url.pathname;
    const filter = selectorFilter(url.searchParams.get('labelSelector'), url.searchParams.get('fieldSelector'));
    const objects = Array.from(this.#collection(collection).values()).filter(filter);
    if (url.searchParams.get('watch') !== '1' && url.searchParams.get('watch') !== 'true') {
      this.counts.lists++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: String(this.#rv) }, items: objects }));
      return;
    }
    this.counts.watches++;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const from = Number(url.searchParams.get('resourceVersion') ?? this.#rv);
    if (from + 1 < this.#oldest) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } })}\n`);
      return;
    }
    for (const e of this.#history) {
      if (e.rv > from && e.collection === collection && filter(e.object)) res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
    }
    const watcher: Watcher = { collection, res, filter, silent: false };
    this.#watchers.add(watcher);
    res.once('close', () => this.#watchers.delete(watcher));
  }
}

function selectorFilter(labels: string | null, fields: string | null): (o: FakeObject) => boolean {
  const pairs = (s: string | null): [string, string][] =>
    (s ?? '')
      .split(',')
      .filter((x) => x.includes('='))
      .map((x) => x.split('=', 2) as [string, string]);
  const l = pairs(labels);
  const f = pairs(fields);
  return (o) => l.every(([k, v]) => o.metadata.labels?.[k] === v) && f.every(([k, v]) => (k === 'metadata.name' ? o.metadata.name === v : k === 'metadata.namespace' ? o.metadata.namespace === v : false));
}

/** An EndpointSlice of the `kubernetes` Service, schema `discovery.k8s.io/v1`. */
export function apiserverSlice(
  name: string,
  endpoints: readonly { address: string; ready?: boolean; serving?: boolean; terminating?: boolean }[],
  port: number,
): FakeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({
      addresses: [e.address],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
    })),
    ports: [{ name: 'https', port, protocol: 'TCP' }],
  };
}
