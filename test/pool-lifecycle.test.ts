import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { FailoverProxyError, UpstreamPool, type UpstreamPoolOptions } from '../src/index.js';
import { activeResources, connect, frontend, HOST, listen, namedServer, readLine, settle, waitFor } from './helpers/net.js';

test('drain: no new connections; open ones finish on their own or are destroyed with reason drained at the deadline', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const clients = [];
  for (let i = 0; i < 6; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().active === 6);
  const onA = [...pool.connections('a')];
  assert.equal(onA.length, 3);
  const states: string[] = [];
  pool.on('backendStateChanged', (_b, c) => states.push(`${c.from}->${c.to}`));
  const drained = pool.drain('a', { timeout: 500 });
  assert.equal(pool.status('a')?.state, 'draining');
  // One finishes by itself before the deadline.
  onA[0]!.client.destroy();
  onA[0]!.destroy('client-closed');
  // New clients only go to b.
  for (let i = 0; i < 3; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 8);
  assert.equal([...pool.connections('a')].length, 2);
  await drained;
  assert.equal([...pool.connections('a')].length, 0);
  assert.equal(pool.stats().teardowns.drained, 2);
  assert.equal(pool.status('a')?.state, 'draining', 'stays draining until markReady');
  assert.deepEqual(states, ['up->draining']);
  pool.markUp('a');
  assert.equal(pool.status('a')?.state, 'draining', 'markUp is health: the operator\'s drain stays');
  pool.markReady('a');
  assert.equal(pool.status('a')?.state, 'up');
});

test('remove tears down at once with reason backend-removed; remove with drain waits first', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 4; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 4);
  const removed: string[] = [];
  pool.on('backendRemoved', (bk) => removed.push(bk.id));
  const done = pool.remove('a');
  assert.equal(pool.has('a'), false);
  assert.deepEqual(removed, ['a']);
  assert.equal(pool.stats().active, 2);
  assert.equal(pool.stats().teardowns['backend-removed'], 2);
  await done;
  const drainRemove = pool.remove('b', { drain: true, timeout: 200 });
  assert.equal(pool.has('b'), true, 'still there while draining');
  await drainRemove;
  assert.equal(pool.has('b'), false);
  assert.equal(pool.stats().teardowns.drained, 2);
  assert.throws(() => pool.markDown('a'), { code: 'UNKNOWN_BACKEND' });
});

test('close() waits for connections up to its deadline, then destroys them (pool-closed); it leaves no socket or timer', async (t) => {
  await settle();
  const before = activeResources();
  const { port: up, server, sockets } = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: up }], initialState: 'up' });
  const { port, server: front } = await (async () => {
    const l = await listen(t, (s) => pool.accept(s));
    return { port: l.port, server: l.server };
  })();
  const clients = [];
  for (let i = 0; i < 5; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().active === 5);
  // A waiting client too: everything else down.
  const reasons: string[] = [];
  pool.on('connectionClosed', (_c, info) => reasons.push(info.reason));
  const p1 = pool.close({ timeout: 100 });
  const p2 = pool.close();
  assert.equal(p1, p2, 'close is idempotent and returns the same promise');
  assert.equal(pool.destroy(), p1, 'destroy during close joins it');
  await p1;
  assert.equal(reasons.length, 5);
  assert.throws(() => pool.add({ host: HOST, port: 1 }), { code: 'POOL_CLOSED' });
  await assert.rejects(pool.connect(), { code: 'POOL_CLOSED' });
  // Tear down the test's own listeners and clients, then compare.
  for (const c of clients) c.destroy();
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => front.close(() => r()));
  await settle(5);
  assert.deepEqual(activeResources(), before);
});

test('close() fails waiting clients with POOL_CLOSED and aborts dials in flight', async (t) => {
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 9, id: 'x' }], initialState: 'probe' });
  const codes: string[] = [];
  pool.on('pinFailed', (err) => codes.push(err.code));
  const port = await frontend(t, pool);
  await connect(t, port);
  await waitFor(() => pool.stats().waiting === 1);
  await pool.close();
  await waitFor(() => codes.length === 1);
  assert.deepEqual(codes, ['POOL_CLOSED']);
  let closedEvents = 0;
  pool.on('closed', () => closedEvents++);
  await pool.close();
  assert.equal(closedEvents, 0, 'a second close does not emit again');
});

test('await using disposes the pool', async (t) => {
  const a = await namedServer(t, 'a');
  let pool: UpstreamPool | undefined;
  {
    await using p = new UpstreamPool({ backends: [{ host: HOST, port: a.port }], closeTimeout: 0 });
    pool = p;
  }
  assert.equal(pool.closed, true);
});

