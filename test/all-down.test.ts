// The all-down policy on real loopback sockets: with every backend down,
// 'queue' holds new clients until one comes back, and 'fail-open' places them
// on the backends that are down but still active (the checks may be what
// failed). Either way the switch is emitted as allDownChanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamPool, type FailoverProxyError } from '../src/index.js';
import { connect, frontend, HOST, listen, readLine, waitFor } from './helpers/net.js';

async function named(t: Parameters<typeof listen>[0], ids: readonly string[]) {
  const backends = [];
  for (const id of ids) backends.push({ host: HOST, port: (await listen(t, (socket) => socket.write(`${id}\n`))).port, id });
  return backends;
}

test("allDown 'queue': clients wait while every backend is down and are served when one comes back", { timeout: 60_000 }, async (t) => {
  const pool = new UpstreamPool({ backends: await named(t, ['b1', 'b2']), allDown: 'queue', queue: { timeout: 30_000 } });
  t.after(() => pool.destroy());
  const events: string[] = [];
  pool.on('allDownChanged', (active, policy) => events.push(`${active}:${policy}`));
  const port = await frontend(t, pool);

  pool.markDown('b1');
  assert.deepEqual(events, [], 'one backend left: not all down');
  pool.markDown('b2');
  assert.deepEqual(events, ['true:queue']);
  assert.equal(pool.stats().allDown, true);

  const clients = await Promise.all(Array.from({ length: 5 }, () => connect(t, port)));
  const lines = clients.map((client) => readLine(client));
  await waitFor(() => pool.stats().waiting === 5, { what: 'five clients waiting' });
  assert.equal(pool.stats().active, 0, 'nothing placed while all are down');

  pool.markUp('b2');
  assert.deepEqual(events, ['true:queue', 'false:queue']);
  assert.deepEqual(await Promise.all(lines), ['b2', 'b2', 'b2', 'b2', 'b2'], 'every waiting client served by the one that came back');
  assert.equal(pool.stats().waiting, 0);
  assert.equal(pool.stats().allDown, false);
});

test("allDown 'queue': a client that waits past queue.timeout is refused with NO_HEALTHY_BACKEND", async (t) => {
  const pool = new UpstreamPool({ backends: await named(t, ['b1']), allDown: 'queue', queue: { timeout: 200 } });
  t.after(() => pool.destroy());
  const failures: FailoverProxyError[] = [];
  pool.on('pinFailed', (error) => failures.push(error));
  const port = await frontend(t, pool);
  pool.markDown('b1');
  const client = await connect(t, port);
  await waitFor(() => failures.length > 0, { what: 'the waiting client to be refused' });
  await waitFor(() => client.readableEnded || client.destroyed, { what: 'the refused client to see its connection end' });
  assert.equal(failures.length, 1);
  assert.equal(failures[0]!.code, 'NO_HEALTHY_BACKEND');
  assert.equal((failures[0] as FailoverProxyError & { reason?: string }).reason, 'queue-timeout');
});

test("allDown 'fail-open': while every backend is down, clients go to the unhealthy but active ones, never to maintenance", { timeout: 60_000 }, async (t) => {
  const pool = new UpstreamPool({ backends: await named(t, ['b1', 'b2', 'b3']), allDown: 'fail-open' });
  t.after(() => pool.destroy());
  const events: string[] = [];
  pool.on('allDownChanged', (active, policy) => events.push(`${active}:${policy}`));
  const port = await frontend(t, pool);

  pool.markMaintenance('b3');
  pool.markDown('b1');
  pool.markDown('b2');
  assert.deepEqual(events, ['true:fail-open']);

  const served: string[] = [];
  for (let i = 0; i < 6; i++) served.push(await readLine(await connect(t, port)));
  assert.deepEqual([...new Set(served)].sort(), ['b1', 'b2'], `placed on the down-but-active backends: ${served.join(' ')}`);
  assert.equal(pool.status('b1')!.health, 'down', 'failing open changes no health');
  assert.equal(pool.status('b1')!.members + pool.status('b2')!.members, 6);
  assert.equal(pool.status('b3')!.members, 0, 'maintenance is operator intent: never failed open onto');
  assert.equal(pool.stats().waiting, 0);

  // One comes back: panic mode ends, and new clients go to the healthy one only.
  pool.markUp('b2');
  assert.deepEqual(events, ['true:fail-open', 'false:fail-open']);
  for (let i = 0; i < 3; i++) assert.equal(await readLine(await connect(t, port)), 'b2');
  assert.equal(pool.status('b1')!.members, served.filter((id) => id === 'b1').length, 'no new client on b1 once b2 is healthy');
});

test('allDown: a bad policy is refused', () => {
  assert.throws(() => new UpstreamPool({ allDown: 'panic' as never }), { code: 'INVALID_ARGUMENT' });
});
