/**
 * HTTP and HTTPS checks keep their connection for the backend's next check
 * when given a place to keep it (a probe gives one per backend), as Envoy's
 * `reuse_connection`: a check costs a request, not a connection and a TLS
 * handshake. A check that fails on a kept connection is a failed check, and
 * the next one dials afresh; a connection the server closed or will soon
 * close, or that has not finished reading its last answer, is never reused.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { loadCerts } from '../examples/support/certs.js';
import { resolveBackend, type Backend } from '../src/backend.js';
import type { CheckFunction } from '../src/checks/check.js';
import { ConnectionSlot } from '../src/checks/connection-slot.js';
import { httpCheck, httpsCheck } from '../src/checks/http.js';
import { HealthProbe } from '../src/health-probe.js';
import { handlesSettledTo, ourHandles, waitFor } from './helpers/net.js';

const certs = loadCerts();

interface Backend_ {
  readonly backend: Backend;
  readonly server: Server;
  /** Connections accepted, and requests seen with their `Connection` header. */
  readonly connections: Socket[];
  readonly requests: { connection: string | undefined; socket: Socket }[];
}

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

async function serve(t: TestContext, handler: Handler = (_req, res) => res.end('ok'), tls = false): Promise<Backend_> {
  const connections: Socket[] = [];
  const requests: Backend_['requests'] = [];
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    requests.push({ connection: req.headers.connection, socket: req.socket });
    handler(req, res, requests.length);
  };
  const server = tls ? createHttpsServer({ cert: certs.serverCert, key: certs.serverKey }, listener) : createHttpServer(listener);
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    connections.push(socket);
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    server.close();
    if (server.listening) await once(server, 'close');
  });
  return { backend: resolveBackend({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }), server, connections, requests };
}

function slotFor(t: TestContext): ConnectionSlot {
  const slot = new ConnectionSlot();
  t.after(() => slot.close());
  return slot;
}

function run(check: CheckFunction, backend: Backend, connection?: ConnectionSlot): Promise<unknown> {
  return check(backend, { signal: AbortSignal.timeout(10_000), connection });
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal((err as { code?: unknown }).code, code, String(err));
    return true;
  });
}

void test('http: checks given a slot send every request on one kept connection', async (t) => {
  const b = await serve(t);
  const slot = slotFor(t);
  const check = httpCheck({ path: '/readyz' });
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  // More than the default listener limit: a listener left behind per check would warn.
  for (let i = 0; i < 15; i++) await run(check, b.backend, slot);
  assert.equal(b.connections.length, 1);
  assert.equal(b.requests.length, 15);
  assert.ok(b.requests.every((r) => r.connection === 'keep-alive'));
  assert.equal(slot.holding, true);
  assert.deepEqual(warnings, []);
  // The kept connection is unref()ed, so it never keeps a process alive: of
  // the two ends of it, only the server's is listed.
  assert.equal(ourHandles().filter((h) => h === 'TCPSocketWrap').length, 1);
});

void test('https: one TLS handshake for many checks, and a body predicate still decides', async (t) => {
  let body = 'ok';
  const b = await serve(t, (_req, res) => res.end(body), true);
  const slot = slotFor(t);
  const check = httpsCheck({ path: '/readyz', ca: certs.ca, body: (text) => text === 'ok' });
  for (let i = 0; i < 5; i++) await run(check, b.backend, slot);
  assert.equal(b.connections.length, 1, 'one handshake');
  assert.equal(b.requests.length, 5);
  body = 'degraded';
  await rejectsWith(run(check, b.backend, slot), 'PROBE_BAD_RESPONSE');
  assert.equal(slot.holding, false, 'a failed check does not keep its connection');
  body = 'ok';
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 2, 'the next check dialled afresh');
});

void test('a check that fails on a kept connection is a failed check; the next dials afresh', async (t) => {
  let mode: 'ok' | 'reset' | '503' = 'ok';
  const b = await serve(t, (req, res) => {
    if (mode === 'reset') req.socket.resetAndDestroy();
    else if (mode === '503') res.writeHead(503).end();
    else res.end('ok');
  });
  const slot = slotFor(t);
  const check = httpCheck();
  await run(check, b.backend, slot);
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 1);
  mode = 'reset';
  // Reset on a connection that already carried answers: the protocol layer.
  await rejectsWith(run(check, b.backend, slot), 'PROBE_BAD_RESPONSE');
  mode = 'ok';
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 2);
  mode = '503';
  await rejectsWith(run(check, b.backend, slot), 'PROBE_BAD_RESPONSE');
  mode = 'ok';
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 3);
  assert.equal(b.requests.length, 6);
});

void test('a connection the server closed while idle is not reused: the next check dials and passes', async (t) => {
  const b = await serve(t);
  const slot = slotFor(t);
  const check = httpCheck();
  await run(check, b.backend, slot);
  b.connections[0]!.end();
  await waitFor(() => !slot.holding, { what: 'the slot to notice the close' });
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 2);
  // Reset while idle, too.
  b.connections[1]!.resetAndDestroy();
  await waitFor(() => !slot.holding, { what: 'the slot to notice the reset' });
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 3);
});

