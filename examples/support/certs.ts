/**
 * Paths to the TLS fixtures in `test/fixtures/` (made by `make-certs.sh`, see
 * its README) and a loader for their PEM bytes.
 *
 * Paths are resolved against this file rather than `process.cwd()` so tests and
 * examples work from any directory, including a spawned child in a network
 * namespace whose cwd is not the repository.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function fixture(name: string): string {
  return fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));
}

/**
 * Absolute paths of every fixture file.
 *
 * @example
 * ```ts
 * tls.connect({ host: '127.0.0.1', port, ca: readFileSync(certPaths.ca) });
 * ```
 */
export const certPaths = Object.freeze({
  /** Test CA that signed `server`, `client` and `wrongName`. */
  ca: fixture('ca.crt'),
  caKey: fixture('ca.key'),
  /** Server certificate: 127.0.0.1–4, ::1, localhost, apiserver.test, kubernetes.default.svc. */
  serverCert: fixture('server.crt'),
  serverKey: fixture('server.key'),
  /** Client certificate (clientAuth, CN `system:kube-scheduler`). */
  clientCert: fixture('client.crt'),
  clientKey: fixture('client.key'),
  /** Trusted by `ca` but named only `not-the-server.test`: fails hostname checks. */
  wrongNameCert: fixture('wrong-name.crt'),
  wrongNameKey: fixture('wrong-name.key'),
  /** An unrelated CA. */
  otherCa: fixture('other-ca.crt'),
  otherCaKey: fixture('other-ca.key'),
  /** Same SANs as `serverCert`, but signed by `otherCa`: fails chain verification against `ca`. */
  otherServerCert: fixture('other-server.crt'),
  otherServerKey: fixture('other-server.key'),
});

/** Names of the fixture files, as keys of {@link certPaths}. */
export type CertName = keyof typeof certPaths;

/** PEM contents of every fixture, keyed like {@link certPaths}. */
export type Certs = { readonly [K in CertName]: Buffer };

/**
 * Reads every fixture synchronously (they are a few hundred bytes each). Not
 * cached: nothing happens at import time, and callers that need them often
 * keep the result.
 *
 * @example
 * ```ts
 * const certs = loadCerts();
 * const backend = await ApiserverBackend.start({
 *   name: 'b1',
 *   tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca },
 * });
 * ```
 */
export function loadCerts(): Certs {
  const out = {} as Record<CertName, Buffer>;
  for (const name of Object.keys(certPaths) as CertName[]) {
    out[name] = readFileSync(certPaths[name]);
  }
  return Object.freeze(out);
}
