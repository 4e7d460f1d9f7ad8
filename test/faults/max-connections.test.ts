/**
 * Fault: more clients than the pool may hold. The global `maxConnections`
 * (open plus dialling) refuses the excess at once with MAX_CONNECTIONS and is
 * never exceeded, even under a burst with dials still in flight; a
 * per-backend cap makes the picker skip a full backend, and when every
 * backend is full the excess waits in the bounded queue and is served as
 * soon as a slot frees, or refused at the queue timeout.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import { test } from 'node:test';
import { MaxConnectionsError, UpstreamPool, type FailoverProxyError } from '../../src/index.js';
import { connect, frontend, HOST, listen, readLine, waitFor } from '../helpers/net.js';

test('a burst of 200 against maxConnections 20 with slow dials: never more than 20 held or dialling, the rest refused with MAX_CONNECTIONS', async (t) => {
  const { port: up } = await listen(t, (s) => s.pipe(s));
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: up, id: 'b1' }],
    maxConnections: 20,
    dial: async (backend, { signal }) => {
      await new Promise((r) => setTimeout(r, 30));
      signal.throwIfAborted();
      const s = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
      await once(s, 'connect');
      return s;
    },
  });
  t.after(() => pool.destroy());
  let peak = 0;
  const sample = (): void => {
    const s = pool.stats();
    peak = Math.max(peak, s.active + s.backends[0]!.dialling);
  };
  pool.on('connectionOpened', sample);
  const refusals: FailoverProxyError[] = [];
  pool.on('pinFailed', (err) => {
    sample();
    refusals.push(err);
  });
  const port = await frontend(t, pool);
  const N = 200;
  const clients = await Promise.all(Array.from({ length: N }, () => connect(t, port)));
  await waitFor(() => pool.stats().active + refusals.length === N, { what: 'every client placed or refused' });
  sample();
  assert.ok(peak <= 20, `peak ${peak}`);
  assert.equal(pool.stats().active, 20);
  assert.equal(refusals.length, N - 20);
  assert.ok(refusals.every((e) => e instanceof MaxConnectionsError && e.code === 'MAX_CONNECTIONS' && e.limit === 20));
  // A slot freed is a slot reused.
  for (const c of clients) c.on('error', () => undefined);
  const held = [...pool.connections()].slice(0, 5);
  for (const conn of held) conn.destroy('client-closed');
  const more = await Promise.all(Array.from({ length: 5 }, () => connect(t, port)));
  await waitFor(() => pool.stats().active === 20 && pool.stats().total === 25);
  assert.equal(more.length, 5);
});

test('per-backend caps: the picker skips a full backend; all full, the excess waits and is served when a slot frees', async (t) => {
  const a = await listen(t, (s) => {
    s.write('a\n');
    s.pipe(s);
  });
  const b = await listen(t, (s) => {
    s.write('b\n');
    s.pipe(s);
  });
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: a.port, id: 'a', maxConnections: 2 },
      { host: HOST, port: b.port, id: 'b', maxConnections: 3 },
    ],
    queue: { max: 10, timeout: 60_000 },
  });
  t.after(() => pool.destroy());
  const perBackendPeak = { a: 0, b: 0 };
  pool.on('connectionOpened', (conn) => {
    const id = conn.backend!.id as 'a' | 'b';
    perBackendPeak[id] = Math.max(perBackendPeak[id], [...pool.connections(id)].length);
  });
  const port = await frontend(t, pool);
  const names: string[] = [];
  const first: Socket[] = [];
  for (let i = 0; i < 5; i++) {
    const c = await connect(t, port);
    first.push(c);
    names.push(await readLine(c));
  }
  assert.deepEqual(names.sort(), ['a', 'a', 'b', 'b', 'b']);
  // Both full: two more clients wait.
  const waiting = [await connect(t, port), await connect(t, port)];
  await waitFor(() => pool.stats().waiting === 2, { what: 'two clients waiting for a slot' });
  // Free one slot on a: exactly one waiter goes there.
  const onA = [...pool.connections('a')][0]!;
  onA.destroy('client-closed');
  const servedBy = await Promise.race(waiting.map((c) => readLine(c)));
  assert.equal(servedBy, 'a');
  await waitFor(() => pool.stats().waiting === 1);
  // Free one on b: the last waiter goes there.
  [...pool.connections('b')][0]!.destroy('client-closed');
  await waitFor(() => pool.stats().waiting === 0 && pool.stats().active === 5);
  assert.deepEqual(perBackendPeak, { a: 2, b: 3 });
  assert.deepEqual(pool.stats().pinFailures, {});
});

test('per-backend caps full and nothing frees: the waiting excess is refused at the queue timeout with NO_HEALTHY_BACKEND', async (t) => {
  const a = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a', maxConnections: 1 }], queue: { max: 5, timeout: 300 } });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(`${err.code}:${(err as { reason?: string }).reason}`));
  const port = await frontend(t, pool);
  await connect(t, port);
  await waitFor(() => pool.stats().active === 1);
  for (let i = 0; i < 3; i++) await connect(t, port);
  await waitFor(() => failures.length === 3, { what: 'three queue timeouts' });
  assert.deepEqual(failures, Array(3).fill('NO_HEALTHY_BACKEND:queue-timeout'));
  assert.equal(pool.stats().active, 1);
});
