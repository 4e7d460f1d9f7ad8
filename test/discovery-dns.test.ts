/**
 * The DNS source against a real dnsmasq on a loopback port whose records
 * change while 60 streams run through a pool: an added address takes new
 * connections and its share (rebalancer), a removed one drains and its
 * streams move within the deadline, an NXDOMAIN is held, and a resolver that
 * stops answering removes nothing. Figures are printed as diagnostics.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { Discovery, DnsSource, Rebalancer, UpstreamPool, type DiscoveryApplied } from '../src/index.js';
import { DNSMASQ, startDnsmasq } from './helpers/dnsmasq.js';
import { frontend, waitFor } from './helpers/net.js';
import { StreamFleet } from './helpers/stream-fleet.js';

const skip = DNSMASQ === undefined ? 'dnsmasq is not installed (.ci/run installs dnsmasq-base)' : false;

/** Echo servers on 127.0.0.2, .3 and .4, all on one port. */
async function echoes(t: TestContext): Promise<number> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const make = (): net.Server =>
    net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => sockets.delete(s));
      s.pipe(s);
    });
  const first = make().listen(0, '127.0.0.2');
  await once(first, 'listening');
  servers.push(first);
  const port = (first.address() as net.AddressInfo).port;
  for (const host of ['127.0.0.3', '127.0.0.4']) {
    const s = make().listen(port, host);
    await once(s, 'listening');
    servers.push(s);
  }
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  return port;
}

function membersOn(pool: UpstreamPool, id: string): number {
  return pool.has(id) ? Array.from(pool.members(id)).length : 0;
}

test('DNS discovery with 60 streams: add, remove, NXDOMAIN held, resolver silent', { skip, timeout: 120_000 }, async (t) => {
  const port = await echoes(t);
  const dns = await startDnsmasq(t, { 'api.test': ['127.0.0.2', '127.0.0.3'] });
  const pool = new UpstreamPool({ connectTimeout: 1000 });
  t.after(() => pool.destroy());
  const rebalancer = new Rebalancer(pool, { rate: 40, minAge: 300, stableFor: 200, tolerance: 0.2, closeTimeout: 500 });
  t.after(() => rebalancer.close());
  const hold = 4000;
  const drainTimeout = 1500;
  const source = new DnsSource({ name: 'api.test', port, servers: [dns.server], ttlFloor: 200, holdNx: hold, holdTimeout: hold, timeout: 300, tries: 1 });
  const discovery = new Discovery({ pool, sources: [source], debounce: 200, drainTimeout });
  t.after(() => discovery.close());
  const applied: DiscoveryApplied[] = [];
  discovery.on('applied', (a) => applied.push(a));
  const held: { reason: string; code: string | undefined; why: string | undefined }[] = [];
  discovery.on('sourceHeld', (_s, reason, _kept, error) =>
    held.push({ reason, code: (error as { code?: string } | undefined)?.code, why: (error as { reason?: string } | undefined)?.reason }),
  );
  await discovery.start();
  const b2 = `127.0.0.2:${port}`;
  const b3 = `127.0.0.3:${port}`;
  const b4 = `127.0.0.4:${port}`;
  await waitFor(() => pool.has(b2) && pool.has(b3), { what: 'the first answer applied' });
  assert.equal(pool.get(b2)!.meta.source, `dns:api.test:${port}`);

  const fleet = new StreamFleet(t, await frontend(t, pool), 60);
  await waitFor(() => fleet.open === 60 && membersOn(pool, b2) + membersOn(pool, b3) === 60, { what: '60 streams' });

  // 1. An added address takes new connections, then its share through rebalancing.
  const addAt = Date.now();
  dns.setRecords({ 'api.test': ['127.0.0.2', '127.0.0.3', '127.0.0.4'] });
  await waitFor(() => pool.has(b4), { what: '127.0.0.4 added' });
  const addedAt = Date.now();
  await waitFor(() => membersOn(pool, b4) > 0, { what: 'a connection on 127.0.0.4' });
  const firstConnAt = Date.now();
  await waitFor(() => membersOn(pool, b4) >= 16 && fleet.open === 60, { what: '127.0.0.4 carrying its share' });
  const shareAt = Date.now();
  t.diagnostic(`add: in pool after ${addedAt - addAt} ms, first connection ${firstConnAt - addAt} ms, share (>=16 of 60) ${shareAt - addAt} ms`);

  // 2. A removed address drains; its streams move within the deadline.
  const removeAt = Date.now();
  dns.setRecords({ 'api.test': ['127.0.0.2', '127.0.0.4'] });
  await waitFor(() => pool.status(b3)?.admin === 'draining', { what: '127.0.0.3 draining' });
  const drainingAt = Date.now();
  assert.equal(pool.status(b3)!.health, 'up', 'removal is a drain, not a verdict');
  await waitFor(() => !pool.has(b3), { what: '127.0.0.3 removed' });
  const removedAt = Date.now();
  await waitFor(() => fleet.open === 60 && membersOn(pool, b2) + membersOn(pool, b4) === 60, { what: 'every stream on .2 and .4' });
  const movedAt = Date.now();
  assert.ok(removedAt - drainingAt < drainTimeout + 1000 + (drainingAt - removeAt), `removed within the drain deadline (${removedAt - drainingAt} ms)`);
  t.diagnostic(`remove: draining after ${drainingAt - removeAt} ms, removed ${removedAt - removeAt} ms, all 60 streams moved ${movedAt - removeAt} ms (deadline ${drainTimeout} ms)`);

  // 3. NXDOMAIN: held, nothing removed, for `hold` and after (never empty).
  const nxAt = Date.now();
  const before = held.length;
  dns.setRecords({ 'other.test': ['127.0.0.9'] });
  await waitFor(() => held.length > before + 2, { what: 'failed lookups held' });
  const nx = held.slice(before);
  assert.ok(nx.every((h) => h.code === 'DISCOVERY_SOURCE_FAILED' && (h.why === 'nodata' || h.why === 'nxdomain')), JSON.stringify(nx));
  assert.ok(pool.has(b2) && pool.has(b4) && pool.status(b2)!.admin === 'active' && pool.status(b4)!.admin === 'active');
  await waitFor(() => Date.now() - nxAt > hold + 500 && held.slice(before).some((h) => h.reason === 'empty'), { what: 'past the hold' });
  assert.ok(pool.has(b2) && pool.has(b4), 'never empty: the last good list stays after the hold');
  assert.equal(fleet.open, 60);
  assert.equal(discovery.stats().sources[source.name]!.state, 'held');

  // 4. The resolver stops answering: timeouts remove nothing.
  dns.setRecords({ 'api.test': ['127.0.0.2', '127.0.0.4'] });
  await waitFor(() => discovery.stats().sources[source.name]!.state === 'ok', { what: 'answers again' });
  const appliesBefore = applied.length;
  const stopAt = Date.now();
  const beforeTimeouts = held.length;
  dns.pause();
  t.after(() => dns.resume());
  await waitFor(() => held.slice(beforeTimeouts).filter((h) => h.why === 'timeout').length >= 2, { what: 'timeouts held' });
  assert.ok(pool.has(b2) && pool.has(b4));
  assert.equal(pool.status(b2)!.admin, 'active');
  assert.equal(applied.length, appliesBefore, 'nothing applied while the resolver is silent');
  assert.equal(fleet.open, 60);
  t.diagnostic(`resolver silent for ${Date.now() - stopAt} ms: nothing removed`);
  dns.resume();
  fleet.stop();
});

