/**
 * A second drain of a draining backend brings its deadline forward, never
 * back: "drain within 300 ms" after "within 60 s" means 300 ms (before, the
 * first deadline applied and the second was only logged).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamPool } from '../src/index.js';
import { connect, echoServer, frontend, HOST, waitFor } from './helpers/net.js';

test('a second, sooner drain deadline applies; a later one does not push it back', async (t) => {
  const upstream = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream.port, id: 'a' }] });
  t.after(() => pool.destroy());
  const front = await frontend(t, pool);
  await connect(t, front);
  await waitFor(() => pool.stats().active === 1, { what: 'one member' });
  const closed = new Promise<{ reason: string }>((resolve) => pool.once('connectionClosed', (_member, info) => resolve(info)));

  const first = pool.drain('a', { timeout: 60_000 });
  const second = pool.drain('a', { timeout: 300 });
  // A third, later deadline changes nothing: the sooner one stays.
  const third = pool.drain('a', { timeout: 120_000 });
  const started = Date.now();
  const info = await closed;
  await Promise.all([first, second, third]);
  assert.equal(info.reason, 'drained');
  // Relative to the first deadline, not a wall-clock guess: far sooner than 60 s.
  assert.ok(Date.now() - started < 30_000, 'the sooner deadline applied');
  assert.equal(pool.status('a')!.admin, 'draining');
});
