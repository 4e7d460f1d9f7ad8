/**
 * Every error failover-proxy hands to a caller is a {@link FailoverProxyError}
 * with a stable `code`. Match on `code`, never on `message`: messages may be
 * reworded, codes will not change. The list is in `docs/errors.md`.
 *
 * Like undici, each class is branded with a `Symbol.for(...)` so `instanceof`
 * still works when two copies of the package end up in one process (an app and
 * a plugin each bundling their own).
 *
 * @module
 */

const kBase = Symbol.for('failover-proxy.error');

/** Stable codes of every error this package raises. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNKNOWN_BACKEND'
  | 'DUPLICATE_BACKEND'
  | 'NO_HEALTHY_BACKEND'
  | 'CONNECT_TIMEOUT'
  | 'CONNECT_FAILED'
  | 'MAX_CONNECTIONS'
  | 'BACKEND_DOWN'
  | 'CLIENT_CLOSED'
  | 'POOL_CLOSED'
  | 'MEMBER_ALREADY_REGISTERED'
  | 'PROBE_CLOSED'
  | 'PROBE_TIMEOUT'
  | 'PROBE_CONNECT_FAILED'
  | 'PROBE_TLS_FAILED'
  | 'PROBE_BAD_RESPONSE'
  | 'PROBE_CHECK_FAILED'
  | 'PROBE_LOCAL_ERROR'
  | 'UPSTREAM_ERROR'

  | 'DISCOVERY_CLOSED'
  | 'DISCOVERY_SOURCE_FAILED'
  | 'KUBECONFIG_INVALID'
  | 'OPTIONAL_DEPENDENCY_MISSING';

/**
 * Base class of every error raised by failover-proxy.
 *
 * @example
 * ```ts
 * try { await pool.pin(socket); }
 * catch (err) {
 *   if (err instanceof FailoverProxyError && err.code === 'NO_HEALTHY_BACKEND') retryLater();
 * }
 * ```
 */
export class FailoverProxyError extends Error {
  /** A stable, machine-readable code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this === FailoverProxyError) {
      return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kBase] === true;
    }
    // Subclasses: brand check by code set on the prototype, so copies still match.
    const brand = (this.prototype as { [kBrand]?: symbol })[kBrand];
    return (
      typeof value === 'object' &&
      value !== null &&
      brand !== undefined &&
      (value as Record<symbol, unknown>)[brand] === true
    );
  }
}
Object.defineProperty(FailoverProxyError.prototype, kBase, { value: true });

const kBrand = Symbol('failover-proxy.brand-key');

/** Gives `ctor` a cross-copy brand, so `instanceof ctor` survives duplication of the package. */
function brand(ctor: { prototype: object }, name: string): void {
  const sym = Symbol.for(`failover-proxy.error.${name}`);
  Object.defineProperty(ctor.prototype, sym, { value: true });
  Object.defineProperty(ctor.prototype, kBrand, { value: sym });
}

/** A value passed by the caller is out of range or of the wrong type. */
export class InvalidArgumentError extends FailoverProxyError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}
brand(InvalidArgumentError, 'InvalidArgumentError');

/** The backend id is not in the pool. */
export class UnknownBackendError extends FailoverProxyError {
  constructor(readonly backendId: string) {
    super('UNKNOWN_BACKEND', `Unknown backend \`${backendId}\``);
  }
}
brand(UnknownBackendError, 'UnknownBackendError');

/** A backend with the same id is already in the pool. */
export class DuplicateBackendError extends FailoverProxyError {
  constructor(
    readonly backendId: string,
    /** What already holds it. */
    readonly holder: 'pool' | 'probe' = 'pool',
    detail = '',
  ) {
    super('DUPLICATE_BACKEND', `Backend \`${backendId}\` is already in the ${holder}${detail}`);
  }
}
brand(DuplicateBackendError, 'DuplicateBackendError');

/** Why no backend could be given to a connection. */
export type NoHealthyBackendReason = 'queue-disabled' | 'queue-full' | 'queue-timeout';

/**
 * No backend is up, and waiting did not help (or was not allowed). When backends
 * were up but every dial failed, the caller gets the last dial's error instead.
 */
export class NoHealthyBackendError extends FailoverProxyError {
  constructor(
    readonly reason: NoHealthyBackendReason,
    options?: { cause?: unknown },
  ) {
    super('NO_HEALTHY_BACKEND', `No healthy backend (${reason})`, options);
  }
}
brand(NoHealthyBackendError, 'NoHealthyBackendError');

/** Dialling a backend took longer than `connectTimeout`. */
export class ConnectTimeoutError extends FailoverProxyError {
  constructor(
    readonly backendId: string,
    readonly timeout: number,
  ) {
    super('CONNECT_TIMEOUT', `Connecting to backend \`${backendId}\` timed out after ${timeout} ms`);
  }
}
brand(ConnectTimeoutError, 'ConnectTimeoutError');

/** Dialling a backend failed (refused, unreachable, reset, TLS error). `cause` is the socket error. */
export class ConnectError extends FailoverProxyError {
  constructor(
    readonly backendId: string,
    options: { cause: unknown },
  ) {
    const detail = (options.cause as { code?: string; message?: string } | undefined)?.code ?? (options.cause as Error | undefined)?.message;
    super('CONNECT_FAILED', `Connecting to backend \`${backendId}\` failed${detail ? `: ${detail}` : ''}`, options);
  }
}
brand(ConnectError, 'ConnectError');

/**
 * The pool already holds `maxConnections` and the excess is refused. (A backend
 * at its own `maxConnections` is simply not picked.)
 */
export class MaxConnectionsError extends FailoverProxyError {
  constructor(readonly limit: number) {
    super('MAX_CONNECTIONS', `The pool holds its maximum of ${limit} connections`);
  }
}
brand(MaxConnectionsError, 'MaxConnectionsError');

