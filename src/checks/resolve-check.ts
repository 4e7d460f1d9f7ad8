/**
 * How a check written in options (a built-in type with its options, or a
 * function) becomes a check function. The one module that knows every
 * built-in check, so the checks themselves never import each other's
 * dispatcher.
 *
 * @module
 */
import * as v from '../validate.js';
import type { CheckFunction } from './check.js';
import { customCheck } from './custom-check.js';
import { httpCheck, httpsCheck, type HttpCheckSpec, type HttpsCheckSpec } from './http.js';
import { tcpCheck, type TcpCheckSpec } from './tcp.js';
import { tlsCheck, type TlsCheckSpec } from './tls.js';

/**
 * A check as written in options: a built-in check by `type`, or a function.
 */
export type CheckSpec = TcpCheckSpec | TlsCheckSpec | HttpCheckSpec | HttpsCheckSpec | CheckFunction;

const types = ['tcp', 'tls', 'http', 'https'] as const;

/**
 * Validates a check spec and returns the check function it describes. Throws
 * `INVALID_ARGUMENT` naming the faulty option (`check.path`, `check.expect`…).
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
