/**
 * The reference balancer's discovery flags: parsing (flags and config-file
 * keys of the same names, refusals), DNS discovery combined with a static
 * backend against a real dnsmasq, and Kubernetes discovery with the intent
 * against the fake API server; `/api/backends` shows each backend's source.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ConfigError } from '../src/cli/config.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { apiserverSlice, configMapsPath, endpointSlicesPath } from '../examples/support/fake-kube-api.js';
import { api, configOf, startAdminBalancer, tempDir } from './helpers/admin.js';
import { DNSMASQ, startDnsmasq } from './helpers/dnsmasq.js';
import { fakeCluster } from './helpers/kube.js';
import { HOST, waitFor } from './helpers/net.js';

async function serverOn(t: TestContext, host: string): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, host);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return (server.address() as net.AddressInfo).port;
}

test('discovery flags and config keys parse; contradictions are refused', (t) => {
  const c = configOf(['--backend', '10.0.0.1:6443', '--discover', 'dns:api.example.internal:6443', '--discover', 'srv:_https._tcp.api.example.internal', '--dns-server', '127.0.0.1:5353', '--discovery-state', '/var/lib/fp/state.json']);
  assert.deepEqual(c.discover, [
    { kind: 'dns', name: 'api.example.internal', port: 6443 },
    { kind: 'srv', name: '_https._tcp.api.example.internal' },
  ]);
  assert.deepEqual(c.dnsServer, { host: '127.0.0.1', port: 5353 });
  assert.equal(configOf(['--discover', 'kubernetes', '--dns-server', '::1'].slice(0, 2)).backends.length, 0, 'discovery alone is enough');
  const k = configOf(['--discover', 'kubernetes', '--kubeconfig', '/etc/kubernetes/kubelet.conf', '--intent', 'default']);
  assert.deepEqual(k.intent, { namespace: 'kube-system', name: 'failover-proxy-intent' });
  const dir = tempDir(t);
  const file = join(dir, 'balancer.json');
  writeFileSync(file, JSON.stringify({ backend: ['10.0.0.1:6443'], discover: ['kubernetes', 'dns:api.test:6443'], kubeconfig: 'kubelet.conf', intent: 'ops/drains', 'dns-server': '10.0.0.53' }));
  const f = configOf(['--config', file]);
  assert.equal(f.kubeconfig, join(dir, 'kubelet.conf'));
  assert.deepEqual(f.intent, { namespace: 'ops', name: 'drains' });
  assert.deepEqual(f.dnsServer, { host: '10.0.0.53', port: 53 });
  for (const argv of [
    ['--discover', 'dns:api.test'],
    ['--discover', 'consul:api'],
    ['--discover', 'srv:api.test'],
    ['--backend', '10.0.0.1:6443', '--dns-server', '127.0.0.1'],
    ['--discover', 'dns:api.test:6443', '--kubeconfig', 'x'],
    ['--discover', 'kubernetes', '--workers', '2'],
    ['--discover', 'kubernetes', '--discover', 'kubernetes'],
    ['--discover', 'kubernetes', '--intent', 'no-slash'],
    ['--backend', '10.0.0.1:6443', '--discovery-state', 'x'],
  ]) {
    assert.throws(() => parseBalancerArgs(argv, { readFile: () => '' }), ConfigError, argv.join(' '));
  }
});

test('--discover dns: combined with a static backend; /api/backends shows the source', { skip: DNSMASQ === undefined ? 'dnsmasq is not installed' : false, timeout: 60_000 }, async (t) => {
  const staticPort = await serverOn(t, HOST);
  const port = await serverOn(t, '127.0.0.2');
  const dns = await startDnsmasq(t, { 'api.test': ['127.0.0.2'] });
  const { balancer, status, lines } = await startAdminBalancer(t, [`a=${HOST}:${staticPort}`], { extra: ['--discover', `dns:api.test:${port}`, '--dns-server', dns.server] });
  const id = `127.0.0.2:${port}`;
  await waitFor(() => balancer.pool.status(id)?.health === 'up', { what: 'the discovered backend up' });
  const list = await api(status, 'GET', '/api/backends');
  const sources = Object.fromEntries((list.json.backends as readonly { id: string; source: string }[]).map((b) => [b.id, b.source]));
  assert.deepEqual(sources, { a: 'static', [id]: `dns:api.test:${port}` });
  assert.ok(lines.some((l) => /discovery: 2 backends/.test(l)), lines.join('\n'));
  const metrics = (await api(status, 'GET', '/metrics')).text;
  assert.match(metrics, new RegExp(`^failover_proxy_discovery_source_backends\\{source="dns:api.test:${port}"\\} 1$`, 'm'));
  assert.match(metrics, new RegExp(`^failover_proxy_discovery_source_held\\{source="dns:api.test:${port}"\\} 0$`, 'm'));
  assert.match(metrics, /^failover_proxy_discovery_applies_total [1-9]/m);
});

test('--discover kubernetes with --kubeconfig and --intent against a fake cluster', { timeout: 60_000 }, async (t) => {
  const { api: kube, kubeconfig } = await fakeCluster(t);
  kube.put(endpointSlicesPath('default'), apiserverSlice('kubernetes', [{ address: '127.0.0.2' }, { address: '127.0.0.3' }], kube.port));
  const { balancer, status, lines } = await startAdminBalancer(t, [`${HOST}:${kube.port}`], {
    extra: ['--discover', 'kubernetes', '--kubeconfig', kubeconfig, '--intent', 'default'],
  });
  const id2 = `127.0.0.2:${kube.port}`;
  const id3 = `127.0.0.3:${kube.port}`;
  await waitFor(() => balancer.pool.has(id2) && balancer.pool.has(id3), { what: 'the apiservers discovered' });
  const list = await api(status, 'GET', '/api/backends');
  const sources = Object.fromEntries((list.json.backends as readonly { id: string; source: string }[]).map((b) => [b.id, b.source]));
  assert.deepEqual(sources, { [`${HOST}:${kube.port}`]: 'static', [id2]: 'kubernetes', [id3]: 'kubernetes' });
  kube.put(configMapsPath('kube-system'), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'failover-proxy-intent', namespace: 'kube-system' }, data: { [`127.0.0.3_${kube.port}`]: 'drain' } });
  await waitFor(() => balancer.pool.status(id3)?.admin === 'draining', { what: 'the intent applied' });
  assert.ok(lines.some((l) => l.startsWith('intent:') || l.includes(' intent: ')), lines.join('\n'));
});
