// The fault proxy is the instrument every failover test reads its results
// through, so it gets its own tests: if `cut()` leaked a single FIN, a test of
// silent-failure detection could pass for the wrong reason.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { FaultProxy } from '../../examples/support/fault-proxy.js';
import { activeResources } from '../helpers/net.js';

/** How long "nothing happens" is watched for. An absence, never a speed. */
const QUIET_MS = 500;
/** A backstop so a regression fails the test instead of hanging the file. */
const opts = { timeout: 20_000 };

interface Target {
  readonly server: Server;
  readonly port: number;
  /** Server-side sockets, in accept order. */
  readonly sockets: Socket[];
  /** Resolves with the next accepted socket. */
  next(): Promise<Socket>;
}

async function startTarget(t: TestContext): Promise<Target> {
  const sockets: Socket[] = [];
  // Half-open allowed so a test can keep sending after the client's FIN.
  const server = createServer({ allowHalfOpen: true });
  server.on('connection', (socket) => {
    socket.on('error', () => {});
    sockets.push(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => closeTarget(server, sockets));
  return {
    server,
    sockets,
    port: (server.address() as AddressInfo).port,
    async next() {
      const [socket] = (await once(server, 'connection')) as [Socket];
      return socket;
    },
  };
}

/** Resolves once the server and every socket it accepted have closed their handles. */
async function closeTarget(server: Server, sockets: readonly Socket[]): Promise<void> {
  // server.close() calls back as soon as its sockets are destroyed, which is
  // before their handles are closed: wait for each 'close' as well.
  const closed = [new Promise((resolve) => server.close(resolve)), ...sockets.map(destroyed)];
  await Promise.all(closed);
  // The server's handle finishes closing after its callback: see handlesClosed() in fault-proxy.ts.
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function destroyed(socket: Socket): Promise<void> {
  if (socket.closed) return;
  socket.destroy();
  await once(socket, 'close');
}

async function startProxy(t: TestContext, target: Target): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: target.port } });
  t.after(() => proxy.close());
  return proxy;
}

async function dial(t: TestContext, proxy: FaultProxy): Promise<Socket> {
  const socket = connect(proxy.port, proxy.host);
  socket.on('error', () => {});
  t.after(() => destroyed(socket));
  await once(socket, 'connect');
  return socket;
}

/** Records every event that would mean the cut was not silent. */
function watch(socket: Socket): string[] {
  const seen: string[] = [];
  socket.on('data', (chunk: Buffer) => seen.push(`data(${chunk.length})`));
  socket.on('end', () => seen.push('end'));
  socket.on('close', () => seen.push('close'));
  socket.on('error', (err: NodeJS.ErrnoException) => seen.push(`error(${err.code ?? err.message})`));
  return seen;
}

/** Sends `ping` from the client and `pong` from the server: proves the path forwards. */
async function roundTrip(client: Socket, server: Socket): Promise<void> {
  const atServer = once(server, 'data');
  client.write('ping');
  assert.equal(String((await atServer)[0]), 'ping');
  const atClient = once(client, 'data');
  server.write('pong');
  assert.equal(String((await atClient)[0]), 'pong');
}

function sha256(socket: Socket): Promise<string> {
  const hash = createHash('sha256');
  socket.on('data', (chunk: Buffer) => hash.update(chunk));
  return once(socket, 'end').then(() => hash.digest('hex'));
}

const digest = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex');

test('forwards bytes intact in both directions, with half-close', opts, async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target);
  const up = randomBytes(4 * 1024 * 1024);
  const down = randomBytes(3 * 1024 * 1024 + 17);

  const accepted = target.next();
  const client = await dial(t, proxy);
  const server = await accepted;
  const atServer = sha256(server);
  const atClient = sha256(client);
  client.end(up);
  // The client has already sent FIN; the reply must still get through.
  assert.equal(await atServer, digest(up));
  server.end(down);
  assert.equal(await atClient, digest(down));
  assert.equal(proxy.mode, 'forwarding');
});

