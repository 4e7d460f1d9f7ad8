/**
 * List and watch of one Kubernetes collection, as a reflector does it: a
 * list gives the objects and a resourceVersion; a watch from there (with
 * bookmarks) streams ADDED/MODIFIED/DELETED/BOOKMARK events as chunked JSON
 * lines. A 410 Gone (as a status or an ERROR event) means the version is too
 * old: list again. A watch that says nothing for `silence` ms (not even a
 * bookmark) is presumed cut: it is dropped, its route demoted, and the
 * collection listed again. Failures back off exponentially with jitter.
 *
 * @module
 */
import createDebug from 'debug';
import type { Clock } from '../clock.js';
import { DiscoverySourceError } from '../errors.js';
import type { KubeResponse, KubeTransport } from './kube-transport.js';

const log = createDebug('failover-proxy:discovery:kube');

/** An object with metadata, as the API returns it. */
export interface KubeObject {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly resourceVersion?: string } | undefined;
}

/** @internal */
export interface KubeWatchOptions<T extends KubeObject> {
  readonly name: string;
  readonly transport: KubeTransport;
  /** Collection path, without query. */
  readonly path: string;
  /** Query parameters for both list and watch (selectors). */
  readonly query: Readonly<Record<string, string>>;
  readonly clock: Clock;
  readonly silence: number;
  readonly backoff: { readonly base: number; readonly max: number };
  readonly random: () => number;
  /** The whole collection, after a list and after every event. */
  readonly changed: (objects: ReadonlyMap<string, T>) => void;
  readonly failed: (error: DiscoverySourceError) => void;
}

/** Counters of a watch. */
export interface KubeWatchStats {
  lists: number;
  watches: number;
  events: number;
  bookmarks: number;
  gone: number;
  silent: number;
  failures: number;
  resourceVersion: string | undefined;
  route: string | undefined;
}

/** @internal */
export class KubeWatch<T extends KubeObject> {
  readonly #o: KubeWatchOptions<T>;
  readonly #objects = new Map<string, T>();
  #rv: string | undefined;
  #closed = false;
  #timer: unknown;
  #silenceTimer: unknown;
  #attempt = 0;
  #current: KubeResponse | undefined;
  readonly stats: KubeWatchStats = { lists: 0, watches: 0, events: 0, bookmarks: 0, gone: 0, silent: 0, failures: 0, resourceVersion: undefined, route: undefined };

  constructor(options: KubeWatchOptions<T>) {
    this.#o = options;
  }

  start(): void {
    void this.#list();
  }

