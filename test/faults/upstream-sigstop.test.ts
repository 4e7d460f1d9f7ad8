/**
 * Fault: the upstream process is frozen (SIGSTOP). Its kernel still completes
 * TCP handshakes and ACKs bytes, so nothing closes and nothing is refused:
 * only the HTTPS check's timeout notices. The verdict tears down every
 * connection pinned to it (reason `probe-failed`), clients re-watch on the
 * survivor, and once the process is continued the probe brings it back after
 * `rise` passes. The frozen process is continued and killed on the way out.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DownChange, StateChange } from '../../src/index.js';
import { victimScenario } from '../helpers/faults.js';
import { waitFor } from '../helpers/net.js';

test('SIGSTOP of a backend process: PROBE_TIMEOUT, its connections torn down with probe-failed, clients move; SIGCONT brings it back', async (t) => {
  const { victim, pool, ledger, probe, fleet } = await victimScenario(t, { interval: 300, timeout: 300 });

  let down: DownChange | undefined;
  const tornDownAtVerdict: string[] = [];
  pool.once('backendDown', (_b, change) => {
    down = change;
  });
  // Which connections the verdict takes: everything open on the victim at that instant.
  probe.once('unhealthy', () => {
    for (const e of ledger.closed('victim')) if (e.info?.reason === 'probe-failed') tornDownAtVerdict.push(e.conn.id);
  });
  victim.signal('SIGSTOP');

  await waitFor(() => down !== undefined, { what: 'the probe to take the frozen backend down' });
  assert.equal(down!.reason, 'probe-failed');
  const last = probe.health('victim')?.lastResult;
  assert.equal(last?.error?.code, 'PROBE_TIMEOUT', `last check: ${last?.error?.message}`);
  assert.equal(last.error.layer, 'timeout');
  // Nothing closed by itself: every connection to the frozen process was torn down by the verdict.
  const victimClosed = ledger.closed('victim');
  assert.ok(victimClosed.length >= 3);
  assert.equal(down!.tornDown, tornDownAtVerdict.length);
  assert.ok(down!.tornDown >= 3, `torn down ${down!.tornDown}`);
  for (const e of victimClosed) assert.equal(e.info!.reason, 'probe-failed', `connection ${e.conn.id}`);
  assert.equal([...pool.connections('victim')].length, 0);

  await fleet.waitFor((f) => f.connectedCount === 10 && (f.byBackend()['b2'] ?? 0) === 10, 20_000);
  assert.equal(fleet.stalled(2000).length, 0, 'no stream stays stalled');

  // Continued: the probe passes again and brings it back after `rise`.
  let up: StateChange | undefined;
  pool.once('backendUp', (_b, change) => (up = change));
  victim.signal('SIGCONT');
  await waitFor(() => up !== undefined, { what: 'the continued backend to come back' });
  assert.equal(up!.reason, 'probe-passed');
  assert.equal(probe.health('victim')?.consecutiveSuccesses, 2);
  assert.deepEqual(ledger.problems(), []);
});
