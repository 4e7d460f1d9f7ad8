import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { createUpgradeHandler, UpstreamPool, type FailoverProxyError, type UpstreamPoolOptions } from '../src/index.js';
import { closedPort, HOST, waitFor } from './helpers/net.js';

/** Splits what a socket receives into lines (`\r` kept), for awaiting one at a time. */
class Lines {
  readonly #lines: string[] = [];
  readonly #waiters: ((line: string) => void)[] = [];
  #partial = '';
  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#partial += chunk.toString('latin1');
      for (let nl = this.#partial.indexOf('\n'); nl !== -1; nl = this.#partial.indexOf('\n')) {
        const line = this.#partial.slice(0, nl);
        this.#partial = this.#partial.slice(nl + 1);
        const waiter = this.#waiters.shift();
        if (waiter) waiter(line);
        else this.#lines.push(line);
      }
    });
  }
  next(): Promise<string> {
    const line = this.#lines.shift();
    return line !== undefined ? Promise.resolve(line) : new Promise((resolve) => this.#waiters.push(resolve));
  }
  /** Skips the response head; resolves with the first line after it. */
  async afterHead(): Promise<string> {
    while ((await this.next()) !== '\r');
    return this.next();
  }
}

interface UpgradeBackend {
  readonly port: number;
  /** rawHeaders and head of every upgrade request the backend received. */
  readonly seen: { rawHeaders: string[]; url: string; method: string }[];
}

/**
 * An HTTP server that accepts any upgrade with `101`, says its name on a
 * line, then answers every line it reads with `<name>:<LINE IN UPPER CASE>`.
 */
