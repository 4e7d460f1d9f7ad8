/**
 * Fault: the upstream process is killed (SIGKILL). Its kernel closes every
 * socket it held, so the pinned connections end at once with an upstream
 * reason (no probe needed); the probe then fails at layer `connect`
 * (refused) and takes the backend down; clients re-watch on the survivor and
 * new clients never reach the dead one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DownChange } from '../../src/index.js';
import { victimScenario } from '../helpers/faults.js';
import { waitFor } from '../helpers/net.js';

test('SIGKILL of a backend process: its connections close with an upstream reason, the probe fails at connect, clients move', async (t) => {
  const { victim, pool, ledger, probe, fleet } = await victimScenario(t, { interval: 200, timeout: 200 });
  const onVictim = ledger.open('victim');
  assert.ok(onVictim.length >= 3);

  let down: DownChange | undefined;
  pool.once('backendDown', (_b, change) => (down = change));
  victim.signal('SIGKILL');
  assert.equal(await victim.exited, 'SIGKILL');

  await waitFor(() => onVictim.every((e) => e.conn.closed), { what: 'the dead backend’s connections to close' });
  for (const e of onVictim) assert.ok(['upstream-closed', 'upstream-error'].includes(e.info!.reason), `reason ${e.info!.reason}`);

  await waitFor(() => down !== undefined, { what: 'the probe to take the victim down' });
  assert.equal(down!.reason, 'probe-failed');
  const last = probe.health('victim')?.lastResult;
  assert.equal(last?.error?.code, 'PROBE_CONNECT_FAILED');
  assert.equal(last.error.layer, 'connect');

  await fleet.waitFor((f) => f.connectedCount === 10 && (f.byBackend()['b2'] ?? 0) === 10, 20_000);
  assert.equal([...pool.connections('victim')].length, 0);
  assert.equal(pool.stats().backends.find((b) => b.id === 'victim')!.active, 0);
  assert.deepEqual(ledger.problems(), []);
  t.diagnostic(`teardowns ${JSON.stringify(pool.stats().teardowns)}; connect failures on the victim: ${pool.stats().backends[0]!.connectFailures}`);
});
