// Operator calls racing health verdicts: drain, maintenance and ready against
// down and up, in every order, on a pool with live connections. Whatever the
// order, the two axes end as the last call on each set them, a backend takes
// new connections only when up and active, and a down backend holds nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamPool } from '../../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from '../helpers/net.js';

type Op = 'drain' | 'maintenance' | 'ready' | 'down' | 'up';
const OPS: readonly Op[] = ['drain', 'maintenance', 'ready', 'down', 'up'];

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [items.slice()];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

function apply(pool: UpstreamPool, op: Op): void {
  switch (op) {
    case 'drain':
      void pool.drain('a', { timeout: 60_000 });
      break;
    case 'maintenance':
      pool.markMaintenance('a');
      break;
    case 'ready':
      pool.markReady('a');
      break;
    case 'down':
      pool.markDown('a', 'probe-failed', { source: 'probe', code: 'PROBE_TIMEOUT' });
      break;
    case 'up':
      pool.markUp('a', 'probe-passed', { source: 'probe' });
      break;
  }
}

test('drain/maintenance/ready vs down/up in every order (120 orders): axes, eligibility and members stay consistent', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const orders = permutations(OPS);
  assert.equal(orders.length, 120);
  let checked = 0;
  for (const order of orders) {
    pool.markReady('a');
    pool.markUp('a');
    // Two connections on each backend before the race (least-connections alternates).
    for (let i = 0; i < 4; i++) await connect(t, port);
    await waitFor(() => [...pool.members('a')].length >= 2, { what: `connections on a before ${order.join(',')}` });
    let health: 'up' | 'down' = 'up';
    let admin: 'active' | 'draining' | 'maintenance' = 'active';
    for (const op of order) {
      apply(pool, op);
      if (op === 'down' || op === 'up') health = op;
      else admin = op === 'drain' ? 'draining' : op === 'maintenance' ? 'maintenance' : 'active';
      const s = pool.status('a')!;
      assert.equal(s.health, health, `${order.join(',')}: health after ${op}`);
      assert.equal(s.admin, admin, `${order.join(',')}: admin after ${op}`);
      assert.equal(s.eligible, health === 'up' && admin === 'active', `${order.join(',')}: eligible after ${op}`);
      if (health === 'down' || admin === 'maintenance') {
        assert.equal([...pool.members('a')].length, 0, `${order.join(',')}: nothing pinned to a after ${op}`);
      }
      checked++;
    }
    // The other backend never noticed.
    assert.equal(pool.status('b')?.eligible, true);
    // Clean slate for the next order.
    for (const m of [...pool.members()]) m.destroy('test-reset');
  }
  assert.equal(checked, 600);
});
