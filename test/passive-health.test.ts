// Passive health, on by default: traffic that fails to reach a backend counts
// as failed checks, so a backend that refuses connections is marked down by
// its clients' failures long before the next probe round.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthProbe, UpstreamPool, type CheckResult } from '../src/index.js';
import { closedPort, connect, frontend, HOST, listen, readLine, waitFor } from './helpers/net.js';

test('a backend that refuses connections is marked down by client traffic (fall 2) before the next probe round', { timeout: 60_000 }, async (t) => {
  const live = await listen(t, (socket) => socket.write('live\n'));
  const dead = await closedPort();
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: dead, id: 'dead' }, { host: HOST, port: live.port, id: 'live' }],
    // Try the dead one first while it is eligible.
    balancer: (candidates) => candidates.find((c) => c.backend.id === 'dead') ?? candidates[0],
  });
  t.after(() => pool.destroy());
  // Default countConnectFailures; the first active round is a minute away (jitter 1 × random 0.99 × interval).
  const probe = new HealthProbe({ interval: 60_000, jitter: 1, random: () => 0.99, fall: 2, rise: 2 });
  t.after(() => probe.stop());
  probe.attach(pool);
  const results: CheckResult[] = [];
  probe.on('checked', (result) => results.push(result));
  const port = await frontend(t, pool);

  // Each client's dial to `dead` is refused, then retried on `live`: no client notices.
  for (let i = 0; i < 5; i++) {
    const client = await connect(t, port);
    assert.equal(await readLine(client), 'live', `client ${i} is served by the live backend`);
  }
  const status = pool.status('dead')!;
  assert.equal(status.health, 'down');
  assert.equal(status.cause.source, 'passive');
  assert.equal(status.cause.layer, 'connect');
  assert.equal(results.length, 2, 'two failed passive results crossed fall 2');
  assert.ok(results.every((r) => r.passive && !r.ok), 'no active check has run yet');
  // Once down, nothing dials it: the failures stop at fall.
  const stats = pool.stats().backends.find((b) => b.id === 'dead')!;
  assert.equal(stats.connectFailures, 2);
  assert.equal(pool.status('live')!.members, 5);
});

test('countConnectFailures: false leaves health to the active checks', async (t) => {
  const live = await listen(t, (socket) => socket.write('live\n'));
  const dead = await closedPort();
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: dead, id: 'dead' }, { host: HOST, port: live.port, id: 'live' }],
    balancer: (candidates) => candidates.find((c) => c.backend.id === 'dead') ?? candidates[0],
  });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ interval: 60_000, jitter: 1, random: () => 0.99, fall: 2, countConnectFailures: false });
  t.after(() => probe.stop());
  probe.attach(pool);
  const port = await frontend(t, pool);
  for (let i = 0; i < 3; i++) assert.equal(await readLine(await connect(t, port)), 'live');
  await waitFor(() => pool.stats().backends.find((b) => b.id === 'dead')!.connectFailures === 3, { what: 'three refused dials' });
  assert.equal(pool.status('dead')!.health, 'up', 'refusals alone did not mark it down');
});