test('SRV discovery: targets and ports from the records', { skip, timeout: 30_000 }, async (t) => {
  const dns = await startDnsmasq(t, { 'cp1.test': ['127.0.0.2'], 'cp2.test': ['127.0.0.3'] }, ['_https._tcp.api.test,cp1.test,6443,0,5', '_https._tcp.api.test,cp2.test,7443,0,0']);
  const pool = new UpstreamPool();
  t.after(() => pool.destroy());
  const source = new DnsSource({ name: '_https._tcp.api.test', type: 'srv', servers: [dns.server], ttlFloor: 200 });
  assert.equal(source.name, 'srv:_https._tcp.api.test');
  const discovery = new Discovery({ pool, sources: [source], static: ['127.0.0.1:6443'], debounce: 0 });
  t.after(() => discovery.close());
  await discovery.start();
  await waitFor(() => pool.backends().length === 3, { what: 'SRV targets applied' });
  assert.deepEqual(pool.backends().map((b) => [b.id, b.weight, b.meta.source]).sort(), [
    ['127.0.0.1:6443', 1, 'static'],
    ['127.0.0.2:6443', 5, 'srv:_https._tcp.api.test'],
    ['127.0.0.3:7443', 1, 'srv:_https._tcp.api.test'],
  ]);
});

test('DnsSource options are validated', () => {
  assert.throws(() => new DnsSource({ name: 'a.test' }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new DnsSource({ name: 'a.test', port: 1, servers: ['nope'] }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new DnsSource({ name: '_a._tcp.test', type: 'srv', port: 1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new DnsSource({ name: 'a.test', port: 1, ttlFloor: 5000, ttlCeiling: 10 }), { code: 'INVALID_ARGUMENT' });
});