test('events: backendAdded, backendUp/Down with from/to/reason, connectionOpened/Closed', async (t) => {
  const a = await namedServer(t, 'a');
  const pool = new UpstreamPool();
  t.after(() => pool.destroy());
  const events: string[] = [];
  pool.on('backendAdded', (b) => events.push(`added ${b.id}`));
  pool.on('backendDown', (b, c) => events.push(`down ${b.id} ${c.from}->${c.to} ${c.reason} ${c.tornDown}`));
  pool.on('backendUp', (b, c) => events.push(`up ${b.id} ${c.from}->${c.to} ${c.reason}`));
  pool.on('connectionOpened', (c) => events.push(`opened ${c.backend?.id}`));
  pool.on('connectionClosed', (c, info) => events.push(`closed ${c.backend?.id} ${info.reason}`));
  pool.add({ host: HOST, port: a.port, id: 'a' });
  const port = await frontend(t, pool);
  const client = await connect(t, port);
  assert.equal(await readLine(client), 'a');
  pool.markDown('a', 'probe-failed');
  pool.markUp('a', 'probe-passed');
  assert.deepEqual(events, [
    'added a',
    'opened a',
    'closed a probe-failed',
    'down a up->down probe-failed 1',
    'up a down->up probe-passed',
  ]);
});

test('every invalid option throws INVALID_ARGUMENT naming the option', async () => {
  const bad: [UpstreamPoolOptions, RegExp][] = [
    [{ connectTimeout: 0 }, /connectTimeout/],
    [{ connectTimeout: 1.5 }, /connectTimeout/],
    [{ retries: -1 }, /retries/],
    [{ queue: { max: -1 } }, /queue\.max/],
    [{ queue: { timeout: 0 } }, /queue\.timeout/],
    [{ maxConnections: 0 }, /maxConnections/],
    [{ balancer: 'fastest' as never }, /balancer/],
    [{ initialState: 'maybe' as never }, /initialState/],
    [{ resetOnTeardown: 1 as never }, /resetOnTeardown/],
    [{ proxyProtocol: 'v3' as never }, /proxyProtocol/],
    [{ connection: { idleTimeout: -5 } }, /connection\.idleTimeout/],
    [{ connection: { keepAlive: 'on' as never } }, /connection\.keepAlive/],
    [{ backends: [{ host: '', port: 80 }] }, /backends\[0\]\.host/],
    [{ backends: [{ host: 'a', port: 70000 }] }, /backends\[0\]\.port/],
    [{ backends: [{ host: 'a', port: 80, weight: -1 }] }, /backends\[0\]\.weight/],
    [{ backends: 'a:80' as never }, /backends/],
    [{ dial: 'net' as never }, /dial/],
    [{ clock: {} as never }, /clock/],
    [{ connectTimout: 5 } as never, /connectTimout/],
  ];
  for (const [options, message] of bad) {
    assert.throws(
      () => new UpstreamPool(options),
      (err: unknown) => err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT' && message.test(err.message),
      `${JSON.stringify(options)} should be rejected`,
    );
  }
  const pool = new UpstreamPool({ backends: [{ host: 'a', port: 1 }] });
  assert.throws(() => pool.add({ host: 'a', port: 1 }), { code: 'DUPLICATE_BACKEND' });
  assert.throws(() => pool.markUp('nope'), { code: 'UNKNOWN_BACKEND' });
  // drain() and remove() return promises: bad input rejects them (never a synchronous throw) and changes nothing.
  await assert.rejects(pool.drain('a:1', { timeout: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.equal(pool.status('a:1')?.admin, 'active');
  await assert.rejects(pool.drain('nope'), { code: 'UNKNOWN_BACKEND' });
  await assert.rejects(pool.remove('nope'), { code: 'UNKNOWN_BACKEND' });
  await assert.rejects(pool.remove('a:1', { drain: 'yes' } as never), { code: 'INVALID_ARGUMENT' });
  assert.ok(pool.has('a:1'));
  void pool.destroy();
});

test('an invalid option message says what was expected and what was given', () => {
  assert.throws(() => new UpstreamPool({ retries: -1 }), {
    message: 'Expected `retries` to be an integer from 0 to 1000, got `-1` (number)',
  });
});

test('pin rejects with POOL_CLOSED after close, and the client is closed', async (t) => {
  const a = await namedServer(t, 'a');
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port }] });
  await pool.close();
  const codes: string[] = [];
  const { port } = await listen(t, (s) => {
    pool.pin(s).catch((err: FailoverProxyError) => codes.push(err.code));
  });
  const c = await connect(t, port);
  c.resume();
  await once(c, 'end');
  assert.deepEqual(codes, ['POOL_CLOSED']);
});