void test('Connection: close from the server, or a keep-alive timeout about to run out, means a fresh connection', async (t) => {
  const closing = await serve(t, (_req, res) => res.setHeader('connection', 'close').end('ok'));
  const slot = slotFor(t);
  const check = httpCheck();
  for (let i = 0; i < 3; i++) await run(check, closing.backend, slot);
  assert.equal(closing.connections.length, 3);

  // Node's server advertises `Keep-Alive: timeout=1`: within a second of the margin, never reused.
  const short = await serve(t);
  short.server.keepAliveTimeout = 1000;
  const slot2 = slotFor(t);
  for (let i = 0; i < 3; i++) await run(check, short.backend, slot2);
  assert.equal(short.connections.length, 3);
});

void test('reuseConnection: false dials every time and sends Connection: close', async (t) => {
  const b = await serve(t);
  const slot = slotFor(t);
  const check = httpCheck({ reuseConnection: false });
  for (let i = 0; i < 3; i++) await run(check, b.backend, slot);
  assert.equal(b.connections.length, 3);
  assert.ok(b.requests.every((r) => r.connection === 'close'));
  assert.equal(slot.holding, false);
  assert.throws(() => httpCheck({ reuseConnection: 'yes' as never }), { code: 'INVALID_ARGUMENT', message: /`check\.reuseConnection`/ });
});

void test('the status decides at once; a body still arriving keeps the connection from being reused until it ends', async (t) => {
  let release: (() => void) | undefined;
  const b = await serve(t, (_req, res, n) => {
    res.writeHead(200, { 'content-length': 4 });
    res.write('ok');
    if (n === 1) release = () => res.end('..');
    else res.end('..');
  });
  const slot = slotFor(t);
  const check = httpCheck();
  await run(check, b.backend, slot);
  assert.equal(slot.holding, true);
  // The first answer's body has not ended: the second check does not wait for it, nor reuse its connection.
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 2);
  release?.();
  await run(check, b.backend, slot);
  assert.equal(b.connections.length, 2, 'the second connection, whose answer ended, is reused');
});

void test('an endless body passes on its status and its connection is dropped past maxBodyBytes', async (t) => {
  const chunk = Buffer.alloc(16 * 1024, 'a');
  const b = await serve(t, (_req, res) => {
    res.writeHead(200);
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  });
  const slot = slotFor(t);
  await run(httpCheck({ maxBodyBytes: 64 * 1024 }), b.backend, slot);
  await waitFor(() => !slot.holding, { what: 'the endless answer to be cut at maxBodyBytes' });
  await waitFor(() => b.connections[0]!.destroyed, { what: 'the server to see the connection closed' });
});

void test('a slot gives a connection back only to the check that kept it', async (t) => {
  const b = await serve(t);
  const slot = slotFor(t);
  await run(httpCheck(), b.backend, slot);
  await run(httpCheck(), b.backend, slot);
  assert.equal(b.connections.length, 2);
});

void test('an abort on a kept connection fails the check at layer timeout and closes the connection', async (t) => {
  let hold = false;
  const b = await serve(t, (_req, res) => {
    if (!hold) res.end('ok');
  });
  const slot = slotFor(t);
  const check = httpCheck();
  await run(check, b.backend, slot);
  hold = true;
  const controller = new AbortController();
  const running = check(b.backend, { signal: controller.signal, connection: slot });
  await waitFor(() => b.requests.length === 2, { what: 'the second request' });
  controller.abort();
  await rejectsWith(running, 'PROBE_TIMEOUT');
  assert.equal(slot.holding, false);
  await waitFor(() => b.connections[0]!.destroyed, { what: 'the server to see the connection closed' });
});

void test('a probe keeps one connection per backend across checks; stop() closes it and leaves no handle', async (t) => {
  const before = await handlesSettledTo([]);
  const a = await serve(t, undefined, true);
  const c = await serve(t, undefined, true);
  const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', ca: certs.ca }, interval: 50, timeout: 50 });
  t.after(() => probe.stop());
  let checks = 0;
  probe.on('checked', (r) => {
    assert.equal(r.ok, true, r.error?.message);
    checks++;
  });
  probe.add(a.backend);
  probe.add(c.backend);
  await waitFor(() => checks >= 10, { what: '10 checks' });
  assert.equal(a.connections.length, 1);
  assert.equal(c.connections.length, 1);
  probe.remove(a.backend.id);
  await waitFor(() => a.connections[0]!.destroyed, { what: 'remove() to close the kept connection' });
  await probe.stop();
  await waitFor(() => c.connections[0]!.destroyed, { what: 'stop() to close the kept connection' });
  a.server.close();
  c.server.close();
  await Promise.all([once(a.server, 'close'), once(c.server, 'close')]);
  assert.deepEqual(await handlesSettledTo(before), before);
});
