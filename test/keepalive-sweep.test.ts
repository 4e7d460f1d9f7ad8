import assert from 'node:assert/strict';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { KeepAliveSweep, KEEPALIVE_SWEEP_MS, type KeepAliveTarget } from '../src/keepalive-sweep.js';
import { UpstreamPool, type PinnedConnection, type PoolMember } from '../src/index.js';
import { FakeClock } from './helpers/fake-clock.js';
import { echoServer, frontend, HOST, waitFor } from './helpers/net.js';

/** A target whose sockets record their setKeepAlive calls. */
function target(): KeepAliveTarget & { calls: unknown[][]; close(): void } {
  const calls: unknown[][] = [];
  const socket = { setKeepAlive: (...args: unknown[]) => calls.push(args) } as unknown as Socket;
  let closed = false;
  return {
    client: socket,
    upstream: socket,
    calls,
    get closed() {
      return closed;
    },
    close() {
      closed = true;
    },
  };
}

test('keepalive sweep: a connection gets keepalive (both sockets, the configured delay) once it has lived one to two periods, not before', () => {
  const clock = new FakeClock();
  const sweep = new KeepAliveSweep(30_000, clock);
  const early = target();
  sweep.add(early);
  clock.advance(KEEPALIVE_SWEEP_MS / 2);
  const late = target();
  sweep.add(late);
  assert.equal(clock.pending, 1, 'one timer for the whole sweep');
  clock.advance(KEEPALIVE_SWEEP_MS / 2); // first sweep: both only became due
  assert.deepEqual(early.calls, []);
  assert.deepEqual(late.calls, []);
  clock.advance(KEEPALIVE_SWEEP_MS); // second sweep: both have lived a whole period
  assert.deepEqual(early.calls, [
    [true, 30_000],
    [true, 30_000],
  ]);
  assert.deepEqual(late.calls, [
    [true, 30_000],
    [true, 30_000],
  ]);
  assert.equal(sweep.pending, 0);
  assert.equal(clock.pending, 0, 'the timer stops when nothing waits');
});

test('keepalive sweep: a connection that closes first never gets it, and is not held until the sweep', () => {
  const clock = new FakeClock();
  const sweep = new KeepAliveSweep(30_000, clock);
  const forgotten = target();
  const closedUnforgotten = target();
  sweep.add(forgotten);
  sweep.add(closedUnforgotten);
  clock.advance(KEEPALIVE_SWEEP_MS); // both are due now
  forgotten.close();
  sweep.forget(forgotten);
  closedUnforgotten.close();
  assert.equal(sweep.pending, 1, 'a forgotten connection is dropped at once');
  clock.advance(KEEPALIVE_SWEEP_MS);
  assert.deepEqual(forgotten.calls, []);
  assert.deepEqual(closedUnforgotten.calls, []);
  const already = target();
  already.close();
  sweep.add(already);
  assert.equal(sweep.pending, 0, 'a closed connection is not taken');
  assert.equal(clock.pending, 0);
});

test('keepalive sweep: close() stops it and empties it; later adds are ignored', () => {
  const clock = new FakeClock();
  const sweep = new KeepAliveSweep(30_000, clock);
  const t1 = target();
  sweep.add(t1);
  sweep.close();
  sweep.close();
  assert.equal(clock.pending, 0);
  assert.equal(sweep.pending, 0);
  sweep.add(target());
  assert.equal(clock.pending, 0);
  clock.advance(3 * KEEPALIVE_SWEEP_MS);
  assert.deepEqual(t1.calls, []);
});

