// Sliced teardown on real loopback sockets: with more members than
// `teardown.syncMax`, markDown still takes every one out of the registry and
// stops its forwarding before it returns; only the closing of the sockets is
// spread over later loop turns, under a time budget per turn, while the other
// backends keep flowing and new clients are placed.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamPool, type PoolMember } from '../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

const N = 1000;
const OTHERS = 20;
const IN_FLIGHT = 50;
const SYNC_MAX = 64;

test('markDown of a backend with 1,000 members: all out and silent when it returns, sockets closed over a bounded number of turns', { timeout: 120_000 }, async (t) => {
  const b1 = await listen(t, (socket) => socket.write('hello\n'));
  const b2 = await listen(t, (socket) => socket.pipe(socket));
  let target = 'b1';
  const pool = new UpstreamPool({
    backends: [{ host: HOST, port: b1.port, id: 'b1' }, { host: HOST, port: b2.port, id: 'b2' }],
    // The test decides where each client goes; any eligible one otherwise.
    balancer: (candidates) => candidates.find((c) => c.backend.id === target) ?? candidates[0],
    teardown: { syncMax: SYNC_MAX, budgetMs: 2 },
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);

  const victims: Socket[] = [];
  for (let i = 0; i < N; i += IN_FLIGHT) {
    victims.push(...(await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, N - i) }, () => connect(t, port)))));
  }
  await waitFor(() => pool.status('b1')!.members === N, { what: `${N} connections on b1` });
  target = 'b2';
  const others: Socket[] = [];
  for (let i = 0; i < OTHERS; i++) others.push(await connect(t, port));
  await waitFor(() => pool.stats().active === N + OTHERS && b1.sockets.size === N, { what: `${N + OTHERS} pinned connections` });
  // Every victim got its greeting: the path works before the cut.
  let received = 0;
  for (const socket of victims) socket.on('data', (chunk: Buffer) => (received += chunk.length));
  await waitFor(() => received === N * 'hello\n'.length, { what: 'every greeting' });

  const members: PoolMember[] = [...pool.members('b1')];
  assert.equal(members.length, N);
  const tornDown = pool.markDown('b1');

  // Everything below, up to the first await, runs inside the turn of the call.
  assert.equal(tornDown, N);
  assert.equal([...pool.members('b1')].length, 0, 'b1 registry empty');
  assert.ok(members.every((m) => m.closed), 'every member reports closed');
  const stats = pool.stats();
  assert.equal(stats.active, OTHERS);
  assert.equal(stats.backends.find((b) => b.id === 'b1')!.active, 0);
  assert.equal(stats.teardowns['marked-down'], N, 'every member counted under the reason');
  assert.equal(stats.closing, N, 'beyond syncMax, every socket is closed on later turns');
  // The backend keeps talking; none of it may reach a client any more.
  const receivedAtCall = received;
  for (const socket of b1.sockets) socket.write('late bytes that must not be forwarded\n');

  // Meanwhile: the other backend keeps flowing, and new clients are placed.
  const fresh = Array.from({ length: 10 }, () => connect(t, port));
  let turns = 0;
  while (pool.stats().closing > 0 && turns < 10_000) {
    await new Promise((resolve) => setImmediate(resolve));
    turns++;
  }
  t.diagnostic(`${N} socket pairs closed over ${turns} loop turns (budget 2 ms per turn)`);
  assert.equal(pool.stats().closing, 0);
  // At least 16 closes per slice (the clock is read every 16): a bound in turns, not in time.
  assert.ok(turns <= Math.ceil(N / 16) + 2, `${turns} turns to close ${N} pairs`);

  const echoes = others.map(async (socket, i) => {
    const line = `still flowing ${i}\n`;
    let got = '';
    const done = new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        got += chunk.toString();
        if (got === line) resolve();
      }),
    );
    socket.write(line);
    await done;
  });
  await Promise.all(echoes);
  await Promise.all(fresh);
  await waitFor(() => pool.stats().active === OTHERS + 10, { what: 'the new clients to be placed' });
  assert.equal([...pool.members('b2')].length, OTHERS + 10, 'the new clients went to b2');

  // Every victim's socket closes (reset), and not one late byte arrived.
  await waitFor(() => victims.every((s) => s.destroyed), { what: 'every victim client to close' });
  await waitFor(() => [...b1.sockets].every((s) => s.readableEnded || s.destroyed), { what: 'b1 to see every upstream close' });
  assert.equal(received, receivedAtCall, 'no byte forwarded after markDown returned');
  assert.equal(pool.stats().teardowns['marked-down'], N, 'no member counted twice');
});
