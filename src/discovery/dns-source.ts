/**
 * A discovery source from DNS: A/AAAA records of a name (with a port), or
 * the SRV records of a service name. Re-resolves when the answer's TTL runs
 * out, within a floor and a ceiling. As HAProxy's `hold nx` and
 * `hold timeout`: an NXDOMAIN (or a name with no records) and a resolver
 * that does not answer remove nothing for a hold period; after it, the name
 * counts as empty (and the layer still keeps its last good list: never empty).
 *
 * @module
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import createDebug from 'debug';
import { parseHostPort } from '../backend.js';
import { systemClock, type Clock } from '../clock.js';
import { DiscoveryClosedError, DiscoverySourceError } from '../errors.js';
import * as v from '../validate.js';
import type { DiscoveredBackend, DiscoverySink, DiscoverySource } from './source.js';
import { MAX_TIMER_MS } from '../limits.js';

const log = createDebug('failover-proxy:discovery:dns');

/** Options of {@link DnsSource}. */
export interface DnsSourceOptions {
  /** The name to resolve: a host name (with `port`) for A/AAAA, or `_service._proto.name` for SRV. */
  readonly name: string;
  /** `'a'` (A and/or AAAA, see `family`) or `'srv'`. @default 'a' */
  readonly type?: 'a' | 'srv' | undefined;
  /** Port of every address (A/AAAA only; SRV records carry theirs). */
  readonly port?: number | undefined;
  /** Address families for `type: 'a'`: 4 (A), 6 (AAAA) or 0 (both). @default 4 */
  readonly family?: 0 | 4 | 6 | undefined;
  /** Resolver addresses, `HOST` or `HOST:PORT`; the system's when omitted. */
  readonly servers?: readonly string[] | undefined;
  /** Shortest interval between resolutions, in ms (TTL 0 answers). @default 1000 */
  readonly ttlFloor?: number | undefined;
  /** Longest interval between resolutions, in ms (whatever the TTL). @default 60000 */
  readonly ttlCeiling?: number | undefined;
  /** How long an NXDOMAIN or an empty answer removes nothing, in ms. @default 30000 */
  readonly holdNx?: number | undefined;
  /** How long a resolver that does not answer removes nothing, in ms. @default 30000 */
  readonly holdTimeout?: number | undefined;
  /** Per-try query timeout, in ms. @default 2000 */
  readonly timeout?: number | undefined;
  /** Tries per query. @default 2 */
  readonly tries?: number | undefined;
  /** Retry interval after a failed resolution, in ms. @default ttlFloor */
  readonly retryInterval?: number | undefined;
  /** Source name (backends' `meta.source`). @default `dns:NAME:PORT` or `srv:NAME` */
  readonly sourceName?: string | undefined;
  /** Time source. @default systemClock */
  readonly clock?: Clock | undefined;
}

interface Answer {
  readonly backends: DiscoveredBackend[];
  /** Smallest TTL in the answer, in seconds; undefined when the records carry none. */
  readonly ttl: number | undefined;
}


/**
 * Re-resolves one DNS name and reports its addresses.
 *
 * @example
 * ```ts
 * new DnsSource({ name: 'apiservers.example.internal', port: 6443, servers: ['10.0.0.53:53'] });
 * new DnsSource({ name: '_https._tcp.apiservers.example.internal', type: 'srv' });
 * ```
 */
export class DnsSource implements DiscoverySource {
  readonly name: string;
  readonly #query: string;
  readonly #type: 'a' | 'srv';
  readonly #port: number;
  readonly #family: 0 | 4 | 6;
  readonly #resolver: Resolver;
  readonly #clock: Clock;
  readonly #floor: number;
  readonly #ceiling: number;
  readonly #holdNx: number;
  readonly #holdTimeout: number;
  readonly #retry: number;
  #sink: DiscoverySink | undefined;
  #timer: unknown;
  #closed = false;
  #lastGoodAt = 0;
  #resolutions = 0;
  #failures = 0;
  #held = 0;
  #lastTtl: number | undefined;
  #nextDelay = 0;

