/**
 * The TLS server name (SNI) rule, one for the dialler and the checks.
 *
 * @module
 * @internal
 */
import { isIP } from 'node:net';
import type { Backend } from './backend.js';

/**
 * The SNI name sent to `backend`: the one configured for this connection,
 * else the backend's own `servername`, else its host when that is a name.
 * `undefined` for an IP address without a configured name (SNI cannot carry
 * an IP address; the certificate is then verified against its IP SANs).
 */
export function servernameFor(backend: Backend, configured: string | undefined): string | undefined {
  return configured ?? backend.servername ?? (isIP(backend.host) === 0 ? backend.host : undefined);
}
