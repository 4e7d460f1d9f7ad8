/**
 * The `diagnostics_channel` channels: a subscriber on each gets the messages
 * docs/diagnostics.md describes, from a real pool and probe on loopback; the
 * table in the docs names exactly the channels src/diagnostics.ts owns; and
 * `await using` disposes of the pool, probe, agent and rebalancer.
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { HealthProbe, Rebalancer, tcpCheck, UpstreamPool, type CheckResult, type StateChange } from '../src/index.js';
import { channelNames } from '../src/diagnostics.js';
import { closedPort, connect, HOST, listen, waitFor } from './helpers/net.js';

/** Everything published on `name` until the test ends. */
function record(t: TestContext, name: string): Record<string, unknown>[] {
  const seen: Record<string, unknown>[] = [];
  const fn = (message: unknown): void => {
    seen.push(message as Record<string, unknown>);
  };
  diagnostics.subscribe(name, fn);
  t.after(() => diagnostics.unsubscribe(name, fn));
  return seen;
}

test('docs/diagnostics.md lists exactly the channels src/diagnostics.ts owns, discovery included', () => {
  const doc = readFileSync(new URL('../docs/diagnostics.md', import.meta.url), 'utf8');
  const listed = [...doc.matchAll(/^\| `(failover-proxy:[^`]+)` \|/gm)].map((m) => m[1]).sort();
  assert.deepEqual(listed, Object.values(channelNames).sort());
  assert.ok(listed.includes('failover-proxy:discovery'));
});

test('a connection opened, a backend marked down with its cause, the teardown and the close, in that order', async (t) => {
  const opened = record(t, channelNames.connectionOpened);
  const closed = record(t, channelNames.connectionClosed);
  const states = record(t, channelNames.backendStateChanged);
  const teardowns = record(t, channelNames.teardown);
  const order: string[] = [];
  for (const name of [channelNames.connectionOpened, channelNames.backendStateChanged, channelNames.teardown, channelNames.connectionClosed]) {
    const fn = (): void => void order.push(name.slice('failover-proxy:'.length));
    diagnostics.subscribe(name, fn);
    t.after(() => diagnostics.unsubscribe(name, fn));
  }

  const { port } = await listen(t, (s) => s.pipe(s));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port, id: 'a' }] });
  t.after(() => pool.destroy());
  const { port: front } = await listen(t, (client) => void pool.pin(client).catch(() => {}));
  await connect(t, front);
  await waitFor(() => opened.length === 1, { what: 'connectionOpened' });
  const [open] = opened;
  assert.equal(open!.pool, pool);
  assert.equal((open!.backend as { id: string }).id, 'a');
  const member = open!.member as { kind: string; backend: { id: string } };
  assert.equal(member.kind, 'connection');

  assert.equal(pool.markDown('a', 'marked-down', { code: 'operator' }), 1);
  assert.equal(states.length, 1);
  const change = states[0]!.change as StateChange;
  assert.equal(states[0]!.pool, pool);
  assert.equal((states[0]!.backend as { id: string }).id, 'a');
  assert.deepEqual([change.axis, change.from, change.to, change.reason, change.tornDown], ['health', 'up', 'down', 'marked-down', 1]);
  assert.equal(change.cause.code, 'operator');
  assert.deepEqual(
    teardowns.map((m) => ({ backend: (m.backend as { id: string }).id, reason: m.reason, count: m.count, sliced: m.sliced })),
    [{ backend: 'a', reason: 'marked-down', count: 1, sliced: false }],
  );
  assert.equal(closed.length, 1, 'closed before markDown returned');
  assert.equal(closed[0]!.member, open!.member);
  assert.equal((closed[0]!.info as { reason: string }).reason, 'marked-down');
  // Teardown first (the members are out), then each close, then the state change is announced.
  assert.deepEqual(order, ['connectionOpened', 'teardown', 'connectionClosed', 'backendStateChanged']);
});

test('every check result, with the verdict it caused, and the probe-caused state change with its cause', async (t) => {
  const checks = record(t, channelNames.checked);
  const states = record(t, channelNames.backendStateChanged);
  const dead = await closedPort();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: dead, id: 'dead' }] });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ check: tcpCheck(), fall: 2, rise: 1, timeout: 1000, autoStart: false });
  t.after(() => probe.stop());
  probe.attach(pool);

  await probe.checkNow('dead');
  assert.equal(checks.length, 1);
  assert.equal(checks[0]!.probe, probe);
  const first = checks[0]!.result as CheckResult;
  assert.equal(first.backend.id, 'dead');
  assert.equal(first.ok, false);
  assert.equal(first.error?.layer, 'connect');
  assert.equal(checks[0]!.verdict, undefined, 'one failure of two changes nothing');
  assert.equal(states.length, 0);

  await probe.checkNow('dead');
  assert.equal(checks.length, 2);
  assert.equal(checks[1]!.verdict, 'down');
  assert.equal(states.length, 1);
  const change = states[0]!.change as StateChange;
  assert.deepEqual([change.to, change.reason, change.cause.source], ['down', 'probe-failed', 'probe']);
});

test('await using disposes of the pool, the probe, an agent and a rebalancer', async () => {
  let pool: UpstreamPool;
  let probe: HealthProbe;
  let rebalancer: Rebalancer;
  {
    await using p = new UpstreamPool({ backends: [`${HOST}:1`] });
    await using pr = new HealthProbe({ autoStart: false });
    await using _agent = p.createAgent();
    await using r = new Rebalancer(p);
    pool = p;
    probe = pr;
    rebalancer = r;
    assert.ok(p.listenerCount('backendDraining') > 0, 'the agent listens to its pool');
  }
  await assert.rejects(pool.connect(), { code: 'POOL_CLOSED' });
  assert.throws(() => probe.add({ host: HOST, port: 2 }), { code: 'PROBE_CLOSED' });
  assert.equal(pool.listenerCount('backendDraining'), 0, 'the agent let go of its pool');
  assert.equal(rebalancer.active, false);
  assert.equal(pool.listenerCount('connectionOpened'), 0, 'the rebalancer let go of its pool');
});
