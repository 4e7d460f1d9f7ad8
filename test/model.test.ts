// The core model: two state axes, one member contract, one pool per member,
// live backends, and what a new user tripped on (issue: core model).
import assert from 'node:assert/strict';
import type { AddressInfo, Socket } from 'node:net';
import { test } from 'node:test';
import {
  HealthProbe,
  PinnedConnection,
  PinnedSocket,
  UpstreamPool,
  isPoolMember,
  type StateChange,
} from '../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

function switchable(): { check: () => Promise<void>; state: { healthy: boolean } } {
  const state = { healthy: true };
  return { state, check: () => (state.healthy ? Promise.resolve() : Promise.reject(new Error('unhealthy'))) };
}

test('an operator drain survives failed and passing checks; markReady ends it', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  const { check, state } = switchable();
  const probe = new HealthProbe({ check, rise: 2, fall: 2, autoStart: false });
  t.after(async () => {
    await probe.stop();
    await pool.destroy();
  });
  probe.attach(pool);
  void pool.drain('a');
  state.healthy = false;
  await probe.checkNow('a');
  await probe.checkNow('a');
  assert.equal(pool.status('a')?.health, 'down');
  assert.equal(pool.status('a')?.admin, 'draining', 'a failure does not end the drain');
  assert.equal(pool.status('a')?.cause.code, 'PROBE_CHECK_FAILED');
  assert.equal(pool.status('a')?.cause.source, 'probe');
  state.healthy = true;
  await probe.checkNow('a');
  await probe.checkNow('a');
  assert.equal(pool.status('a')?.health, 'up');
  assert.equal(pool.status('a')?.admin, 'draining', 'a recovery does not end the drain either');
  assert.equal(pool.status('a')?.state, 'draining');
  assert.equal(pool.status('a')?.eligible, false);
  pool.markReady('a');
  assert.equal(pool.status('a')?.state, 'up');
  assert.equal(pool.status('a')?.eligible, true);
});

test('maintenance records verdicts and acts on none; the health is current when it ends', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  const { check, state } = switchable();
  const probe = new HealthProbe({ check, rise: 1, fall: 1, autoStart: false });
  t.after(async () => {
    await probe.stop();
    await pool.destroy();
  });
  probe.attach(pool);
  const changes: StateChange[] = [];
  pool.on('backendStateChanged', (_b, c) => changes.push(c));
  pool.markMaintenance('a');
  state.healthy = false;
  await probe.checkNow('a');
  assert.equal(pool.status('a')?.health, 'down', 'recorded');
  assert.equal(pool.status('a')?.admin, 'maintenance');
  pool.markReady('a');
  assert.equal(pool.status('a')?.eligible, false, 'still down after maintenance');
  state.healthy = true;
  await probe.checkNow('a');
  assert.equal(pool.status('a')?.eligible, true);
  assert.deepEqual(
    changes.map((c) => `${c.axis}:${c.previous.state}->${c.to}`),
    ['admin:up->maintenance', 'health:maintenance->maintenance', 'admin:maintenance->down', 'health:down->up'],
  );
  assert.ok(changes.every((c) => (JSON.parse(JSON.stringify(c.cause)) as { code: string }).code === c.cause.code), 'causes are plain data');
});

test('health down tears members down whatever the admin state, in the same call', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 4; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 4);
  void pool.drain('a');
  const onA = [...pool.members('a')];
  assert.ok(onA.length > 0);
  assert.equal(pool.markDown('a'), onA.length);
  assert.equal([...pool.members('a')].length, 0);
  assert.ok(onA.every((m) => m.closed));
});

test('a member belongs to one pool: registering it with a second throws, the first is unaffected and closes', async (t) => {
  const a = await listen(t);
  const pool1 = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  const pool2 = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  const { backend, socket } = await pool1.connect();
  const member = new PinnedSocket(socket, { backend });
  pool1.register(member);
  assert.equal(pool1.stats().active, 1);
  assert.throws(() => pool2.register(member), { code: 'MEMBER_ALREADY_REGISTERED' });
  assert.equal(pool1.stats().active, 1, 'the first pool still counts it once');
  assert.equal(pool2.stats().active, 0);
  assert.equal(member.closed, false);
  pool1.register(member); // idempotent in its own pool
  assert.equal(pool1.stats().total, 1);
  member.destroy('done');
  await pool1.close({ timeout: 1000 });
  await pool2.close();
  assert.equal(pool1.stats().active, 0);
});

