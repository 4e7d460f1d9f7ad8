/**
 * What a backend is: an address, an id, a weight, and whatever the caller
 * wants to carry along. Normalised in one place so every module sees the same
 * shape.
 *
 * @module
 */
import { isIP } from 'node:net';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { InvalidArgumentError } from './errors.js';
import * as v from './validate.js';

/**
 * TLS settings for dialling a backend (re-origination): the pool then speaks
 * TLS to the backend instead of passing the client's bytes through untouched.
 */
export type UpstreamTlsOptions = Pick<
  TlsConnectionOptions,
  'ca' | 'cert' | 'key' | 'pfx' | 'passphrase' | 'servername' | 'rejectUnauthorized' | 'ALPNProtocols' | 'minVersion' | 'maxVersion' | 'ciphers' | 'checkServerIdentity'
>;

/**
 * A backend as the caller describes it.
 */
export interface BackendSpec {
  /** Host name or IP address. */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  /**
   * Stable identifier used by every API and event.
   * @default `${host}:${port}` (`[host]:port` for IPv6)
   */
  readonly id?: string | undefined;
  /**
   * Relative weight for weighted pickers; `0` keeps the backend out of rotation.
   * @default 1
   */
  readonly weight?: number | undefined;
  /** SNI name for TLS health checks and TLS upstream connections. */
  readonly servername?: string | undefined;
  /**
   * Per-backend connection cap; when reached the backend is skipped by pickers.
   * @default Infinity
   */
  readonly maxConnections?: number | undefined;
  /** Dial this backend over TLS (overrides the pool's `tls`); `false` forces plain TCP. */
  readonly tls?: UpstreamTlsOptions | false | undefined;
  /** Free-form data for custom pickers, checks and logs (a zone, a label). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * A backend as the library holds it: every field resolved. Identity (`id`,
 * `host`, `port`, `servername`, `tls`) never changes; the tunables (`weight`,
 * `maxConnections`, `meta`) change only through `pool.update()` and are read
 * live from this same object.
 */
export interface Backend {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly servername: string | undefined;
  readonly maxConnections: number;
  readonly tls: UpstreamTlsOptions | false | undefined;
  readonly meta: Readonly<Record<string, unknown>>;
}

/** The tunables of a live backend, as `pool.update()` takes them. */
export interface BackendTunables {
  /** Relative weight; `0` keeps the backend out of rotation. */
  readonly weight?: number | undefined;
  /** Per-backend connection cap. */
  readonly maxConnections?: number | undefined;
  /** Free-form data (replaces the old `meta`). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** A spec, or `'host:port'` (`'[v6]:port'`) as written on a command line. */
export type BackendInput = BackendSpec | string;

const specKeys = ['host', 'port', 'id', 'weight', 'servername', 'maxConnections', 'tls', 'meta'] as const;

/** The default id of a backend: `host:port`, with brackets around IPv6 literals. */
export function backendId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// `10.0.0.1:6443` or `[::1]:6443` given as a host: one colon then digits, or
// brackets. A bare IPv6 literal (`::1`, `fd00::3`) has several colons and passes.
const hostWithPort = /^(?:\[[^\]]*\]|[^:]+):\d+$/;

// A DNS name: dot-separated labels of letters, digits, `-` and `_` (service
// names carry it), none starting or ending with `-`, at most 253 characters,
// an optional root dot. A name whose last label is all digits must be an IPv4
// address (no top-level domain is numeric), which refuses `999.1.1.1`.
const hostnameSyntax = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/**
 * Whether `host` is an IP address (IPv6 without brackets) or a DNS name.
 *
 * @internal
 */
export function validHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  if (!hostnameSyntax.test(host)) return false;
  return !/(?:^|\.)\d+\.?$/.test(host);
}

/**
 * Validates a spec (or a `'host:port'` string) and fills in its defaults.
 * Throws `INVALID_ARGUMENT`.
 *
 * @internal
 */
