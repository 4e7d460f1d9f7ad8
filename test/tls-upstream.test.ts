import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import tls, { type TLSSocket } from 'node:tls';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { loadCerts } from '../examples/support/certs.js';
import { UpstreamPool, type ConnectError, type FailoverProxyError } from '../src/index.js';
import { connect, frontend, HOST, namedServer, readLine, waitFor } from './helpers/net.js';

const certs = loadCerts();

interface TlsBackend {
  readonly port: number;
  /** What each accepted TLS connection presented: SNI, and the client certificate's CN when verified. */
  readonly seen: { servername: string | false | null; clientCN: string | undefined }[];
}

/** A TLS echo server that greets with `name`; `requestCert` asks for (and verifies) a client certificate. */
async function tlsBackend(t: TestContext, name: string, options: { cert?: Buffer; key?: Buffer; requestCert?: boolean } = {}): Promise<TlsBackend> {
  const seen: TlsBackend['seen'] = [];
  const sockets = new Set<Socket>();
  const server = tls.createServer(
    {
      cert: options.cert ?? certs.serverCert,
      key: options.key ?? certs.serverKey,
      ca: certs.ca,
      requestCert: options.requestCert ?? false,
      rejectUnauthorized: options.requestCert ?? false,
      allowHalfOpen: true,
    },
    (socket: TLSSocket) => {
      seen.push({ servername: socket.servername, clientCN: socket.authorized ? (socket.getPeerCertificate().subject?.CN as string | undefined) : undefined });
      socket.write(`${name}\n`);
      socket.pipe(socket);
    },
  );
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

function poolOf(t: TestContext, ...args: ConstructorParameters<typeof UpstreamPool>): UpstreamPool {
  const pool = new UpstreamPool(...args);
  t.after(() => pool.destroy());
  return pool;
}

test('pin() re-originates TLS with verification on: a plain client reaches a TLS backend through the pool', async (t) => {
  const backend = await tlsBackend(t, 'secure');
  const pool = poolOf(t, { backends: [{ host: HOST, port: backend.port, id: 'b1' }], tls: { ca: certs.ca } });
  const port = await frontend(t, pool);
  const client = await connect(t, port);
  assert.equal(await readLine(client), 'secure');
  client.write('hello over tls\n');
  assert.equal(await readLine(client), 'hello over tls');
  const [conn] = [...pool.connections('b1')];
  const upstream = conn!.upstream as TLSSocket;
  assert.equal(upstream.encrypted, true);
  assert.equal(upstream.authorized, true, 'the backend certificate was verified against the CA');
  // An IP host is checked against the certificate's IP SANs, and no SNI is sent for it.
  assert.deepEqual(backend.seen, [{ servername: false, clientCN: undefined }]);
});

test('a backend certificate from another CA fails the connect with CONNECT_FAILED and the TLS error as cause', async (t) => {
  const backend = await tlsBackend(t, 'untrusted', { cert: certs.otherServerCert, key: certs.otherServerKey });
  const pool = poolOf(t, { backends: [{ host: HOST, port: backend.port, id: 'b1' }], tls: { ca: certs.ca }, retries: 0 });
  const failed: string[] = [];
  pool.on('connectFailed', (b, err) => failed.push(`${b.id}:${err.code}`));
  const err = await pool.connect().then(
    () => assert.fail('connected to an untrusted backend'),
    (e: unknown) => e as ConnectError,
  );
  assert.equal(err.code, 'CONNECT_FAILED');
  assert.equal(err.backendId, 'b1');
  const cause = err.cause as NodeJS.ErrnoException;
  assert.match(cause.code ?? '', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT_IN_CHAIN|CERT_SIGNATURE_FAILURE/);
  assert.deepEqual(failed, ['b1:CONNECT_FAILED'], 'counted as a passive health signal');

  // The same through pin(): the client is closed, pinFailed carries the code.
  const pinFailures: string[] = [];
  pool.on('pinFailed', (e) => pinFailures.push(e.code));
  const port = await frontend(t, pool);
  await connect(t, port);
  await waitFor(() => pinFailures.length === 1, { what: 'the pin to fail' });
  assert.deepEqual(pinFailures, ['CONNECT_FAILED']);
});

test('a trusted certificate for another name fails hostname verification with CONNECT_FAILED', async (t) => {
  const backend = await tlsBackend(t, 'misnamed', { cert: certs.wrongNameCert, key: certs.wrongNameKey });
  const pool = poolOf(t, { backends: [{ host: HOST, port: backend.port, id: 'b1' }], tls: { ca: certs.ca }, retries: 0 });
  await assert.rejects(pool.connect(), (err: FailoverProxyError) => {
    assert.equal(err.code, 'CONNECT_FAILED');
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    return true;
  });
});

test('per-backend TLS: a servername is sent and checked, a client certificate is presented, tls: false dials in clear', async (t) => {
  const mtls = await tlsBackend(t, 'mtls', { requestCert: true });
  const plain = await namedServer(t, 'plain');
  const pool = poolOf(t, {
    backends: [
      { host: HOST, port: mtls.port, id: 'mtls', servername: 'apiserver.test', tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } },
      { host: HOST, port: plain.port, id: 'plain', tls: false },
    ],
    // The pool-wide setting would fail both backends: each one's own wins.
    tls: { ca: certs.otherCa },
    balancer: 'round-robin',
  });
  const port = await frontend(t, pool);
  const names = new Set<string>();
  for (let i = 0; i < 2; i++) names.add(await readLine(await connect(t, port)));
  assert.deepEqual([...names].sort(), ['mtls', 'plain']);
  assert.deepEqual(mtls.seen, [{ servername: 'apiserver.test', clientCN: 'system:kube-scheduler' }]);
});

test('https.request through a secure agent reaches HTTPS backends; a secure agent refuses a backend dialled in clear', async (t) => {
  const backend = await ApiserverBackend.start({ name: 'b1' });
  t.after(() => backend.close());
  const pool = poolOf(t, { backends: [{ ...backend.address, id: 'b1' }], tls: { ca: certs.ca } });
  const agent = pool.createAgent({ secure: true });
  t.after(() => agent.destroy());
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    https.get({ host: 'apiserver.invalid', path: '/readyz', agent }, resolve).once('error', reject);
  });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['x-backend'], 'b1');
  assert.equal((res.socket as TLSSocket).authorized, true);
  res.resume();
  await once(res, 'end');

  const clearPool = poolOf(t, { backends: [{ ...backend.address, id: 'b1' }] });
  const clearAgent = clearPool.createAgent({ secure: true });
  t.after(() => clearAgent.destroy());
  await assert.rejects(
    new Promise((resolve, reject) => https.get({ host: 'x', path: '/readyz', agent: clearAgent }, resolve).once('error', reject)),
    (err: FailoverProxyError) => err.code === 'CONNECT_FAILED',
  );
});
