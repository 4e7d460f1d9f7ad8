// The pool's lifecycle: open -> closing -> closed. While it closes, verdicts
// stay live (a backend that fails is torn down as usual, nothing throws);
// close() and drain() ask their members to close (FIN for pairs, idle agent
// sockets evicted at once) and the deadline destroys what is left.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool } from '../src/index.js';
import { connect, echoServer, frontend, handlesSettledTo, HOST, listen, waitFor } from './helpers/net.js';

/** A long deadline: whatever resolves before half of it was not held by it, even on a loaded machine. */
const LONG = 30_000;

/** Resolves with `'settled'` when `promise` settles first, `'deadline'` when `ms` pass first. */
async function before(promise: Promise<unknown>, ms: number): Promise<'settled' | 'deadline'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), ms)));
  try {
    return await Promise.race([promise.then(() => 'settled' as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function keepAliveServer(t: Parameters<typeof listen>[0]): Promise<number> {
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => res.end('ok'));
  server.listen(0, HOST);
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

function get(agent: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: 'pool', path: '/', agent }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

test('a verdict while the pool closes tears the backend down as usual and throws nothing', async (t) => {
  // A backend and clients that never answer a FIN: the pairs stay open through the graceful close.
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 4; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 4);
  const reasons: string[] = [];
  pool.on('connectionClosed', (_m, info) => reasons.push(info.reason));
  const closing = pool.close({ timeout: LONG });
  assert.equal(pool.state, 'closing');
  assert.equal(pool.stats().state, 'closing');
  assert.equal(pool.closed, true, '`closed` keeps its meaning: close() was called');
  let tornDown = -1;
  assert.doesNotThrow(() => (tornDown = pool.markDown('a', 'probe-failed')));
  assert.equal(tornDown, 2, 'the members of a backend that fails mid-close are torn down at once');
  assert.equal(pool.status('a')?.health, 'down');
  assert.deepEqual(reasons, ['probe-failed', 'probe-failed']);
  assert.doesNotThrow(() => pool.markUp('a', 'probe-passed'), 'a backend coming back is recorded too');
  await assert.rejects(pool.connect(), { code: 'POOL_CLOSED' }, 'no new placement while closing');
  assert.throws(() => pool.add({ host: HOST, port: 1 }), { code: 'POOL_CLOSED' });
  pool.markDown('b', 'probe-failed');
  assert.equal(await before(closing, LONG / 2), 'settled', 'with no member left, close() resolves without waiting for its deadline');
  assert.equal(pool.state, 'closed');
  // Once closed, the pool refuses everything (a verdict included) with POOL_CLOSED.
  assert.throws(() => pool.markDown('a', 'probe-failed'), { code: 'POOL_CLOSED' });
  assert.throws(() => pool.markMaintenance('a'), { code: 'POOL_CLOSED' });
});

test('close() evicts an idle keep-alive agent socket at once instead of waiting out its deadline', async (t) => {
  const port = await keepAliveServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port, id: 'a' }] });
  t.after(() => pool.destroy());
  const agent = pool.createAgent();
  t.after(() => agent.destroy());
  assert.equal(await get(agent), 'ok');
  await waitFor(() => Object.values(agent.freeSockets).flat().length === 1, { what: 'one idle keep-alive socket' });
  assert.equal(pool.stats().active, 1);
  const reasons: string[] = [];
  pool.on('connectionClosed', (_m, info) => reasons.push(info.reason));
  const closing = pool.close({ timeout: LONG });
  assert.equal(await before(closing, LONG / 2), 'settled', 'close() was held by an idle socket');
  assert.deepEqual(reasons, ['pool-closing'], 'closed gracefully, not cut at the deadline');
  assert.equal(Object.values(agent.freeSockets).flat().length, 0);
});

test('close() sends FIN on every pair; clients that answer it leave before the deadline', async (t) => {
  const a = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const c = await connect(t, port);
    c.on('end', () => c.end()); // answers a FIN with a FIN
    c.resume();
    clients.push(c);
  }
  await waitFor(() => pool.stats().active === 3);
  const ended: Promise<unknown>[] = clients.map((c) => new Promise((resolve) => c.once('end', resolve)));
  const closing = pool.close({ timeout: LONG });
  assert.equal(await before(Promise.all([closing, ...ended]), LONG / 2), 'settled');
  assert.equal(pool.stats().teardowns['pool-closing'], 3);
  assert.equal(pool.stats().teardowns['pool-closed'], undefined, 'none was left for the deadline');
});

test('close() and destroy() are idempotent and return the same promise; asyncDispose delegates to close()', async (t) => {
  const a = await listen(t);
  let closes = 0;
  class Counting extends UpstreamPool {
    override close(...args: Parameters<UpstreamPool['close']>): Promise<void> {
      closes++;
      return super.close(...args);
    }
  }
  const pool = new Counting({ backends: [{ host: HOST, port: a.port }], closeTimeout: 0 });
  assert.equal(pool.state, 'open');
  await pool[Symbol.asyncDispose]();
  assert.equal(closes, 1, '[Symbol.asyncDispose] calls close()');
  assert.equal(pool.state, 'closed');
  const first = pool.close();
  assert.equal(pool.close(), first);
  assert.equal(pool.destroy(), first);
  assert.equal(pool.destroy(), first);

  const other = new UpstreamPool({ backends: [{ host: HOST, port: a.port }] });
  const d1 = other.destroy();
  assert.equal(other.destroy(), d1);
  assert.equal(other.close(), d1);
  await d1;
  assert.equal(other.state, 'closed');
});

test('a pair asked to close and torn down in the same tick (drain, then markDown with reset) leaves no socket open', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }], resetOnTeardown: true });
  const port = await frontend(t, pool);
  const clients = [];
  for (let i = 0; i < 4; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().active === 4);
  void pool.drain('a', { timeout: LONG });
  const onA = [...pool.members('a')];
  assert.equal(pool.markDown('a'), onA.length);
  await pool.destroy();
  for (const c of clients) c.destroy();
  for (const s of [...a.sockets, ...b.sockets]) s.destroy();
  await Promise.all([a.server, b.server].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  // Only the front listener (closed after the test) may be left of ours.
  const left = await handlesSettledTo(['TCPServerWrap']);
  assert.deepEqual(left.filter((h) => h === 'TCPSocketWrap'), [], 'a socket outlived its pair');
});
