import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { UpstreamPool } from '../src/index.js';
import { connect, frontend, HOST, namedServer, readLine } from './helpers/net.js';

async function threeBackends(t: TestContext, weights = [1, 1, 1]) {
  const specs = [];
  for (let i = 0; i < 3; i++) {
    const { port } = await namedServer(t, `b${i + 1}`);
    specs.push({ host: HOST, port, id: `b${i + 1}`, weight: weights[i] });
  }
  return specs;
}

test('least-connections spreads 300 long-lived connections evenly over 3 backends (±1)', async (t) => {
  const pool = new UpstreamPool({ backends: await threeBackends(t) });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  // Arrive in bursts of 30: the picker must count dials in flight, not only open connections.
  for (let i = 0; i < 300; i += 30) {
    const clients = await Promise.all(Array.from({ length: 30 }, () => connect(t, port)));
    await Promise.all(clients.map((c) => readLine(c)));
  }
  const counts = pool.stats().backends.map((b) => b.active);
  t.diagnostic(`spread: ${counts.join(' / ')}`);
  assert.equal(counts.reduce((a, b) => a + b), 300);
  assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `uneven: ${counts.join()}`);
});

test('weights are honoured: round-robin with weights 1,2,3 places 60 connections 10/20/30', async (t) => {
  const pool = new UpstreamPool({ backends: await threeBackends(t, [1, 2, 3]), balancer: 'round-robin' });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const seen: Record<string, number> = {};
  for (let i = 0; i < 60; i++) {
    const name = await readLine(await connect(t, port));
    seen[name] = (seen[name] ?? 0) + 1;
  }
  assert.deepEqual(seen, { b1: 10, b2: 20, b3: 30 });
});

test('hash: a key keeps its backend; removing a backend moves only its keys', async (t) => {
  const pool = new UpstreamPool({ backends: await threeBackends(t), balancer: 'hash' });
  t.after(() => pool.destroy());
  const keys = Array.from({ length: 300 }, (_, i) => `client-${i}`);
  const before = new Map(keys.map((k) => [k, pool.pick({ key: k })!.id]));
  for (const k of keys) assert.equal(pool.pick({ key: k })!.id, before.get(k));
  pool.markDown('b2');
  let moved = 0;
  for (const k of keys) {
    const now = pool.pick({ key: k })!.id;
    if (before.get(k) === 'b2') {
      assert.notEqual(now, 'b2');
      moved++;
    } else {
      assert.equal(now, before.get(k), `${k} moved without cause`);
    }
  }
  assert.ok(moved > 50 && moved < 150, `b2 held ${moved} of 300 keys`);
});