  constructor(options: DnsSourceOptions) {
    const raw = v.object('options', options);
    v.knownKeys('options', raw, ['name', 'type', 'port', 'family', 'servers', 'ttlFloor', 'ttlCeiling', 'holdNx', 'holdTimeout', 'timeout', 'tries', 'retryInterval', 'sourceName', 'clock']);
    this.#query = v.string('name', options.name);
    this.#type = v.oneOf('type', options.type ?? 'a', ['a', 'srv']);
    this.#port = this.#type === 'a' ? v.integer('port', options.port, 1, 65535) : 0;
    if (this.#type === 'srv' && options.port !== undefined) throw v.invalid('port', 'undefined for SRV (the records carry the port)', options.port);
    const family = options.family ?? 4;
    if (family !== 0 && family !== 4 && family !== 6) throw v.invalid('family', '0, 4 or 6', family);
    this.#family = family;
    this.#floor = v.integer('ttlFloor', options.ttlFloor ?? 1000, 0, MAX_TIMER_MS);
    this.#ceiling = v.integer('ttlCeiling', options.ttlCeiling ?? 60_000, Math.max(1, this.#floor), MAX_TIMER_MS);
    this.#holdNx = v.integer('holdNx', options.holdNx ?? 30_000, 0, MAX_TIMER_MS);
    this.#holdTimeout = v.integer('holdTimeout', options.holdTimeout ?? 30_000, 0, MAX_TIMER_MS);
    this.#retry = v.integer('retryInterval', options.retryInterval ?? Math.max(this.#floor, 100), 1, MAX_TIMER_MS);
    const timeout = v.integer('timeout', options.timeout ?? 2000, 1, MAX_TIMER_MS);
    const tries = v.integer('tries', options.tries ?? 2, 1, 10);
    this.#clock = options.clock ?? systemClock;
    this.name =
      options.sourceName === undefined ? (this.#type === 'srv' ? `srv:${this.#query}` : `dns:${this.#query}:${this.#port}`) : v.string('sourceName', options.sourceName);
    this.#resolver = new Resolver({ timeout, tries });
    if (options.servers !== undefined) {
      if (!Array.isArray(options.servers) || options.servers.length === 0) throw v.invalid('servers', 'a non-empty array of HOST or HOST:PORT', options.servers);
      this.#resolver.setServers(options.servers.map((s, i) => normaliseServer(v.string(`servers[${i}]`, s), `servers[${i}]`)));
    }
  }

  start(sink: DiscoverySink): void {
    if (this.#closed) throw new DiscoveryClosedError();
    if (this.#sink !== undefined) return;
    this.#sink = sink;
    this.#lastGoodAt = this.#clock.now();
    void this.#tick();
  }

  /** Resolves once now (tests, `SIGHUP`); the periodic schedule carries on from here. */
  async refresh(): Promise<void> {
    if (this.#closed || this.#sink === undefined) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#tick();
  }

  async #tick(): Promise<void> {
    let delay: number;
    try {
      const answer = await this.#resolve();
      if (this.#closed) return;
      this.#resolutions++;
      this.#lastGoodAt = this.#clock.now();
      this.#lastTtl = answer.ttl;
      this.#sink!.update(answer.backends);
      delay = clamp((answer.ttl ?? 0) * 1000, this.#floor, this.#ceiling);
    } catch (err) {
      if (this.#closed) return;
      this.#failures++;
      const error = classify(this.name, err);
      const hold = error.reason === 'timeout' || error.reason === 'unreachable' ? this.#holdTimeout : this.#holdNx;
      const heldFor = this.#clock.now() - this.#lastGoodAt;
      if (heldFor < hold) {
        this.#held++;
        if (log.enabled) log('%s: %s, held (%d of %d ms)', this.name, error.reason, heldFor, hold);
        this.#sink!.fail(error);
      } else {
        // Past the hold the name has no addresses (HAProxy removes the servers);
        // the layer still keeps the last good list, and says so.
        if (log.enabled) log('%s: %s for %d ms, past the hold: empty', this.name, error.reason, heldFor);
        this.#sink!.fail(error);
        this.#sink!.update([]);
      }
      delay = this.#retry;
    }
    if (this.#closed) return;
    this.#nextDelay = delay;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#tick();
    }, delay);
  }

  async #resolve(): Promise<Answer> {
    if (this.#type === 'srv') {
      const records = await this.#resolver.resolveSrv(this.#query);
      const out: DiscoveredBackend[] = [];
      let ttl: number | undefined;
      for (const r of records) {
        let hosts: { host: string; ttl: number | undefined }[];
        if (isIP(r.name) !== 0) hosts = [{ host: r.name, ttl: undefined }];
        else {
          try {
            hosts = (await this.#addresses(r.name)).map((a) => ({ host: a.address, ttl: a.ttl }));
          } catch {
            continue; // a target without addresses contributes nothing
          }
        }
        for (const h of hosts) {
          if (h.ttl !== undefined) ttl = ttl === undefined ? h.ttl : Math.min(ttl, h.ttl);
          out.push({ host: h.host, port: r.port, weight: r.weight > 0 ? r.weight : 1, meta: { target: r.name, priority: r.priority } });
        }
      }
      if (records.length > 0 && out.length === 0) throw Object.assign(new Error(`no SRV target of ${this.#query} resolves`), { code: 'ENODATA' });
      return { backends: sortBackends(out), ttl };
    }
    const addresses = await this.#addresses(this.#query);
    const ttl = addresses.reduce<number | undefined>((m, a) => (m === undefined ? a.ttl : Math.min(m, a.ttl)), undefined);
    return { backends: sortBackends(addresses.map((a) => ({ host: a.address, port: this.#port }))), ttl };
  }

  async #addresses(name: string): Promise<{ address: string; ttl: number }[]> {
    if (this.#family === 4) return this.#resolver.resolve4(name, { ttl: true });
    if (this.#family === 6) return this.#resolver.resolve6(name, { ttl: true });
    const [a, aaaa] = await Promise.allSettled([this.#resolver.resolve4(name, { ttl: true }), this.#resolver.resolve6(name, { ttl: true })]);
    const out = [...(a.status === 'fulfilled' ? a.value : []), ...(aaaa.status === 'fulfilled' ? aaaa.value : [])];
    if (out.length === 0) throw a.status === 'rejected' ? a.reason : aaaa.status === 'rejected' ? aaaa.reason : new Error('no address');
    return out;
  }

  stats(): Readonly<Record<string, unknown>> {
    return { resolutions: this.#resolutions, failures: this.#failures, held: this.#held, ttl: this.#lastTtl, nextIn: this.#nextDelay };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resolver.cancel();
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}

function sortBackends(list: DiscoveredBackend[]): DiscoveredBackend[] {
  return list.sort((a, b) => (a.host === b.host ? a.port - b.port : a.host < b.host ? -1 : 1));
}

/** `HOST`, `HOST:PORT`, `[V6]:PORT` as `Resolver#setServers` takes them. */
function normaliseServer(text: string, name: string): string {
  if (isIP(text) !== 0) return text;
  const { host, port } = parseHostPort(text, name);
  if (isIP(host) === 0) throw v.invalid(name, 'an IP address, optionally with :PORT', text);
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A resolver error as a stable reason: NXDOMAIN and NODATA are held by `holdNx`, the rest by `holdTimeout`. */
function classify(source: string, err: unknown): DiscoverySourceError {
  const code = (err as { code?: string } | undefined)?.code;
  const reason =
    code === 'ENOTFOUND' ? 'nxdomain' : code === 'ENODATA' ? 'nodata' : code === 'ETIMEOUT' ? 'timeout' : code === 'ECONNREFUSED' ? 'unreachable' : code === 'ECANCELLED' ? 'cancelled' : 'error';
  return new DiscoverySourceError(source, reason, (err as Error | undefined)?.message ?? String(err), { cause: err });
}
