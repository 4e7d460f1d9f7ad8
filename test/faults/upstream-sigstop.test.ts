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
import { ApiserverBackend } from '../../examples/support/apiserver-backend.js';
import { loadCerts } from '../../examples/support/certs.js';
import { WatchFleet } from '../../examples/support/watch-client.js';
import { HealthProbe, UpstreamPool, type DownChange, type StateChange } from '../../src/index.js';
import { ConnectionLedger, spawnBackend } from '../helpers/faults.js';
import { frontend, HOST, waitFor } from '../helpers/net.js';

test('SIGSTOP of a backend process: PROBE_TIMEOUT, its connections torn down with probe-failed, clients move; SIGCONT brings it back', async (t) => {
  const { ca } = loadCerts();
  const victim = await spawnBackend(t, 'victim');
  const survivor = await ApiserverBackend.start({ name: 'b2', host: HOST, watchIntervalMs: 50 });
  t.after(() => survivor.close());

  const pool = new UpstreamPool({
    backends: [
      { host: victim.host, port: victim.port, id: 'victim' },
      { ...survivor.address, id: 'b2' },
    ],
    balancer: 'round-robin',
  });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', ca }, interval: 300, timeout: 300, rise: 2, fall: 2 });
  probe.attach(pool);
  t.after(() => probe.stop());
  const port = await frontend(t, pool);

  const fleet = new WatchFleet({ host: HOST, port, size: 10, tls: { ca }, backoffMs: 20 });
  t.after(() => fleet.stop());
  await fleet.waitFor((f) => f.connectedCount === 10 && (f.byBackend()['victim'] ?? 0) >= 3, 20_000);

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
