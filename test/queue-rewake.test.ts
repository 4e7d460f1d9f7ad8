// The queue re-checks at each wake: a waiter re-picks every time it wakes, a
// backend that left service during the dial is tried again when it returns,
// the pool-wide cap holds for clients woken from the queue, and a wake-up
// nobody takes is passed on to the next waiter (custom pickers included).
import assert from 'node:assert/strict';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { PinnedSocket, UpstreamPool, type PickCandidate } from '../src/index.js';
import { HOST, listen, waitFor } from './helpers/net.js';

const QUEUE = { max: 100, timeout: 20_000 };

function placeSocket(pool: UpstreamPool, meta?: Record<string, unknown>): Promise<PinnedSocket> {
  return pool.place({ meta }, (backend, socket, id) => new PinnedSocket(socket, { backend, id }));
}

test('a backend that flaps while a client dials it is tried again for that client when it returns', async (t) => {
  const a = await listen(t);
  let release: (() => void) | undefined;
  let dials = 0;
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: a.port, id: 'a' }],
    queue: QUEUE,
    dial: async (backend) => {
      dials++;
      // The first dial is held until the test lets it finish.
      if (dials === 1) await new Promise<void>((resolve) => (release = resolve));
      const socket = net.connect({ host: backend.host, port: backend.port });
      await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      return socket;
    },
  });
  t.after(() => pool.destroy());
  const placing = placeSocket(pool);
  await waitFor(() => release !== undefined, { what: 'the dial in flight' });
  pool.markDown('a', 'probe-failed');
  release!();
  // The dial finished on a backend that left service: the client waits for one.
  await waitFor(() => pool.stats().waiting === 1, { what: 'the client queued' });
  pool.markUp('a', 'probe-passed');
  const member = await placing;
  assert.equal(member.backend?.id, 'a');
  assert.equal(dials, 2, 'dialled again once it came back');
});

test('the pool-wide maxConnections holds for clients woken from the queue', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }], initialState: 'probe', maxConnections: 2, queue: QUEUE });
  t.after(() => pool.destroy());
  const placed: PinnedSocket[] = [];
  const failures: string[] = [];
  for (let i = 0; i < 6; i++) placeSocket(pool).then((m) => placed.push(m), (err: { code: string }) => failures.push(err.code));
  await waitFor(() => pool.stats().waiting === 6, { what: 'six clients queued' });
  pool.markUp('a', 'probe-passed');
  await waitFor(() => placed.length >= 2, { what: 'two placed' });
  // Give any extra dial a chance to finish: a bounded number of turns, then count.
  for (let i = 0; i < 50 && placed.length === 2; i++) await new Promise((resolve) => setTimeout(resolve, 2));
  assert.equal(placed.length, 2, 'no more than the cap');
  assert.equal(pool.stats().active, 2);
  assert.equal(pool.stats().waiting, 4, 'the others keep waiting for a slot');
  // A freed slot lets the next one in.
  placed[0]!.destroy('closed');
  await waitFor(() => placed.length === 3, { what: 'a third placed after a slot freed' });
  assert.equal(pool.stats().active, 2);
  assert.deepEqual(failures, []);
});

test('a wake-up the oldest waiter cannot take is passed on to the next one (custom picker)', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  // Each client wants one backend by name (meta.want) and takes nothing else.
  const picker = (candidates: readonly PickCandidate[], context: { meta?: Readonly<Record<string, unknown>> | undefined }): PickCandidate | undefined =>
    candidates.find((c) => c.backend.id === context.meta?.['want']);
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: a.port, id: 'a', maxConnections: 1 }, { host: HOST, port: b.port, id: 'b', maxConnections: 1 }],
    balancer: picker,
    queue: QUEUE,
  });
  t.after(() => pool.destroy());
  const onA = await placeSocket(pool, { want: 'a' });
  await placeSocket(pool, { want: 'b' });
  // Both full: the oldest waiter wants b, the next one a.
  const wantsB = placeSocket(pool, { want: 'b' });
  wantsB.catch(() => {});
  await waitFor(() => pool.stats().waiting === 1);
  const wantsA = placeSocket(pool, { want: 'a' });
  await waitFor(() => pool.stats().waiting === 2);
  // A slot frees on a: the oldest waiter is woken, cannot take it, and must pass the wake-up on.
  onA.destroy('closed');
  const member = await wantsA;
  assert.equal(member.backend?.id, 'a');
  assert.equal(pool.stats().waiting, 1, 'the one that wants b still waits, in its place');
});

test('a waiter keeps its place in the queue when it re-picks and finds nothing', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a', maxConnections: 1 }], queue: QUEUE });
  t.after(() => pool.destroy());
  const first = await placeSocket(pool);
  const order: number[] = [];
  const waiters = [1, 2, 3].map((n) => placeSocket(pool).then((m) => (order.push(n), m)));
  await waitFor(() => pool.stats().waiting === 3);
  // Capacity "appears" without a slot (a weight change): everyone re-picks, nobody gets in.
  pool.update('a', { weight: 2 });
  pool.update('a', { maxConnections: 1 });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(pool.stats().waiting, 3);
  let m: PinnedSocket = first;
  for (let i = 0; i < 3; i++) {
    m.destroy('closed');
    m = await waiters[i]!;
  }
  assert.deepEqual(order, [1, 2, 3], 'served in arrival order');
  m.destroy('closed');
});

// Silence the unused-type lint for Socket (kept for readers of the dial above).
export type { Socket };
