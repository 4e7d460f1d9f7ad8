/**
 * What a health check is — an async function of a backend and an abort
 * signal — and how a check written in options becomes one.
 *
 * @module
 */
import type { Backend } from '../backend.js';
import { CheckError } from '../errors.js';
import * as v from '../validate.js';
import { httpCheck, httpsCheck, type HttpCheckSpec, type HttpsCheckSpec } from './http.js';
import { abortError, tcpCheck } from './tcp.js';
import { tlsCheck, type TlsCheckSpec } from './tls.js';

/**
 * What a check is given besides the backend.
 *
 * @example
 * ```ts
 * const context: CheckContext = { signal: AbortSignal.timeout(1000) };
 * ```
 */
export interface CheckContext {
  /**
   * Fires when the check must stop (its timeout, or the probe stopping). A
   * check must then release everything it holds and settle.
   */
  readonly signal: AbortSignal;
}

/**
 * A health check: resolves when the backend passes, rejects when it fails.
 * Built-in checks reject with a {@link CheckError} whose `layer` says where
 * the failure happened.
 *
 * @example
 * ```ts
 * const check: CheckFunction = async (backend, { signal }) => {
 *   const res = await fetch(`http://${backend.host}:${backend.port}/ping`, { signal });
 *   if (!res.ok) throw new Error(`status ${res.status}`);
 * };
 * ```
 */
export type CheckFunction = (backend: Backend, context: CheckContext) => Promise<void>;

/**
 * The TCP check as written in options: connect, then close.
 *
 * @example
 * ```ts
 * new HealthProbe({ check: { type: 'tcp' } });
 * ```
 */
export interface TcpCheckSpec {
  readonly type: 'tcp';
}

/**
 * A check as written in options: a built-in check by `type`, or a function.
 *
 * @example
 * ```ts
 * const spec: CheckSpec = { type: 'https', path: '/readyz', ca: readFileSync('ca.crt') };
 * ```
 */
export type CheckSpec = TcpCheckSpec | TlsCheckSpec | HttpCheckSpec | HttpsCheckSpec | CheckFunction;

const types = ['tcp', 'tls', 'http', 'https'] as const;

/**
 * Wraps a caller's check function so it behaves like a built-in one: a throw
 * (or a synchronous throw) becomes a `CheckError` with layer `custom` unless it
 * already is a `CheckError`, and the wrapper settles as soon as the signal
 * fires even if the function ignores it (its late outcome is then dropped).
 *
 * @example
 * ```ts
 * const check = customCheck(async (backend, { signal }) => { await ping(backend, signal); });
 * ```
 */
export function customCheck(fn: CheckFunction): CheckFunction {
  v.func('check', fn);
  return (backend, context) =>
    new Promise<void>((resolve, reject) => {
      const { signal } = context;
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = (): void => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      new Promise<void>((run) => run(fn(backend, context))).then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (err instanceof CheckError) reject(err);
          else if (signal.aborted) reject(abortError(signal));
          else {
            const detail = err instanceof Error ? err.message : String(err);
            reject(new CheckError('custom', `Custom check of \`${backend.id}\` failed: ${detail}`, { cause: err }));
          }
        },
      );
    });
}

/**
 * Validates a check spec and returns the check function it describes. Throws
 * `INVALID_ARGUMENT` naming the faulty option (`check.path`, `check.expect`…).
 *
 * @example
 * ```ts
 * const check = resolveCheck({ type: 'http', path: '/healthz', expect: [200, 204] });
 * await check(backend, { signal: AbortSignal.timeout(1000) });
 * ```
 */
export function resolveCheck(spec: CheckSpec): CheckFunction {
  if (typeof spec === 'function') return customCheck(spec);
  const raw = v.object('check', spec);
  const type = v.oneOf('check.type', raw.type, types);
  // The factories validate everything else; `type` is only ours.
  const { type: _type, ...options } = raw;
  switch (type) {
    case 'tcp':
      v.knownKeys('check', raw, ['type']);
      return tcpCheck();
    case 'tls':
      return tlsCheck(options);
    case 'http':
      return httpCheck(options);
    case 'https':
      return httpsCheck(options);
  }
}
