/**
 * The mission, without root: three apiserver-like HTTPS backends, 30
 * reflector-like watch clients through the pool (TLS passed through), and a
 * silent network cut of backend 3 (a fault proxy that stops forwarding without
 * closing anything). Every client pinned to backend 3 must see its connection
 * close and re-watch on a live backend, about one probe cycle after the cut.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { loadCerts } from '../examples/support/certs.js';
import { FaultProxy } from '../examples/support/fault-proxy.js';
import { WatchFleet } from '../examples/support/watch-client.js';
import { HealthProbe, UpstreamPool } from '../src/index.js';
import { frontend, HOST, waitFor } from './helpers/net.js';

const INTERVAL = 200;
const TIMEOUT = 200;
const FALL = 2;

test('a silently cut backend: every client pinned to it is torn down and re-watches on a live backend', async (t) => {
  const { ca } = loadCerts();
  const backends = await Promise.all(['b1', 'b2', 'b3'].map((name) => ApiserverBackend.start({ name, host: HOST })));
  t.after(() => Promise.all(backends.map((b) => b.close())));
  const cutter = await FaultProxy.start({ target: backends[2]!.address });
  t.after(() => cutter.close());

  const pool = new UpstreamPool({
    backends: [
      { ...backends[0]!.address, id: 'b1' },
      { ...backends[1]!.address, id: 'b2' },
      { ...cutter.address, id: 'b3' },
    ],
  });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', ca }, interval: INTERVAL, timeout: TIMEOUT, fall: FALL, rise: 2 });
  probe.attach(pool);
  t.after(() => probe.stop());

  const port = await frontend(t, pool);
  const fleet = new WatchFleet({ host: HOST, port, size: 30, tls: { ca } });
  t.after(() => fleet.stop());
  await fleet.waitFor((f) => f.connectedCount === 30 && Object.keys(f.byBackend()).length === 3, 20_000);
  const before = fleet.byBackend();
  t.diagnostic(`streams before the cut: ${JSON.stringify(before)}`);
  const onB3 = fleet.clients.filter((c) => c.backend === 'b3');
  assert.ok(onB3.length >= 8, `b3 serves ${onB3.length} streams`);
  const reconnectsBefore = new Map(onB3.map((c) => [c, c.reconnects]));

  let downAt = 0;
  let tornDown = -1;
  // Only the cut backend's verdict counts; a live one marked down (a probe
  // timing out on a loaded machine) is reported, not mistaken for it.
  const othersDown: string[] = [];
  pool.on('backendDown', (b, change) => {
    if (b.id !== 'b3') othersDown.push(`${b.id} (${change.reason})`);
    else if (downAt === 0) {
      downAt = Date.now();
      tornDown = change.tornDown;
    }
  });
  cutter.cut();
  const cutAt = cutter.cutAt!;

  await waitFor(() => downAt > 0, { what: 'b3 to be marked down' });
  // Every stream that was on b3 re-watches on a live backend and gets data again.
  await fleet.waitFor(
    () => onB3.every((c) => c.connected && c.backend !== 'b3' && c.reconnects > reconnectsBefore.get(c)! && (c.lastEventAt ?? 0) > downAt),
    20_000,
  );
  const recoveredAt = Date.now();
  const after = fleet.byBackend();
  t.diagnostic(`cut -> b3 marked down (and ${tornDown} connections torn down): ${downAt - cutAt} ms`);
  t.diagnostic(`cut -> every b3 stream re-watched elsewhere: ${recoveredAt - cutAt} ms (probe: interval ${INTERVAL} ms, timeout ${TIMEOUT} ms, fall ${FALL})`);
  t.diagnostic(`streams after: ${JSON.stringify(after)}`);

  assert.equal(tornDown, onB3.length, 'every b3 connection was torn down by the verdict');
  assert.equal(after.b3 ?? 0, 0);
  assert.equal(fleet.connectedCount, 30, 'no stream lost');
  assert.equal([...pool.connections('b3')].length, 0);
  assert.equal(pool.stats().teardowns['probe-failed'], onB3.length, `live backends also marked down: ${othersDown.join(', ') || 'none'}`);
  // Streams get an event every 200 ms; 5 s without one means stalled, with
  // room for a loaded machine (recovery itself is asserted above, per stream).
  assert.equal(fleet.stalled(5000).length, 0, 'no stream stalled');
});
