import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type ConnectionClosedInfo, type PinnedConnection } from '../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

test('markDown destroys every connection pinned to the backend before it returns; others are untouched', async (t) => {
  const ports: number[] = [];
  const serverSockets: Set<Socket>[] = [];
  for (let i = 0; i < 3; i++) {
    const { port, sockets } = await listen(t);
    ports.push(port);
    serverSockets.push(sockets);
  }
  // Every member closed inside the call, whatever their number: the strict
  // form of the contract (test/teardown-slices.test.ts covers the sliced one).
  const pool = new UpstreamPool({
    backends: ports.map((port, i) => ({ host: HOST, port, id: `b${i + 1}` })),
    teardown: { syncMax: Infinity },
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);

  const N = 1000;
  // Bounded fan-out: 50 connects in flight at a time.
  for (let i = 0; i < N; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => connect(t, port)));
  }
  await waitFor(() => pool.stats().active === N, { what: `${N} pinned connections` });

  const b3 = [...pool.connections('b3')];
  const others = [...pool.connections('b1'), ...pool.connections('b2')];
  assert.ok(b3.length >= 300, `b3 holds ${b3.length}`);
  const closedReasons: string[] = [];
  pool.on('connectionClosed', (_c, info: ConnectionClosedInfo) => closedReasons.push(info.reason));
  let downEvent: { tornDown: number } | undefined;
  pool.on('backendDown', (_b, change) => (downEvent = change));

  const tornDown = pool.markDown('b3', 'probe-failed');

  // Everything below runs before any await: the teardown was synchronous.
  assert.equal(tornDown, b3.length);
  assert.equal([...pool.connections('b3')].length, 0, 'b3 registry empty');
  assert.ok(b3.every((c: PinnedConnection) => c.closed && c.client.destroyed && c.upstream.destroyed), 'every b3 socket destroyed');
  assert.ok(others.every((c) => !c.closed && !c.client.destroyed && !c.upstream.destroyed), 'b1 and b2 untouched');
  assert.equal(closedReasons.length, b3.length);
  assert.ok(closedReasons.every((r) => r === 'probe-failed'));
  assert.equal(downEvent?.tornDown, b3.length);
  assert.equal(pool.status('b3')?.state, 'down');
  const stats = pool.stats();
  assert.equal(stats.active, N - b3.length);
  assert.equal(stats.teardowns['probe-failed'], b3.length);
  assert.equal(stats.backends.find((b) => b.id === 'b3')!.active, 0);

  // And the far side sees it: b3's server sockets all close.
  await waitFor(() => serverSockets[2]!.size === 0 || [...serverSockets[2]!].every((s) => s.readableEnded || s.destroyed), {
    what: 'b3 server sockets to see the teardown',
  });
});

test('a new connection while a backend is down never lands on it; markUp brings it back', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  pool.markDown('b');
  for (let i = 0; i < 10; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 10);
  assert.equal([...pool.connections('b')].length, 0);
  pool.markUp('b');
  for (let i = 0; i < 10; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 20);
  assert.equal([...pool.connections('b')].length, 10, 'least-connections fills the returning backend first');
});

test('a dial that completes after its backend was marked down is discarded and placed elsewhere', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  let release: (() => void) | undefined;
  const { connect: netConnect } = await import('node:net');
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: a.port, id: 'slow' }, { host: HOST, port: b.port, id: 'fast' }],
    balancer: (cands) => cands.find((c) => c.backend.id === 'slow') ?? cands[0],
    dial: async (backend) => {
      if (backend.id === 'slow') await new Promise<void>((r) => (release = r));
      const s = netConnect({ host: backend.host, port: backend.port, allowHalfOpen: true });
      await new Promise((r) => s.once('connect', r));
      return s;
    },
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  await connect(t, port);
  await waitFor(() => release !== undefined, { what: 'the slow dial to start' });
  pool.markDown('slow');
  release!();
  await waitFor(() => pool.stats().active === 1);
  assert.equal([...pool.connections('slow')].length, 0);
  assert.equal([...pool.connections('fast')].length, 1);
});

test('markMaintenance tears down like markDown and reports the maintenance event', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 5; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 5);
  const events: string[] = [];
  pool.on('backendMaintenance', (_b, change) => events.push(`${change.from}->${change.to}:${change.tornDown}`));
  assert.equal(pool.markMaintenance('a'), 5);
  assert.deepEqual(events, ['up->maintenance:5']);
  assert.equal(pool.stats().teardowns.maintenance, 5);
});