test('keepalive sweep: a clock whose timer handles are undefined still gets one timer per period, not one per connection', () => {
  // The Clock contract makes the handle opaque: undefined is a valid one.
  const fake = new FakeClock();
  const handles = new Map<number, unknown>();
  let next = 0;
  const clock = {
    now: () => fake.now(),
    setTimeout(callback: () => void, ms: number): unknown {
      handles.set(++next, fake.setTimeout(callback, ms));
      return undefined;
    },
    clearTimeout(): void {},
  };
  const sweep = new KeepAliveSweep(30_000, clock);
  const a = target();
  sweep.add(a);
  sweep.add(target());
  sweep.add(target());
  assert.equal(fake.pending, 1, 'one timer for three connections');
  fake.advance(KEEPALIVE_SWEEP_MS);
  assert.deepEqual(a.calls, [], 'not switched on before it lived a whole period');
  fake.advance(KEEPALIVE_SWEEP_MS);
  assert.equal(a.calls.length, 2);
});

/** Records every setKeepAlive on a real socket while the test runs. */
function spyKeepAlive(t: { after(fn: () => void): void }): Map<Socket, unknown[][]> {
  const calls = new Map<Socket, unknown[][]>();
  const original = net.Socket.prototype.setKeepAlive;
  net.Socket.prototype.setKeepAlive = function (this: Socket, ...args: unknown[]) {
    const list = calls.get(this) ?? [];
    list.push(args);
    calls.set(this, list);
    return (original as (...a: unknown[]) => Socket).apply(this, args);
  };
  t.after(() => {
    net.Socket.prototype.setKeepAlive = original;
  });
  return calls;
}

test('pool: pin() leaves keepalive off at first and the sweep switches it on for a connection that stays; one that closed before never gets it', async (t) => {
  const calls = spyKeepAlive(t);
  const { port: echoPort } = await echoServer(t);
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: echoPort }], clock, connection: { keepAliveInitialDelay: 45_000 } });
  t.after(() => pool.destroy());
  const opened: PinnedConnection[] = [];
  pool.on('connectionOpened', (m: PoolMember) => opened.push(m as PinnedConnection));
  const port = await frontend(t, pool);
  const enabled = (s: Socket): unknown[][] => (calls.get(s) ?? []).filter((args) => args[0] === true);

  const short = net.connect({ host: HOST, port });
  const stays = net.connect({ host: HOST, port });
  t.after(() => {
    short.destroy();
    stays.destroy();
  });
  await waitFor(() => opened.length === 2, { what: 'two pinned connections' });
  for (const c of opened) {
    assert.deepEqual(enabled(c.client), [], 'no keepalive while the connection is new');
    assert.deepEqual(enabled(c.upstream), []);
  }
  // The first one closes before the sweep reaches it.
  const first = opened.find((c) => c.client.remotePort === short.localPort)!;
  const second = opened.find((c) => c !== first)!;
  short.destroy();
  await waitFor(() => first.closed, { what: 'the short connection to close' });
  clock.advance(2 * KEEPALIVE_SWEEP_MS);
  assert.deepEqual(enabled(first.client), []);
  assert.deepEqual(enabled(first.upstream), []);
  assert.deepEqual(enabled(second.client), [[true, 45_000]]);
  assert.deepEqual(enabled(second.upstream), [[true, 45_000]]);
  assert.equal(second.closed, false);
});

test('pool: with keepAlive off, nothing is swept and no keepalive is set', async (t) => {
  const calls = spyKeepAlive(t);
  const { port: echoPort } = await echoServer(t);
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: echoPort }], clock, connection: { keepAlive: false } });
  t.after(() => pool.destroy());
  const opened: PinnedConnection[] = [];
  pool.on('connectionOpened', (m: PoolMember) => opened.push(m as PinnedConnection));
  const port = await frontend(t, pool);
  const client = net.connect({ host: HOST, port });
  t.after(() => client.destroy());
  await waitFor(() => opened.length === 1, { what: 'a pinned connection' });
  clock.advance(3 * KEEPALIVE_SWEEP_MS);
  const c = opened[0]!;
  assert.deepEqual((calls.get(c.client) ?? []).filter((a) => a[0] === true), []);
  assert.deepEqual((calls.get(c.upstream) ?? []).filter((a) => a[0] === true), []);
});