export function resolveBackend(input: BackendInput, name = 'backend'): Backend {
  const spec: BackendSpec = typeof input === 'string' ? parseHostPort(input, name) : input;
  const raw = v.object(name, spec);
  v.knownKeys(name, raw, specKeys);
  const host = v.string(`${name}.host`, spec.host);
  if (hostWithPort.test(host)) {
    throw v.invalid(`${name}.host`, 'a host name or IP address without a port (put the port in `port`)', host);
  }
  if (!validHost(host)) {
    throw v.invalid(`${name}.host`, 'an IP address (IPv6 without brackets) or a DNS name of letters, digits, `.`, `-` and `_`', host);
  }
  const port = v.integer(`${name}.port`, spec.port, 1, 65535);
  const id = spec.id === undefined ? backendId(host, port) : v.string(`${name}.id`, spec.id);
  const servername = spec.servername === undefined ? undefined : v.string(`${name}.servername`, spec.servername);
  if (spec.tls !== undefined && spec.tls !== false && (typeof spec.tls !== 'object' || spec.tls === null)) {
    throw v.invalid(`${name}.tls`, 'an object of TLS options or false', spec.tls);
  }
  const tunables = resolveTunables(spec, name);
  // Sealed, not frozen: the pool changes the tunables in place (`update()`),
  // so every holder of this object reads the live values.
  return Object.seal({
    id,
    host,
    port,
    weight: tunables.weight ?? 1,
    servername,
    maxConnections: tunables.maxConnections ?? Infinity,
    tls: spec.tls,
    meta: tunables.meta ?? Object.freeze({}),
  });
}

/**
 * Validates tunables; only the fields given are returned. Throws `INVALID_ARGUMENT`.
 *
 * @internal
 */
export function resolveTunables(tunables: BackendTunables, name: string): BackendTunables {
  const out: { weight?: number; maxConnections?: number; meta?: Readonly<Record<string, unknown>> } = {};
  if (tunables.weight !== undefined) out.weight = v.number(`${name}.weight`, tunables.weight, 0);
  if (tunables.maxConnections !== undefined) {
    out.maxConnections = v.integer(`${name}.maxConnections`, tunables.maxConnections, 1, Infinity);
  }
  if (tunables.meta !== undefined) out.meta = Object.freeze({ ...v.object(`${name}.meta`, tunables.meta) });
  return out;
}

/**
 * Whether two backends lead to the same place (id, address, SNI, TLS
 * settings): a change of any of these is a different backend.
 *
 * @internal
 */
export function sameIdentity(a: Backend, b: Backend): boolean {
  return a.id === b.id && a.host === b.host && a.port === b.port && a.servername === b.servername && sameTls(a.tls, b.tls);
}

function sameTls(a: Backend['tls'], b: Backend['tls']): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object') return false;
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}

/**
 * Parses `host:port` (or `[v6]:port`) as written on a command line.
 */
export function parseHostPort(text: string, name = 'address'): { host: string; port: number } {
  if (typeof text !== 'string') throw v.invalid(name, 'a HOST:PORT string', text);
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be HOST:PORT, got \`${text}\``);
  }
  return { host: (match[1] ?? match[2])!, port };
}

/**
 * What applying `next` to `backend` would change, field by field (empty when
 * nothing). `meta` is compared by value, as data.
 *
 * @internal
 */
export function tunablesDiff(backend: Backend, next: BackendTunables): { weight?: number; maxConnections?: number; meta?: Readonly<Record<string, unknown>> } {
  const diff: { weight?: number; maxConnections?: number; meta?: Readonly<Record<string, unknown>> } = {};
  if (next.weight !== undefined && next.weight !== backend.weight) diff.weight = next.weight;
  if (next.maxConnections !== undefined && next.maxConnections !== backend.maxConnections) diff.maxConnections = next.maxConnections;
  if (next.meta !== undefined && !sameData(next.meta, backend.meta)) diff.meta = next.meta;
  return diff;
}

/** Deep equality of plain data (what JSON can carry): key order does not matter. */
function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !sameData((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
