/**
 * The TLS handshake check, and the TLS dial the HTTPS check reuses.
 *
 * @module
 */
import { connect, createSecureContext, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import createDebug from 'debug';
import type { Backend } from '../backend.js';
import { InvalidArgumentError } from '../errors.js';
import { servernameFor } from '../servername.js';
import * as v from '../validate.js';
import { abortError, type CheckContext, type CheckFunction } from './check.js';
import { superviseSocket } from './socket-supervision.js';

/**
 * TLS settings of the `tls` and `https` checks. Verification is on unless
 * `rejectUnauthorized: false` is given.
 */
export interface TlsCheckOptions {
  /**
   * SNI name, also the name the certificate is verified against.
   * @default backend.servername, else backend.host when it is a name (no SNI for an IP address, which is then verified against the IP SANs)
   */
  readonly servername?: string | undefined;
  /**
   * Trusted CA certificates (PEM).
   * @default Node's bundled root certificates
   */
  readonly ca?: ConnectionOptions['ca'];
  /** Client certificate chain (PEM), for backends that require mutual TLS. */
  readonly cert?: ConnectionOptions['cert'];
  /** Client private key (PEM), with `cert`. */
  readonly key?: ConnectionOptions['key'];
  /** Passphrase of `key`. */
  readonly passphrase?: string | undefined;
  /**
   * Verify the backend's certificate chain and name. Only turn this off for a
   * backend whose identity does not matter to the check.
   * @default true
   */
  readonly rejectUnauthorized?: boolean | undefined;
}

/**
 * A TLS check as written in options.
 */
export interface TlsCheckSpec extends TlsCheckOptions {
  readonly type: 'tls';
}

/** The option names of {@link TlsCheckOptions}, for unknown-key checks. @internal */
export const tlsOptionKeys = ['servername', 'ca', 'cert', 'key', 'passphrase', 'rejectUnauthorized'] as const;

/** {@link TlsCheckOptions} validated, with `rejectUnauthorized` resolved. @internal */
export interface ResolvedTlsOptions extends TlsCheckOptions {
  readonly rejectUnauthorized: boolean;
  /**
   * Built once per check: passing `ca`/`cert`/`key` to every `tls.connect`
   * would parse the PEMs and build a new OpenSSL context on every check, which
   * dominated the CPU cost of probing many backends.
   */
  readonly secureContext: SecureContext;
  /**
   * The last TLS session of each backend, resumed on its next check (as
   * HAProxy does for `check-ssl`): a resumed handshake skips the certificate
   * chain work. Dropped when a check's socket fails, so a bad session is never
   * retried.
   */
  readonly sessions: Map<string, Buffer>;
}

const log = createDebug('failover-proxy:probe');

/** Sessions kept at most per check; past it the cache starts over (backends churned a lot). */
const MAX_SESSIONS = 10_000;

function pem(name: string, value: unknown): void {
  if (value === undefined) return;
  const ok = (x: unknown): boolean => typeof x === 'string' || Buffer.isBuffer(x) || (typeof x === 'object' && x !== null && 'pem' in x);
  if (!(ok(value) || (Array.isArray(value) && value.length > 0 && value.every(ok)))) {
    throw v.invalid(name, 'a PEM string or Buffer (or an array of them)', value);
  }
}

/**
 * Validates the TLS part of a `tls` or `https` check. Throws `INVALID_ARGUMENT`.
 *
 * @internal
 */
export function resolveTlsOptions(options: TlsCheckOptions, name: string): ResolvedTlsOptions {
  if (options.servername !== undefined) v.string(`${name}.servername`, options.servername);
  pem(`${name}.ca`, options.ca);
  pem(`${name}.cert`, options.cert);
  pem(`${name}.key`, options.key);
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new InvalidArgumentError(`Expected \`${name}.cert\` and \`${name}.key\` to be given together, got only \`${name}.${options.cert === undefined ? 'key' : 'cert'}\``);
  }
  if (options.passphrase !== undefined) v.string(`${name}.passphrase`, options.passphrase, { empty: true });
  const rejectUnauthorized = v.boolean(`${name}.rejectUnauthorized`, options.rejectUnauthorized ?? true);
  // Said once, when the check is built, not on every check it runs.
  if (!rejectUnauthorized) log('TLS verification is off for this check (rejectUnauthorized: false): backends\' certificates are not checked');
  const contextOptions: Parameters<typeof createSecureContext>[0] = {};
  if (options.ca !== undefined) contextOptions.ca = options.ca;
  if (options.cert !== undefined) contextOptions.cert = options.cert;
  if (options.key !== undefined) contextOptions.key = options.key;
  if (options.passphrase !== undefined) contextOptions.passphrase = options.passphrase;
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext(contextOptions);
  } catch (err) {
    // A malformed PEM or a key that does not match its certificate.
    throw new InvalidArgumentError(`Invalid TLS material in \`${name}\`: ${(err as Error).message}`);
  }
  return Object.freeze({ ...options, rejectUnauthorized, secureContext, sessions: new Map<string, Buffer>() });
}