test('members are recognised by brand, not class; register refuses anything else with INVALID_ARGUMENT', async () => {
  const pool = new UpstreamPool({ backends: ['127.0.0.1:1'] });
  assert.throws(() => pool.register({} as never), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => pool.register(null as never), { code: 'INVALID_ARGUMENT' });
  assert.equal(isPoolMember({ [Symbol.for('failover-proxy.member')]: 'connection' }), true);
  assert.equal(isPoolMember({}), false);
  await pool.close();
});

test('bad input from a new user gets INVALID_ARGUMENT up front', async () => {
  assert.throws(() => new UpstreamPool({ backends: [{ host: '10.0.0.1:6443', port: 6443 }] }), {
    code: 'INVALID_ARGUMENT',
    message: /backends\[0\]\.host.*without a port/,
  });
  assert.throws(() => new UpstreamPool({ backends: [{ host: '[::1]:6443', port: 6443 }] }), { code: 'INVALID_ARGUMENT' });
  const pool = new UpstreamPool({ backends: ['127.0.0.1:6443', '[::1]:6443', { host: '::1', port: 7000 }] });
  assert.deepEqual(pool.backends().map((b) => `${b.host}|${b.port}`), ['127.0.0.1|6443', '::1|6443', '::1|7000']);
  assert.throws(() => pool.add('nonsense'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new UpstreamPool({ backends: ['127.0.0.1:1', '127.0.0.1:1'] }), { code: 'DUPLICATE_BACKEND' });
  await assert.rejects(pool.pin(null as unknown as Socket), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new PinnedConnection(null as unknown as Socket, null as unknown as Socket), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new PinnedSocket(null as unknown as Socket), { code: 'INVALID_ARGUMENT' });
  await pool.close();
});

test('after close(), state changes and new agents are refused with POOL_CLOSED and emit nothing', async () => {
  const pool = new UpstreamPool({ backends: ['127.0.0.1:1'] });
  await pool.close();
  let events = 0;
  pool.on('backendStateChanged', () => events++);
  assert.throws(() => pool.markDown('127.0.0.1:1'), { code: 'POOL_CLOSED' });
  assert.throws(() => pool.markUp('127.0.0.1:1'), { code: 'POOL_CLOSED' });
  assert.throws(() => pool.markMaintenance('127.0.0.1:1'), { code: 'POOL_CLOSED' });
  assert.throws(() => pool.createAgent(), { code: 'POOL_CLOSED' });
  assert.throws(() => pool.update('127.0.0.1:1', { weight: 2 }), { code: 'POOL_CLOSED' });
  await assert.rejects(pool.drain('127.0.0.1:1'), { code: 'POOL_CLOSED' });
  assert.equal(events, 0);
});

test('probe.attach refuses a hand-added backend under a pool id with another address (DUPLICATE_BACKEND, says probe)', async () => {
  const pool = new UpstreamPool({ backends: [{ host: '127.0.0.1', port: 1, id: 'api' }] });
  const probe = new HealthProbe({ check: () => Promise.resolve(), autoStart: false });
  probe.add({ host: '127.0.0.2', port: 2, id: 'api' });
  assert.throws(() => probe.attach(pool), (err: Error & { code?: string }) => err.code === 'DUPLICATE_BACKEND' && /probe/.test(err.message));
  assert.throws(() => probe.add({ host: '127.0.0.2', port: 2, id: 'api' }), /already in the probe/);
  await probe.stop();
  await pool.close();
});

test('update() changes a live backend without touching its members; weight 0 takes it out of rotation', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 4; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 4);
  const onA = [...pool.members('a')];
  const updates: unknown[] = [];
  pool.on('backendUpdated', (_b, changed) => updates.push(changed));
  const backend = pool.update('a', { weight: 0, meta: { zone: 'z1' } });
  assert.equal(backend.weight, 0);
  assert.equal(pool.get('a')?.meta.zone, 'z1');
  assert.deepEqual(updates, [{ weight: 0, meta: { zone: 'z1' } }]);
  assert.ok(onA.every((m) => !m.closed), 'members untouched');
  assert.equal(pool.status('a')?.eligible, false);
  for (let i = 0; i < 4; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 8);
  assert.equal([...pool.members('a')].length, onA.length, 'no new connection on weight 0');
  assert.throws(() => pool.update('a', { weight: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => pool.update('a', { host: 'x' } as never), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => pool.update('nope', { weight: 1 }), { code: 'UNKNOWN_BACKEND' });
  assert.equal(pool.get('a')?.weight, 0, 'a rejected update changed nothing');
});

test('reconcile() adds, updates live, drains then removes, replaces a changed address; a bad list changes nothing', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const c = await listen(t);
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: a.port, id: 'a' },
      { host: HOST, port: b.port, id: 'b' },
    ],
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 4; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 4);
  const onA = [...pool.members('a')];
  const onB = [...pool.members('b')];

  assert.throws(() => pool.reconcile([{ host: HOST, port: a.port, id: 'a' }, { host: 'x:1', port: 2 }]), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => pool.reconcile([{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'a' }]), { code: 'DUPLICATE_BACKEND' });
  assert.deepEqual(pool.backends().map((x) => x.id), ['a', 'b'], 'nothing changed');

  const result = pool.reconcile(
    [
      { host: HOST, port: a.port, id: 'a', weight: 3 },
      { host: HOST, port: c.port, id: 'c' },
    ],
    { drainTimeout: 200 },
  );
  assert.deepEqual(result.added, ['c']);
  assert.deepEqual(result.updated, ['a']);
  assert.deepEqual(result.removed, ['b']);
  assert.equal(pool.get('a')?.weight, 3);
  assert.ok(onA.every((m) => !m.closed), 'unchanged address: members kept');
  assert.equal(pool.status('b')?.admin, 'draining');
  await result.settled;
  assert.equal(pool.has('b'), false);
  assert.ok(onB.every((m) => m.closed));

  const replaced = pool.reconcile([{ host: HOST, port: b.port, id: 'a' }, { host: HOST, port: c.port, id: 'c' }]);
  assert.deepEqual(replaced.replaced, ['a']);
  assert.deepEqual(replaced.unchanged, ['c']);
  assert.equal(pool.get('a')?.port, b.port);
  assert.ok(onA.every((m) => m.closed), 'a changed address: its members went with the old one');
});

