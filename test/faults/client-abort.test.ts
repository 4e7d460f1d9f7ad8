/**
 * Fault: clients that leave (RST) while their upstream is still being dialled
 * or while they wait in the queue. The dial is cancelled (its signal aborted
 * with CLIENT_CLOSED, its socket destroyed), the backend is not blamed (no
 * connect failure, no passive health signal), and nothing is left behind: no
 * socket, no timer, no waiting slot.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type DialFunction } from '../../src/index.js';
import { dialBackend } from '../../src/dial.js';
import { activeResources, connect, frontend, HOST, listen, settle, unresponsiveBackend, waitFor } from '../helpers/net.js';

test('50 clients reset while their dials hang: every dial is aborted with CLIENT_CLOSED and nothing leaks', async (t) => {
  const silent = await unresponsiveBackend(t);
  const aborted: string[] = [];
  let dials = 0;
  const dial: DialFunction = (backend, options) => {
    dials++;
    options.signal.addEventListener('abort', () => aborted.push((options.signal.reason as { code?: string }).code ?? 'none'), { once: true });
    return dialBackend(backend, options);
  };
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: silent, id: 'silent' }], connectTimeout: 60_000, dial });
  t.after(() => pool.destroy());
  const connectFailed: string[] = [];
  pool.on('connectFailed', (_b, err) => connectFailed.push(err.code));
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(err.code));
  const port = await frontend(t, pool);
  await settle(5);
  const before = activeResources();

  const N = 50;
  const clients: Socket[] = [];
  for (let i = 0; i < N; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().backends[0]!.dialling === N, { what: `${N} dials in flight` });
  for (const c of clients) c.resetAndDestroy();
  await waitFor(() => failures.length === N, { what: 'every pin to fail' });

  assert.deepEqual(new Set(failures), new Set(['CLIENT_CLOSED']));
  assert.equal(dials, N);
  assert.equal(aborted.length, N, 'every dial signal aborted');
  assert.deepEqual(new Set(aborted), new Set(['CLIENT_CLOSED']));
  const stats = pool.stats();
  assert.equal(stats.backends[0]!.dialling, 0);
  assert.equal(stats.backends[0]!.connectFailures, 0, 'a cancelled dial is not the backend’s failure');
  assert.deepEqual(connectFailed, []);
  assert.deepEqual(stats.pinFailures, { CLIENT_CLOSED: N });
  assert.equal(stats.active, 0);
  // No dial socket, client socket or connect-timeout timer survives.
  await waitFor(
    () => {
      const now = activeResources();
      return now.length <= before.length;
    },
    { what: 'resources back to where they were' },
  );
  await settle(5);
  assert.deepEqual(activeResources(), before);
});

test('clients that reset while queued (nothing up) leave the queue at once; a later backend serves only those still there', async (t) => {
  const { port: up } = await listen(t, (s) => s.end('served\n'));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: up, id: 'b1' }], initialState: 'probe', queue: { max: 100, timeout: 60_000 } });
  t.after(() => pool.destroy());
  const failures: string[] = [];
  pool.on('pinFailed', (err) => failures.push(err.code));
  const port = await frontend(t, pool);
  const clients: Socket[] = [];
  for (let i = 0; i < 20; i++) clients.push(await connect(t, port));
  await waitFor(() => pool.stats().waiting === 20);
  const leaving = clients.filter((_, i) => i % 2 === 0);
  for (const c of leaving) c.resetAndDestroy();
  await waitFor(() => pool.stats().waiting === 10 && failures.length === 10, { what: 'the leavers to leave the queue' });
  assert.deepEqual(new Set(failures), new Set(['CLIENT_CLOSED']));

  const staying = clients.filter((_, i) => i % 2 === 1);
  const replies = staying.map(
    (c) =>
      new Promise<string>((resolve) => {
        let text = '';
        c.setEncoding('latin1').on('data', (d: string) => (text += d));
        c.once('end', () => resolve(text));
      }),
  );
  pool.markUp('b1', 'probe-passed');
  assert.deepEqual(await Promise.all(replies), staying.map(() => 'served\n'));
  assert.equal(pool.stats().total, 10, 'only the clients still waiting were pinned');
  assert.equal(pool.stats().waiting, 0);
});

test('connect({ signal }) aborted mid-dial rejects with the signal’s reason and cancels the dial', async (t) => {
  const silent = await unresponsiveBackend(t);
  let dialSignal: AbortSignal | undefined;
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: silent, id: 'silent' }],
    connectTimeout: 60_000,
    dial: (backend, options) => {
      dialSignal = options.signal;
      return dialBackend(backend, options);
    },
  });
  t.after(() => pool.destroy());
  const controller = new AbortController();
  const pending = pool.connect({ signal: controller.signal });
  await waitFor(() => dialSignal !== undefined);
  const reason = new Error('caller gave up');
  controller.abort(reason);
  await assert.rejects(pending, (err) => err === reason);
  assert.equal(dialSignal!.aborted, true);
  assert.equal(pool.stats().backends[0]!.dialling, 0);
  assert.equal(pool.stats().backends[0]!.connectFailures, 0);
});