  #url(extra: Record<string, string>): string {
    const q = new URLSearchParams({ ...this.#o.query, ...extra });
    return `${this.#o.path}?${q.toString()}`;
  }

  #later(fn: () => void, ms: number): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      fn();
    }, ms);
  }

  #fail(reason: string, message: string, cause?: unknown): void {
    if (this.#closed) return;
    this.stats.failures++;
    this.#o.transport.demote();
    const { base, max } = this.#o.backoff;
    const delay = Math.min(max, base * 2 ** Math.min(this.#attempt, 20)) * (0.5 + this.#o.random() / 2);
    this.#attempt++;
    if (log.enabled) log('%s: %s (%s), again in %d ms', this.#o.name, reason, message, Math.round(delay));
    this.#o.failed(new DiscoverySourceError(this.#o.name, reason, message, { cause }));
    this.#later(() => void this.#list(), delay);
  }

  async #list(): Promise<void> {
    if (this.#closed) return;
    let res: KubeResponse;
    try {
      res = await this.#o.transport.get(this.#url({}));
    } catch (err) {
      this.#fail('unreachable', (err as Error).message, err);
      return;
    }
    this.stats.route = routeName(res);
    let body: string;
    try {
      body = await readAll(res, this.#o.clock, this.#o.silence);
    } catch (err) {
      this.#fail('unreachable', (err as Error).message, err);
      return;
    }
    if (this.#closed) return;
    const status = res.response.statusCode ?? 0;
    if (status !== 200) {
      this.#fail(`http-${status}`, body.slice(0, 200));
      return;
    }
    let list: { metadata?: { resourceVersion?: string }; items?: T[] };
    try {
      list = JSON.parse(body) as typeof list;
    } catch (err) {
      this.#fail('bad-response', 'list is not JSON', err);
      return;
    }
    this.stats.lists++;
    this.#attempt = 0;
    this.#objects.clear();
    for (const item of list.items ?? []) this.#objects.set(keyOf(item), item);
    this.#rv = list.metadata?.resourceVersion;
    this.stats.resourceVersion = this.#rv;
    this.#o.changed(this.#objects);
    void this.#watch();
  }

  async #watch(): Promise<void> {
    if (this.#closed) return;
    const timeoutSeconds = String(300 + Math.floor(this.#o.random() * 300));
    let res: KubeResponse;
    try {
      res = await this.#o.transport.get(
        this.#url({ watch: '1', allowWatchBookmarks: 'true', timeoutSeconds, ...(this.#rv === undefined ? {} : { resourceVersion: this.#rv }) }),
      );
    } catch (err) {
      this.#fail('unreachable', (err as Error).message, err);
      return;
    }
    if (this.#closed) {
      res.abort();
      return;
    }
    this.stats.route = routeName(res);
    const status = res.response.statusCode ?? 0;
    if (status === 410) {
      res.abort();
      this.stats.gone++;
      void this.#list();
      return;
    }
    if (status !== 200) {
      res.abort();
      this.#fail(`http-${status}`, 'watch refused');
      return;
    }
    this.stats.watches++;
    this.#current = res;
    let buffer = '';
    let done = false;
    const finish = (then: () => void): void => {
      if (done) return;
      done = true;
      this.#clearSilence();
      this.#current = undefined;
      res.abort();
      then();
    };
    this.#armSilence(() =>
      finish(() => {
        this.stats.silent++;
        this.#fail('silent', `no event or bookmark for ${this.#o.silence} ms`);
      }),
    );
    res.response.setEncoding('utf8');
    res.response.on('data', (chunk: string) => {
      if (done) return;
      this.#armSilence(() =>
        finish(() => {
          this.stats.silent++;
          this.#fail('silent', `no event or bookmark for ${this.#o.silence} ms`);
        }),
      );
      buffer += chunk;
      let nl: number;
      while (!done && (nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line !== '') this.#event(line, finish);
      }
    });
    res.response.once('error', (err) => finish(() => this.#fail('unreachable', err.message, err)));
    res.response.once('close', () =>
      finish(() => {
        // The server ended the watch (its timeout): watch again from where we are.
        this.#o.transport.promote();
        this.#later(() => void this.#watch(), 0);
      }),
    );
  }

  #event(line: string, finish: (then: () => void) => void): void {
    let ev: { type?: string; object?: T & { code?: number; reason?: string; metadata?: { resourceVersion?: string } } };
    try {
      ev = JSON.parse(line) as typeof ev;
    } catch (err) {
      finish(() => this.#fail('bad-response', 'watch event is not JSON', err));
      return;
    }
    const obj = ev.object;
    if (ev.type === 'ERROR') {
      if (obj?.code === 410) {
        this.stats.gone++;
        if (log.enabled) log('%s: 410 Gone at %s, listing again', this.#o.name, this.#rv);
        finish(() => void this.#list());
      } else finish(() => this.#fail(`http-${obj?.code ?? 'error'}`, obj?.reason ?? 'watch error'));
      return;
    }
    if (obj === undefined) return;
    const rv = obj.metadata?.resourceVersion;
    if (rv !== undefined) this.#rv = this.stats.resourceVersion = rv;
    if (ev.type === 'BOOKMARK') {
      this.stats.bookmarks++;
      return;
    }
    this.stats.events++;
    if (ev.type === 'ADDED' || ev.type === 'MODIFIED') this.#objects.set(keyOf(obj), obj);
    else if (ev.type === 'DELETED') this.#objects.delete(keyOf(obj));
    else return;
    this.#o.changed(this.#objects);
  }

  #armSilence(onSilent: () => void): void {
    this.#clearSilence();
    this.#silenceTimer = this.#o.clock.setTimeout(onSilent, this.#o.silence);
  }

  #clearSilence(): void {
    if (this.#silenceTimer !== undefined) this.#o.clock.clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#clearSilence();
    this.#current?.abort();
    this.#current = undefined;
  }
}

function keyOf(o: KubeObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

function routeName(res: KubeResponse): string {
  return res.route.kind === 'pool' ? 'pool' : `${res.route.kind} ${res.route.host}:${res.route.port}`;
}

/** The whole body, bounded by `silence` ms between chunks. */
function readAll(res: KubeResponse, clock: Clock, silence: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    let timer: unknown;
    const arm = (): void => {
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = clock.setTimeout(() => {
        res.abort();
        reject(new Error(`list silent for ${silence} ms`));
      }, silence);
    };
    arm();
    res.response.setEncoding('utf8');
    res.response.on('data', (c: string) => {
      body += c;
      arm();
    });
    res.response.once('end', () => {
      clock.clearTimeout(timer);
      resolve(body);
    });
    res.response.once('error', (err) => {
      clock.clearTimeout(timer);
      reject(err);
    });
    res.response.once('close', () => {
      clock.clearTimeout(timer);
      if (!res.response.complete) reject(new Error('list response cut short'));
    });
  });
}