test('place() is the one path: build runs in the step that registers; dials count toward least-connections from the pick', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  // Two placements started in the same tick go to two backends: the first dial is counted from its pick.
  const [m1, m2] = await Promise.all([
    pool.place({}, (backend, socket, id) => new PinnedSocket(socket, { backend, id })),
    pool.place({}, (backend, socket, id) => new PinnedSocket(socket, { backend, id })),
  ]);
  assert.notEqual(m1.backend?.id, m2.backend?.id);
  assert.notEqual(m1.id, m2.id);
  assert.equal(pool.stats().active, 2);
  await assert.rejects(
    pool.place({}, () => {
      throw new Error('build failed');
    }),
    /build failed/,
  );
  assert.equal(pool.stats().active, 2, 'a failed build registers nothing');
});

test('close(reason) is graceful: FIN both ways, closed with the reason once both peers closed', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const client = await connect(t, port);
  await waitFor(() => pool.stats().active === 1);
  const [member] = [...pool.members('a')];
  const reasons: string[] = [];
  pool.on('connectionClosed', (_m, info) => reasons.push(`${info.kind}:${info.reason}`));
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  member!.close('rebalanced');
  await ended; // the client sees a clean end of stream
  client.end();
  await waitFor(() => reasons.length === 1, { what: 'the member to close' });
  assert.deepEqual(reasons, ['connection:rebalanced']);
});

test('reconcile: a backend listed again while an earlier reconcile drains it is kept, not removed when that drain ends', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 2; i++) await connect(t, port);
  await waitFor(() => [...pool.members('b')].length === 1);
  const first = pool.reconcile([{ host: HOST, port: a.port, id: 'a' }], { drainTimeout: 60_000 });
  assert.deepEqual(first.removed, ['b']);
  assert.equal(pool.status('b')?.admin, 'draining');
  const second = pool.reconcile([{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }]);
  assert.deepEqual(second.updated, ['b']);
  assert.equal(pool.status('b')?.admin, 'active', 'listed again: ready again');
  await first.settled;
  assert.equal(pool.has('b'), true, 'the first drain ending does not remove it any more');
  assert.equal([...pool.members('b')].length, 1, 'its connection stayed');
});

test('sliced teardown: agent sockets are closed inside the call (an idle one is never handed to a new request)', async (t) => {
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const addr = server.address() as AddressInfo;
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: addr.port, id: 'a' }], teardown: { syncMax: 0 } });
  const agent = pool.createAgent();
  t.after(async () => {
    agent.destroy();
    await pool.destroy();
  });
  const { get } = await import('node:http');
  await new Promise<void>((resolve, reject) => get({ host: HOST, port: addr.port, path: '/', agent }, (res) => res.resume().on('end', resolve)).on('error', reject));
  await waitFor(() => Object.keys(agent.freeSockets).length === 1, { what: 'an idle keep-alive socket' });
  const [socket] = [...pool.sockets('a')];
  assert.ok(socket);
  assert.equal(pool.markDown('a'), 1);
  assert.equal(socket.closed, true);
  assert.equal(socket.upstream.destroyed, true, 'destroyed in the call, not a turn later');
  assert.equal(Object.keys(agent.freeSockets).length, 0, 'not in the free list');
});
