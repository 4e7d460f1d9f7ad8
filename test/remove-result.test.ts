// remove(id, { drain }) says how it ended: removed, or called off while it
// drained. drain, remove and close take an AbortSignal that gives up the
// wait and changes nothing else.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamPool } from '../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

const LONG = 30_000;

/** A pool with backends a and b, and `n` pairs on a that never answer a FIN (they stay through a graceful close). */
async function withPairsOnA(t: Parameters<typeof listen>[0], n: number): Promise<UpstreamPool> {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }],
    balancer: (c) => c.find((x) => x.backend.id === 'a') ?? c[0],
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < n; i++) await connect(t, port);
  await waitFor(() => [...pool.members('a')].length === n);
  return pool;
}

test('remove: { removed: true } when the backend left, { removed: false, reason } when the removal was called off', async (t) => {
  const pool = await withPairsOnA(t, 2);
  assert.deepEqual(await pool.remove('b'), { removed: true });
  const removing = pool.remove('a', { drain: true, timeout: LONG });
  assert.equal(pool.status('a')?.admin, 'draining');
  pool.markReady('a', 'operator changed their mind');
  assert.deepEqual(await removing, { removed: false, reason: 'operator changed their mind' });
  assert.equal(pool.has('a'), true, 'still in the pool');
  assert.equal(pool.status('a')?.state, 'up');

  // Called off by a reconcile that lists it again.
  const again = pool.remove('a', { drain: true, timeout: LONG });
  const a = pool.get('a')!;
  pool.reconcile([{ host: a.host, port: a.port, id: 'a' }]);
  assert.deepEqual(await again, { removed: false, reason: 'relisted' });
  assert.equal(pool.has('a'), true);

  // And one that runs to its end.
  const done = pool.remove('a', { drain: true, timeout: 0 });
  assert.deepEqual(await done, { removed: true });
  assert.equal(pool.has('a'), false);
});

test('drain with a signal: aborting gives up the wait with the signal reason; the drain goes on', async (t) => {
  const pool = await withPairsOnA(t, 2);
  const controller = new AbortController();
  const drained = pool.drain('a', { timeout: LONG, signal: controller.signal });
  const reason = new Error('gave up');
  controller.abort(reason);
  await assert.rejects(drained, (err) => err === reason);
  assert.equal(pool.status('a')?.admin, 'draining', 'still draining');
  assert.equal([...pool.members('a')].length, 2, 'its members are left as they were');
  // An already aborted signal starts nothing.
  await assert.rejects(pool.drain('b', { signal: AbortSignal.abort(reason) }), (err) => err === reason);
  assert.equal(pool.status('b')?.admin, 'active');
  await assert.rejects(pool.drain('a', { signal: 'nope' as never }), { code: 'INVALID_ARGUMENT' });
});

test('remove with a signal: aborting gives up the wait; the removal still happens at the end of the drain', async (t) => {
  const pool = await withPairsOnA(t, 1);
  const controller = new AbortController();
  const removing = pool.remove('a', { drain: true, timeout: 200, signal: controller.signal });
  controller.abort();
  await assert.rejects(removing, { name: 'AbortError' });
  assert.equal(pool.has('a'), true, 'still draining');
  await waitFor(() => !pool.has('a'), { what: 'a removed at its deadline' });
  await assert.rejects(pool.remove('b', { signal: AbortSignal.abort() }), { name: 'AbortError' });
  assert.equal(pool.has('b'), true, 'an aborted signal changes nothing');
});

test('close with a signal: aborting gives up this wait; the close goes on, and destroy() still ends it', async (t) => {
  const pool = await withPairsOnA(t, 2);
  await assert.rejects(pool.close({ signal: AbortSignal.abort() }), { name: 'AbortError' });
  assert.equal(pool.state, 'open', 'an aborted signal starts nothing');
  const controller = new AbortController();
  const closing = pool.close({ timeout: LONG, signal: controller.signal });
  controller.abort();
  await assert.rejects(closing, { name: 'AbortError' });
  assert.equal(pool.state, 'closing');
  assert.equal(pool.stats().active, 2);
  const shared = pool.close();
  await pool.destroy();
  await shared;
  assert.equal(pool.state, 'closed');
  assert.equal(pool.stats().active, 0);
});