async function upgradeBackend(t: TestContext, name: string): Promise<UpgradeBackend> {
  const seen: UpgradeBackend['seen'] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((_req, res) => res.end('no upgrade\n'));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    seen.push({ rawHeaders: req.rawHeaders, url: req.url ?? '', method: req.method ?? '' });
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\n\r\n${name}\n`);
    if (head.length > 0) socket.unshift(head);
    let buf = '';
    socket.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        socket.write(`${name}:${buf.slice(0, nl).toUpperCase()}\n`);
        buf = buf.slice(nl + 1);
      }
    });
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

/** A node:http gateway whose upgrades go through `pool`. */
async function gateway(t: TestContext, pool: UpstreamPool, onError?: (err: FailoverProxyError) => void): Promise<number> {
  const server = http.createServer((_req, res) => res.end('gateway\n'));
  server.on('upgrade', createUpgradeHandler(pool, onError === undefined ? {} : { onError }));
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

function poolOf(t: TestContext, backends: { port: number; id: string }[], options: UpstreamPoolOptions = {}): UpstreamPool {
  const pool = new UpstreamPool({ ...options, backends: backends.map((b) => ({ host: HOST, port: b.port, id: b.id })) });
  t.after(() => pool.destroy());
  return pool;
}

/** A raw client: sends the upgrade request and `early` bytes in one write, so the gateway sees them as `head`. */
async function rawUpgrade(t: TestContext, port: number, early = ''): Promise<Socket> {
  const socket = net.connect({ host: HOST, port });
  socket.on('error', () => {});
  t.after(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  socket.write(
    'GET /stream?x=1 HTTP/1.1\r\n' +
      'Host: gateway.test\r\n' +
      'X-Mixed-CASE: one\r\n' +
      'Connection: Upgrade\r\n' +
      'Upgrade: shout\r\n' +
      'x-dup: a\r\n' +
      'X-Dup: b\r\n' +
      '\r\n' +
      early,
  );
  return socket;
}

test('an upgrade is relayed with its raw headers and head, pinned, carries bytes both ways, and is torn down on markDown', async (t) => {
  const a = await upgradeBackend(t, 'a');
  const b = await upgradeBackend(t, 'b');
  const pool = poolOf(t, [{ port: a.port, id: 'a' }, { port: b.port, id: 'b' }]);
  const port = await gateway(t, pool);

  const client = await rawUpgrade(t, port, 'early bytes\n');
  const lines = new Lines(client);
  assert.equal(await lines.next(), 'HTTP/1.1 101 Switching Protocols\r');
  const name = await lines.afterHead();
  assert.ok(name === 'a' || name === 'b');
  const backend = name === 'a' ? a : b;
  assert.equal(await lines.next(), `${name}:EARLY BYTES`, 'head reached the backend first');

  // The backend saw the request exactly as the client sent it.
  assert.equal(backend.seen.length, 1);
  assert.equal(backend.seen[0]!.method, 'GET');
  assert.equal(backend.seen[0]!.url, '/stream?x=1');
  assert.deepEqual(backend.seen[0]!.rawHeaders, [
    'Host', 'gateway.test', 'X-Mixed-CASE', 'one', 'Connection', 'Upgrade', 'Upgrade', 'shout', 'x-dup', 'a', 'X-Dup', 'b',
  ]);

  for (let i = 0; i < 20; i++) {
    client.write(`ping ${i}\n`);
    assert.equal(await lines.next(), `${name}:PING ${i}`);
  }

  const pinned = [...pool.connections(name)];
  assert.equal(pinned.length, 1);
  const conn = pinned[0]!;
  assert.ok(conn.bytesFromClient > 0 && conn.bytesFromUpstream > 0);
  let clientError: string | undefined;
  client.on('error', (err: NodeJS.ErrnoException) => (clientError = err.code));
  const closed = new Promise((resolve) => client.once('close', resolve));
  assert.equal(pool.markDown(name, 'probe-failed'), 1);
  assert.ok(conn.closed && conn.client.destroyed && conn.upstream.destroyed, 'torn down before markDown returned');
  assert.equal(conn.closedInfo?.reason, 'probe-failed');
  assert.equal([...pool.connections(name)].length, 0);
  await closed;
  assert.equal(clientError, 'ECONNRESET', 'the client is reset (resetOnTeardown), so it notices at once');

  // The client reconnects and lands on the other backend.
  const again = await rawUpgrade(t, port);
  assert.equal(await new Lines(again).afterHead(), name === 'a' ? 'b' : 'a');
});

test('with no backend up the client is answered 503 and told the code', async (t) => {
  const a = await upgradeBackend(t, 'a');
  const pool = poolOf(t, [{ port: a.port, id: 'a' }], { queue: { max: 0 } });
  pool.markDown('a');
  const errors: string[] = [];
  const port = await gateway(t, pool, (err) => errors.push(err.code));
  const client = await rawUpgrade(t, port);
  let answer = '';
  client.setEncoding('latin1');
  client.on('data', (c: string) => (answer += c));
  await once(client, 'end');
  assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(answer, /\r\n\r\nNO_HEALTHY_BACKEND\n$/);
  assert.deepEqual(errors, ['NO_HEALTHY_BACKEND']);
  assert.equal(a.seen.length, 0);
});

test('a backend that refuses the connection gets the client a 502', async (t) => {
  const refused = await closedPort();
  const pool = poolOf(t, [{ port: refused, id: 'gone' }]);
  const errors: string[] = [];
  const port = await gateway(t, pool, (err) => errors.push(err.code));
  const client = await rawUpgrade(t, port);
  let answer = '';
  client.setEncoding('latin1');
  client.on('data', (c: string) => (answer += c));
  await once(client, 'end');
  assert.match(answer, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  assert.match(answer, /CONNECT_FAILED\n$/);
  assert.deepEqual(errors, ['CONNECT_FAILED']);
});

test('a dial that hangs gets the client a 504, the status createHttpProxy answers for it', async (t) => {
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: 1, id: 'hangs' }],
    retries: 0,
    connectTimeout: 200,
    dial: (_backend, { signal }) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))),
  });
  t.after(() => pool.destroy());
  const errors: string[] = [];
  const port = await gateway(t, pool, (err) => errors.push(err.code));
  const client = await rawUpgrade(t, port);
  let answer = '';
  client.setEncoding('latin1');
  client.on('data', (c: string) => (answer += c));
  await once(client, 'end');
  assert.match(answer, /^HTTP\/1\.1 504 Gateway Timeout\r\n/);
  assert.match(answer, /CONNECT_TIMEOUT\n$/);
  assert.deepEqual(errors, ['CONNECT_TIMEOUT']);
});

test('a client that leaves while waiting for a backend cancels its placement', async (t) => {
  const a = await upgradeBackend(t, 'a');
  const pool = poolOf(t, [{ port: a.port, id: 'a' }], { queue: { max: 10, timeout: 60_000 } });
  pool.markDown('a');
  const errors: string[] = [];
  const port = await gateway(t, pool, (err) => errors.push(err.code));
  const client = await rawUpgrade(t, port);
  await waitFor(() => pool.stats().waiting === 1, { what: 'the upgrade to wait in the queue' });
  // A reset is a client leaving; a FIN alone is not (as with pin(), it would be forwarded).
  client.resetAndDestroy();
  await waitFor(() => errors.length === 1, { what: 'the placement to be cancelled' });
  assert.deepEqual(errors, ['CLIENT_CLOSED']);
  assert.equal(pool.stats().waiting, 0);
  pool.markUp('a');
  assert.equal(a.seen.length, 0, 'the backend never saw it');
});

test('createUpgradeHandler validates its options once, up front', (t) => {
  const pool = poolOf(t, []);
  assert.throws(() => createUpgradeHandler(pool, { conection: {} } as never), (err: FailoverProxyError) => err.code === 'INVALID_ARGUMENT');
  assert.throws(() => createUpgradeHandler(pool, { connection: { idleTimeout: -1 } }), (err: FailoverProxyError) => {
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, /connection\.idleTimeout/);
    return true;
  });
  assert.throws(() => createUpgradeHandler(pool, { onError: 'log' as never }), (err: FailoverProxyError) => err.code === 'INVALID_ARGUMENT');
});
