// The apiserver stand-in and the TLS fixtures it serves: every e2e and pool
// test trusts these to behave, so their behaviour is pinned here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ApiserverBackend, type ApiserverBackendOptions, type WatchEvent } from '../../examples/support/apiserver-backend.js';
import { loadCerts } from '../../examples/support/certs.js';
import { FaultProxy } from '../../examples/support/fault-proxy.js';
import { WatchClient, WatchFleet, type WatchClientEvents } from '../../examples/support/watch-client.js';
import { activeResources } from '../helpers/net.js';

const certs = loadCerts();
/** A backstop so a regression fails the test instead of hanging the file. */
const opts = { timeout: 20_000 };

async function start(t: TestContext, options: Partial<ApiserverBackendOptions> = {}): Promise<ApiserverBackend> {
  const backend = await ApiserverBackend.start({ name: 'b1', ...options });
  t.after(() => backend.close());
  return backend;
}

interface Reply {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** One request on its own connection (`agent: false`), trusting the fixtures CA. */
function fetchText(backend: ApiserverBackend, path: string, extra: RequestOptions & { body?: string } = {}): Promise<Reply> {
  const { body, ...options } = extra;
  const request = backend.url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: backend.host,
        port: backend.port,
        path,
        agent: false,
        ca: certs.ca,
        servername: 'apiserver.test',
        ...options,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Opens /watch and hands back the response and an async iterator over its parsed lines. */
async function openWatch(t: TestContext, backend: ApiserverBackend) {
  const req = httpsRequest({
    host: backend.host,
    port: backend.port,
    path: '/watch',
    agent: false,
    ca: certs.ca,
    servername: 'apiserver.test',
  });
  req.on('error', () => {});
  t.after(() => req.destroy());
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  res.on('error', () => {});
  const lines = createInterface({ input: res, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const next = async (): Promise<WatchEvent> => {
    const line = await lines.next();
    if (line.done === true) assert.fail('watch stream ended');
    return JSON.parse(line.value) as WatchEvent;
  };
  return { req, res, next };
}

test('/readyz follows setReady(); /healthz does not', opts, async (t) => {
  const backend = await start(t);
  assert.equal(backend.ready, true);
  let r = await fetchText(backend, '/readyz');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok');
  assert.equal(r.headers['x-backend'], 'b1');

  backend.setReady(false);
  assert.equal(backend.ready, false);
  r = await fetchText(backend, '/readyz?verbose');
  assert.equal(r.status, 500);
  r = await fetchText(backend, '/healthz');
  assert.equal(r.status, 200);

  backend.setReady(true);
  r = await fetchText(backend, '/readyz');
  assert.equal(r.status, 200);
  r = await fetchText(backend, '/nope');
  assert.equal(r.status, 404);
});

test('/watch streams newline-delimited bookmarks, one timer for all streams', opts, async (t) => {
  const backend = await start(t, { name: 'watch-me', watchIntervalMs: 20 });
  const a = await openWatch(t, backend);
  assert.equal(a.res.statusCode, 200);
  assert.equal(a.res.headers['content-type'], 'application/json');
  assert.equal(a.res.headers['transfer-encoding'], 'chunked');

  const first = await a.next();
  assert.equal(first.type, 'BOOKMARK');
  assert.equal(first.backend, 'watch-me');
  assert.equal(typeof first.ts, 'number');
  const second = await a.next();
  const third = await a.next();
  assert.ok(second.seq > first.seq && third.seq > second.seq, 'seq must increase');

  const b = await openWatch(t, backend);
  await b.next();
  const watches = (): number => backend.activeWatches;
  assert.equal(watches(), 2);
  // Both streams are fed by the same ticks: a seq b sees, a sees too. a may
  // hold a backlog of older ticks (a loaded machine reads late), so read a up
  // to b's seq. Per-stream timers or counters would never give a the same seq.
  for (let round = 0; round < 2; round++) {
    const eb = await b.next();
    let ea = await a.next();
    while (ea.seq < eb.seq) ea = await a.next();
    assert.equal(ea.seq, eb.seq, `streams must share ticks: b got seq ${eb.seq}, a went from below it to ${ea.seq}`);
  }

  a.req.destroy();
  while (watches() !== 1) await delay(5);
  b.req.destroy();
  while (watches() !== 0) await delay(5);
});

/**
 * Handles that outlive a loop turn. One-shot requests (a pending
 * `setImmediate`, an fs call of the test runner, a handle's close on its way)
 * come and go on a loaded machine and are not leaks: the shared filter drops them.
 */
function lastingResources(): string[] {
  return activeResources();
}

/** The lasting handles once they match `expected`, or after 20 loop turns (libuv releases a closed handle a turn or two late). */
async function resourcesSettledTo(expected: readonly string[]): Promise<string[]> {
  let now = lastingResources();
  for (let turn = 0; turn < 20 && now.join() !== expected.join(); turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    now = lastingResources();
  }
  return now;
}

test('close() ends open watches, is idempotent and leaves no handle', opts, async (t) => {
  const resourcesBefore = lastingResources();
  const backend = await ApiserverBackend.start({ name: 'b1', watchIntervalMs: 20 });
  const w = await openWatch(t, backend);
  await w.next();
  const ended = new Promise((resolve) => w.res.once('close', resolve));

  const first = backend.close();
  assert.equal(backend.close(), first);
  await first;
  await ended;
  assert.equal(backend.activeWatches, 0);
  // The client's own socket is closed by the server's FIN; wait for its handle.
  if (!w.req.socket?.closed) await once(w.req.socket!, 'close');
  // The HTTP client tidies up its own side in a setImmediate: let it run.
  assert.deepEqual(await resourcesSettledTo(resourcesBefore), resourcesBefore);
});

test('/echo returns the request body', opts, async (t) => {
  const backend = await start(t);
  const body = JSON.stringify({ hello: 'world', n: [1, 2, 3] });
  const r = await fetchText(backend, '/echo', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 200);
  assert.equal(r.body, body);
  assert.equal(r.headers['content-type'], 'application/json');
});

test('plain HTTP with tls: false', opts, async (t) => {
  const backend = await start(t, { tls: false });
  assert.ok(backend.url.startsWith('http://'));
  const r = await fetchText(backend, '/readyz');
  assert.equal(r.status, 200);
});

test('fixtures: server.crt is valid for every SAN, the bad ones fail for the right reason', opts, async (t) => {
  const good = await start(t);
  for (const servername of ['apiserver.test', 'kubernetes.default.svc', 'localhost']) {
    assert.equal((await fetchText(good, '/healthz', { servername })).status, 200, servername);
  }
  // No SNI: the IP SAN has to match.
  assert.equal((await fetchText(good, '/healthz', { servername: '' })).status, 200);

  const wrongName = await start(t, { tls: { cert: certs.wrongNameCert, key: certs.wrongNameKey } });
  await assert.rejects(fetchText(wrongName, '/healthz'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });

  const untrusted = await start(t, { tls: { cert: certs.otherServerCert, key: certs.otherServerKey } });
  await assert.rejects(fetchText(untrusted, '/healthz'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  assert.equal((await fetchText(untrusted, '/healthz', { ca: certs.otherCa })).status, 200);
});

test('requestCert: the client certificate is required and accepted', opts, async (t) => {
  const backend = await start(t, {
    tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, requestCert: true },
  });
  const ok = await fetchText(backend, '/healthz', { cert: certs.clientCert, key: certs.clientKey });
  assert.equal(ok.status, 200);
  // TLS 1.3 reports the refusal after the handshake, as a reset or an alert.
  await assert.rejects(fetchText(backend, '/healthz'));
});

test('start() validates its options', opts, async () => {
  await assert.rejects(ApiserverBackend.start({ name: '' }), TypeError);
  await assert.rejects(ApiserverBackend.start({ name: 'x', watchIntervalMs: 0 }), /watchIntervalMs/);
  await assert.rejects(ApiserverBackend.start({ name: 'x', port: -1 }), /port/);
});

test('runs as a CLI: prints "listening host:port", serves, exits 0 on SIGTERM', opts, async (t) => {
  const script = fileURLToPath(new URL('../../examples/support/apiserver-backend.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--name', 'cli', '--listen', '127.0.0.1:0', '--plain'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const line = await lines.next();
  const first = line.done === true ? '(end of output)' : line.value;
  const match = /^listening 127\.0\.0\.1:(\d+)$/.exec(first);
  assert.ok(match, `unexpected first line: ${first}`);
  const port = Number(match[1]);

  const r = await new Promise<IncomingMessage>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: '/readyz', agent: false }, resolve).on('error', reject).end();
  });
  r.resume();
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['x-backend'], 'cli');

  child.kill('SIGTERM');
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, null);
  assert.equal(code, 0);
});

// The watch clients are tested against the backend they are made for.

/** `events.once` for the eventemitter3-based clients (it would work, but is typed for Node's emitters). */
function nextEvent<K extends keyof WatchClientEvents>(client: WatchClient, name: K): Promise<WatchClientEvents[K]> {
  return new Promise((resolve) => {
    client.once(name, (...args: WatchClientEvents[K]) => resolve(args));
  });
}

test('WatchClient: re-watches at once when the server ends its stream', opts, async (t) => {
  const backend = await start(t, { watchIntervalMs: 20 });
  const client = new WatchClient({ host: backend.host, port: backend.port, servername: 'apiserver.test', backoffMs: 10 });
  t.after(() => client.stop());
  await nextEvent(client, 'connected');
  assert.equal(client.backend, 'b1');
  assert.equal(client.connected, true);
  await nextEvent(client, 'received');
  assert.ok(client.lastEventAt !== undefined);

  const closed = nextEvent(client, 'closed');
  const reconnected = nextEvent(client, 'connected');
  backend.endWatches();
  const [entry] = await closed;
  assert.equal(entry.event, 'closed');
  assert.equal(entry.backend, 'b1');
  assert.equal(entry.detail, 'EOF');
  await reconnected;
  assert.equal(client.reconnects, 1);
  assert.deepEqual(
    client.history.map((e) => [e.event, e.backend]),
    [
      ['connected', 'b1'],
      ['closed', 'b1'],
      ['connected', 'b1'],
    ],
  );
});

test('WatchClient: keeps re-watching through a dead server until another takes its port', opts, async (t) => {
  const b1 = await start(t, { name: 'b1', watchIntervalMs: 20 });
  const { host, port } = b1.address;
  const client = new WatchClient({ host, port, servername: 'apiserver.test', backoffMs: 10 });
  t.after(() => client.stop());
  await nextEvent(client, 'connected');

  const failed = nextEvent(client, 'error');
  await b1.close();
  await failed; // the stream is cut short, then connects are refused
  assert.equal(client.backend, undefined);
  const refused = nextEvent(client, 'error');
  const [entry] = await refused;
  assert.equal(entry.detail, 'ECONNREFUSED');

  const connected = nextEvent(client, 'connected');
  await start(t, { name: 'b2', host, port });
  const [again] = await connected;
  assert.equal(again.backend, 'b2');
  assert.equal(client.backend, 'b2');
  assert.ok(client.reconnects >= 2);
});

test('WatchFleet: a silent cut leaves every watch open but stalled; a reset moves them on', opts, async (t) => {
  const backend = await start(t, { watchIntervalMs: 20 });
  const proxy = await FaultProxy.start({ target: backend.address });
  t.after(() => proxy.close());
  const fleet = new WatchFleet({ size: 5, host: proxy.host, port: proxy.port, backoffMs: 10 });
  t.after(() => fleet.stop());

  await fleet.waitFor((f) => f.connectedCount === 5);
  assert.deepEqual(fleet.byBackend(), { b1: 5 });
  assert.equal(backend.activeWatches, 5);

  proxy.cut();
  await delay(600);
  // The reflector's view: still connected to b1, but nothing arrives.
  assert.deepEqual(fleet.byBackend(), { b1: 5 });
  assert.equal(fleet.stalled(400).length, 5);
  assert.equal(fleet.reconnects, 0);

  proxy.restore();
  proxy.reset();
  await fleet.waitFor((f) => f.reconnects >= 5 && f.connectedCount === 5 && f.stalled(400).length === 0);
  assert.deepEqual(fleet.byBackend(), { b1: 5 });
  for (const c of fleet.clients) assert.deepEqual(c.history.map((e) => e.event), ['connected', 'error', 'connected']);
});

test('WatchFleet: stop() is idempotent and leaves no handle', opts, async (t) => {
  const backend = await start(t, { watchIntervalMs: 20 });
  const resourcesBefore = lastingResources();
  const fleet = new WatchFleet({ size: 3, host: backend.host, port: backend.port, servername: 'apiserver.test' });
  await fleet.waitFor((f) => f.connectedCount === 3);

  // Stop while the clients wait out their backoff: stop() must clear those timers.
  const closed = Promise.all(fleet.clients.map((c) => nextEvent(c, 'closed')));
  backend.endWatches();
  await closed;

  const stopping = fleet.stop();
  assert.equal(fleet.stop(), stopping);
  await stopping;
  assert.equal(fleet.connectedCount, 0);
  assert.ok(fleet.clients.every((c) => c.stopped));
  // Let the server notice the clients went away, then compare.
  while (backend.activeWatches !== 0) await delay(5);
  // The server's sockets close in the same turn; the HTTP internals then tidy
  // up in setImmediate callbacks, which run on the next loop turns.
  assert.deepEqual(await resourcesSettledTo(resourcesBefore), resourcesBefore);
});

test('WatchClient and WatchFleet validate their options', opts, () => {
  assert.throws(() => new WatchClient({ host: '', port: 1 }), /host/);
  assert.throws(() => new WatchClient({ host: '127.0.0.1', port: 0 }), /port/);
  assert.throws(() => new WatchClient({ host: '127.0.0.1', port: 1, backoffMs: -1 }), /backoffMs/);
  assert.throws(() => new WatchFleet({ size: 0, host: '127.0.0.1', port: 1 }), /size/);
});