test('cut(): no byte, FIN, RST or close reaches either peer of an open connection', opts, async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target);
  const accepted = target.next();
  const client = await dial(t, proxy);
  const server = await accepted;
  await roundTrip(client, server);

  assert.equal(proxy.cutAt, undefined);
  const before = Date.now();
  proxy.cut();
  assert.equal(proxy.mode, 'cut');
  assert.ok(proxy.cutAt !== undefined && proxy.cutAt >= before);

  const atClient = watch(client);
  const atServer = watch(server);
  client.write('lost upstream');
  // Enough to fill every buffer between here and the paused proxy socket.
  client.write(Buffer.alloc(32 * 1024 * 1024));
  server.write('lost downstream');
  server.end(); // a FIN from the backend must not reach the client either
  await delay(QUIET_MS);

  assert.deepEqual(atClient, [], 'client saw something after the cut');
  assert.deepEqual(atServer, [], 'server saw something after the cut');
  assert.ok(client.writableLength > 0, 'a dead link must push back: the client write should still be pending');
  assert.equal(proxy.connections, 1);

  // A restore does not resurrect connections that were open across the cut.
  proxy.restore();
  await delay(QUIET_MS);
  assert.deepEqual(atClient, []);
  assert.deepEqual(atServer, []);

  // ...but new ones are forwarded again.
  const acceptedAfter = target.next();
  const client2 = await dial(t, proxy);
  await roundTrip(client2, await acceptedAfter);
});

test('cut(): new connections are accepted but never forwarded, answered or closed', opts, async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target);
  proxy.cut();

  const client = await dial(t, proxy); // the proxy's kernel still completes the handshake
  const seen = watch(client);
  client.write('anyone there?');
  client.end(); // not even a FIN makes it answer
  await delay(QUIET_MS);

  assert.deepEqual(seen, []);
  assert.equal(target.sockets.length, 0, 'the target must never see the connection');
  assert.equal(proxy.connections, 1);
});

test('reset(): both peers get ECONNRESET', opts, async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target);
  const accepted = target.next();
  const client = await dial(t, proxy);
  const server = await accepted;
  await roundTrip(client, server);

  const clientError = once(client, 'error');
  const serverError = once(server, 'error');
  proxy.reset();
  const [clientErr] = (await clientError) as [NodeJS.ErrnoException];
  const [serverErr] = (await serverError) as [NodeJS.ErrnoException];
  assert.equal(clientErr.code, 'ECONNRESET');
  assert.equal(serverErr.code, 'ECONNRESET');
  assert.equal(proxy.mode, 'forwarding');

  // Still forwarding new connections after a reset.
  const acceptedAfter = target.next();
  const client2 = await dial(t, proxy);
  await roundTrip(client2, await acceptedAfter);
});

test('reset() after cut() releases silenced connections with an RST', opts, async (t) => {
  const target = await startTarget(t);
  const proxy = await startProxy(t, target);
  const accepted = target.next();
  const client = await dial(t, proxy);
  const server = await accepted;
  await roundTrip(client, server);
  proxy.cut();

  const clientError = once(client, 'error');
  proxy.reset();
  const [err] = (await clientError) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
});

test('an upstream that refuses connections is passed on as a reset', opts, async (t) => {
  // Grab a free port, then close it, so the connect is refused.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  await closeTarget(probe, []);

  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port } });
  t.after(() => proxy.close());
  const client = await dial(t, proxy);
  client.resume();
  const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
});

test('close() is idempotent and leaves no handle behind', opts, async (t) => {
  const resourcesBefore = activeResources();
  const target = await startTarget(t);
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: target.port } });

  const accepted = target.next();
  const forwarded = connect(proxy.port, proxy.host);
  forwarded.on('error', () => {});
  await once(forwarded, 'connect');
  await roundTrip(forwarded, await accepted);
  proxy.cut();
  const silenced = connect(proxy.port, proxy.host);
  silenced.on('error', () => {});
  await once(silenced, 'connect');
  // The proxy only learns of the silent connection once it is accepted.
  while (proxy.connections < 2) await delay(5);

  const first = proxy.close();
  assert.equal(proxy.close(), first);
  await first;
  assert.equal(proxy.connections, 0);

  await Promise.all([destroyed(forwarded), destroyed(silenced), closeTarget(target.server, target.sockets)]);
  assert.deepEqual(activeResources(), resourcesBefore);
});

test('start() rejects a bad target and a busy port', opts, async (t) => {
  await assert.rejects(FaultProxy.start({ target: { host: '127.0.0.1', port: 0 } }), TypeError);
  const target = await startTarget(t);
  const proxy = await startProxy(t, target);
  await assert.rejects(
    FaultProxy.start({ target: { host: '127.0.0.1', port: target.port }, port: proxy.port }),
    (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE',
  );
});