/**
 * A connection was torn down because its backend left service (probe failure,
 * removal, drain deadline). Streams in flight on it fail with this error, so a
 * caller can tell "backend died, retry elsewhere" from a bug.
 */
export class BackendDownError extends FailoverProxyError {
  constructor(
    readonly backendId: string,
    readonly reason: string,
  ) {
    super('BACKEND_DOWN', `Backend \`${backendId}\` left service (${reason})`);
  }
}
brand(BackendDownError, 'BackendDownError');

/** The client went away while its upstream was still being chosen or dialled; the dial was cancelled. */
export class ClientClosedError extends FailoverProxyError {
  constructor(options?: { cause?: unknown }) {
    super('CLIENT_CLOSED', 'The client closed before an upstream was connected', options);
  }
}
brand(ClientClosedError, 'ClientClosedError');

/** The pool was closed; no new work is accepted. */
export class PoolClosedError extends FailoverProxyError {
  constructor() {
    super('POOL_CLOSED', 'The pool is closed');
  }
}
brand(PoolClosedError, 'PoolClosedError');

/**
 * The member is registered with another pool already. A member belongs to
 * one pool at most; that pool is left as it was.
 */
export class MemberRegisteredError extends FailoverProxyError {
  constructor(readonly memberId: string) {
    super('MEMBER_ALREADY_REGISTERED', `Member \`${memberId}\` is already registered with another pool`);
  }
}
brand(MemberRegisteredError, 'MemberRegisteredError');

/** The probe was stopped; it schedules nothing more. */
export class ProbeClosedError extends FailoverProxyError {
  constructor() {
    super('PROBE_CLOSED', 'The probe is stopped');
  }
}
brand(ProbeClosedError, 'ProbeClosedError');

/**
 * The layer of a check that failed, as HAProxy reports L4/L6/L7 results.
 * `local`: this process could not even try (out of descriptors, buffers,
 * local ports): such a result carries no verdict on the backend.
 */
export type CheckLayer = 'connect' | 'tls' | 'protocol' | 'timeout' | 'custom' | 'local';

/** The discovery layer (or a source, or an intent watcher) was closed; it applies nothing more. */
export class DiscoveryClosedError extends FailoverProxyError {
  constructor() {
    super('DISCOVERY_CLOSED', 'The discovery is closed');
  }
}
brand(DiscoveryClosedError, 'DiscoveryClosedError');

/**
 * A discovery source could not produce a backend list this time: a DNS
 * lookup failed or timed out, the Kubernetes API was unreachable or answered
 * with an error. The layer keeps the source's last good list (fail-static).
 * `reason` is a short stable word (`nxdomain`, `nodata`, `timeout`,
 * `unreachable`, `http-403`, `gone`, `silent`, `bad-response`).
 */
export class DiscoverySourceError extends FailoverProxyError {
  constructor(
    readonly source: string,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('DISCOVERY_SOURCE_FAILED', `Discovery source \`${source}\` failed (${reason}): ${message}`, options);
  }
}
brand(DiscoverySourceError, 'DiscoverySourceError');

/** A kubeconfig (or the in-cluster service account) could not be read or lacks what is needed. */
export class KubeconfigError extends FailoverProxyError {
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('KUBECONFIG_INVALID', `Kubeconfig \`${path}\`: ${message}`, options);
  }
}
brand(KubeconfigError, 'KubeconfigError');

/** A feature needs an optional package that is not installed (`yaml` for a YAML kubeconfig). */
export class OptionalDependencyError extends FailoverProxyError {
  constructor(
    readonly packageName: string,
    readonly feature: string,
    options?: { cause?: unknown },
  ) {
    super('OPTIONAL_DEPENDENCY_MISSING', `${feature} needs the optional package \`${packageName}\`: npm install ${packageName}`, options);
  }
}
brand(OptionalDependencyError, 'OptionalDependencyError');

const layerCodes = {
  connect: 'PROBE_CONNECT_FAILED',
  tls: 'PROBE_TLS_FAILED',
  protocol: 'PROBE_BAD_RESPONSE',
  timeout: 'PROBE_TIMEOUT',
  custom: 'PROBE_CHECK_FAILED',
  local: 'PROBE_LOCAL_ERROR',
} as const satisfies Record<CheckLayer, ErrorCode>;

/**
 * A health check failed. `layer` says where: the TCP connect, the TLS
 * handshake, the protocol (status or body), the timeout, or a custom check.
 */
export class CheckError extends FailoverProxyError {
  constructor(
    readonly layer: CheckLayer,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(layerCodes[layer], message, options);
  }
}
brand(CheckError, 'CheckError');

/**
 * An HTTP request placed on a backend failed there: its upstream socket
 * errored before or while the response came (`createHttpProxy`'s `onError`).
 * `cause` is the socket's error; `causeCode` its Node code (`ECONNRESET`...).
 */
export class UpstreamError extends FailoverProxyError {
  readonly causeCode: string | undefined;

  constructor(options: { cause: unknown }) {
    const causeCode = errorCode(options.cause);
    super('UPSTREAM_ERROR', `The upstream request failed${causeCode ? `: ${causeCode}` : ''}`, options);
    this.causeCode = causeCode;
  }
}
brand(UpstreamError, 'UpstreamError');

/** Node's socket error codes, when present, without trusting the shape of `err`. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The first code of `codes` found on `err` or in its `cause` chain (a few
 * links: a check wraps the socket's error once or twice), else `undefined`.
 *
 * @internal
 */
export function codeInChain(err: unknown, codes: ReadonlySet<string>): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const code = errorCode(current);
    if (code !== undefined && codes.has(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
