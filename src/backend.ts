/**
 * What a backend is: an address, an id, a weight, and whatever the caller
 * wants to carry along. Normalised in one place so every module sees the same
 * shape.
 *
 * @module
 */
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
 *
 * @example
 * ```ts
 * pool.add({ host: '10.0.0.3', port: 6443, id: 'apiserver-3', weight: 2 });
 * ```
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

/** A backend as the library holds it: every field resolved. */
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

/**
 * Where a backend stands with the pool.
 * - `up`: picked for new connections.
 * - `down`: not picked; its connections were torn down when it went down.
 * - `draining`: not picked; existing connections may finish until a deadline.
 * - `maintenance`: taken out by an operator; probe verdicts are ignored until `markUp`.
 */
export type BackendState = 'up' | 'down' | 'draining' | 'maintenance';

const specKeys = ['host', 'port', 'id', 'weight', 'servername', 'maxConnections', 'tls', 'meta'] as const;

/** The default id of a backend: `host:port`, with brackets around IPv6 literals. */
export function backendId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Validates a spec and fills in its defaults. Throws `INVALID_ARGUMENT`. */
export function resolveBackend(spec: BackendSpec, name = 'backend'): Backend {
  const raw = v.object(name, spec);
  v.knownKeys(name, raw, specKeys);
  const host = v.string(`${name}.host`, spec.host);
  const port = v.integer(`${name}.port`, spec.port, 1, 65535);
  const id = spec.id === undefined ? backendId(host, port) : v.string(`${name}.id`, spec.id);
  const weight = spec.weight === undefined ? 1 : v.number(`${name}.weight`, spec.weight, 0);
  const servername = spec.servername === undefined ? undefined : v.string(`${name}.servername`, spec.servername);
  const maxConnections =
    spec.maxConnections === undefined ? Infinity : v.integer(`${name}.maxConnections`, spec.maxConnections, 1, Infinity);
  if (spec.tls !== undefined && spec.tls !== false && (typeof spec.tls !== 'object' || spec.tls === null)) {
    throw v.invalid(`${name}.tls`, 'an object of TLS options or false', spec.tls);
  }
  if (spec.meta !== undefined) v.object(`${name}.meta`, spec.meta);
  return Object.freeze({
    id,
    host,
    port,
    weight,
    servername,
    maxConnections,
    tls: spec.tls,
    meta: Object.freeze({ ...spec.meta }),
  });
}

/**
 * Parses `host:port` (or `[v6]:port`) as written on a command line.
 *
 * @example
 * ```ts
 * parseHostPort('127.0.0.1:6443'); // { host: '127.0.0.1', port: 6443 }
 * ```
 */
export function parseHostPort(text: string, name = 'address'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be HOST:PORT, got \`${text}\``);
  }
  return { host: (match[1] ?? match[2])!, port };
}
