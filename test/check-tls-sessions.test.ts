/**
 * TLS and HTTPS checks build their OpenSSL context once and resume each
 * backend's TLS session on its next check, as HAProxy does for `check-ssl`:
 * probing many backends then costs a resumed handshake, not a full one.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { test, type TestContext } from 'node:test';
import { loadCerts } from '../examples/support/certs.js';
import { httpsCheck, tlsCheck } from '../src/index.js';
import { resolveBackend } from '../src/backend.js';

async function tlsServer(t: TestContext) {
  const certs = loadCerts();
  const handshakes: boolean[] = [];
  const server = https.createServer({ cert: certs.serverCert, key: certs.serverKey }, (_req, res) => res.end('ok'));
  server.on('secureConnection', (socket: TLSSocket) => handshakes.push(socket.isSessionReused()));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { backend: resolveBackend({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }), handshakes, certs };
}

test('an https check resumes the backend\'s TLS session on the next check', async (t) => {
  const { backend, handshakes, certs } = await tlsServer(t);
  const check = httpsCheck({ path: '/readyz', ca: certs.ca });
  for (let i = 0; i < 5; i++) await check(backend, { signal: AbortSignal.timeout(5000) });
  assert.equal(handshakes.length, 5);
  assert.equal(handshakes[0], false, 'the first handshake is a full one');
  assert.ok(handshakes.slice(1).every(Boolean), `later ones resume: ${handshakes.join()}`);
});

test('each check keeps its own sessions: a new check starts with a full handshake', async (t) => {
  const { backend, handshakes, certs } = await tlsServer(t);
  const a = httpsCheck({ path: '/readyz', ca: certs.ca });
  const b = httpsCheck({ path: '/readyz', ca: certs.ca });
  await a(backend, { signal: AbortSignal.timeout(5000) });
  await a(backend, { signal: AbortSignal.timeout(5000) });
  await b(backend, { signal: AbortSignal.timeout(5000) });
  assert.deepEqual(handshakes, [false, true, false]);
});

test('verification still applies: a check trusting another CA fails at the tls layer, resumed session or not', async (t) => {
  const { backend, certs } = await tlsServer(t);
  const wrong = httpsCheck({ path: '/readyz', ca: certs.otherCa });
  for (let i = 0; i < 2; i++) {
    await assert.rejects(wrong(backend, { signal: AbortSignal.timeout(5000) }), { code: 'PROBE_TLS_FAILED' });
  }
});

test('malformed TLS material is rejected when the check is built, with INVALID_ARGUMENT', () => {
  const certs = loadCerts();
  assert.throws(() => tlsCheck({ cert: certs.serverCert, key: certs.clientKey }), { code: 'INVALID_ARGUMENT' });
});