/**
 * The SNI name a check sends to `backend`; `undefined` for an IP address
 * without a configured name (SNI cannot carry an IP address).
 *
 * @internal
 */
export function tlsServername(backend: Backend, options: TlsCheckOptions): string | undefined {
  return servernameFor(backend, options.servername);
}

/**
 * Starts a TLS connection to `backend` with the check's settings.
 *
 * @internal
 */
export function dialTls(backend: Backend, options: ResolvedTlsOptions, alpn?: readonly string[]): TLSSocket {
  const servername = tlsServername(backend, options);
  const { sessions } = options;
  const sessionKey = `${backend.id}\0${servername ?? ''}`;
  const connection: ConnectionOptions = {
    host: backend.host,
    port: backend.port,
    rejectUnauthorized: options.rejectUnauthorized,
    secureContext: options.secureContext,
  };
  // Absent rather than undefined: Node reads a present key as a setting.
  if (servername !== undefined) connection.servername = servername;
  if (alpn !== undefined) connection.ALPNProtocols = [...alpn];
  const session = sessions.get(sessionKey);
  if (session !== undefined) connection.session = session;
  const socket = connect(connection);
  socket.on('session', (next: Buffer) => {
    if (sessions.size >= MAX_SESSIONS && !sessions.has(sessionKey)) sessions.clear();
    sessions.set(sessionKey, next);
  });
  socket.once('error', () => sessions.delete(sessionKey));
  return socket;
}

/**
 * Creates the TLS check: it passes once a TLS handshake with the backend
 * completes (chain and name verified unless `rejectUnauthorized: false`), then
 * closes the connection. It fails at layer `connect` (the TCP dial), `tls`
 * (handshake, certificate, name) or `timeout`.
 *
 * A TLS 1.3 server that rejects the client certificate says so only after the
 * client has finished its side of the handshake, so this check can pass while
 * the certificate is refused; use an `https` check to test mutual TLS.
 *
 * @example
 * ```ts
 * const check = tlsCheck({ ca: readFileSync('ca.crt') });
 * await check(backend, { signal: AbortSignal.timeout(1000) });
 * ```
 */
export function tlsCheck(options: TlsCheckOptions = {}): CheckFunction {
  const raw = v.object('check', options);
  v.knownKeys('check', raw, tlsOptionKeys);
  const resolved = resolveTlsOptions(options, 'check');
  return (backend: Backend, { signal }: CheckContext): Promise<void> => {
    if (signal.aborted) return Promise.reject(abortError(signal));
    const socket = dialTls(backend, resolved);
    return superviseSocket(socket, signal, backend.id, (supervision) => {
      socket.once('secureConnect', () => supervision.finish());
    });
  };
}
