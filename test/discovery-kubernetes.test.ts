/**
 * The Kubernetes source against a fake API server that follows the
 * list/watch contract: an apiserver added, one removed gracefully
 * (terminating: draining, then removed), every endpoint removed (never
 * empty), 410 Gone (re-listed), a watch gone silent (detected, re-listed),
 * the API unreachable (fail-static), and the watch's own backend cut
 * silently (it falls back to a direct dial). Figures are diagnostics.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { apiserverSlice, endpointSlicesPath } from '../examples/support/fake-kube-api.js';
import { FaultProxy } from '../examples/support/fault-proxy.js';
import { Discovery, inClusterAccess, KubernetesSource, loadKubeconfig, Rebalancer, UpstreamPool } from '../src/index.js';
import { fakeCluster } from './helpers/kube.js';
import { frontend, ourHandles, waitFor } from './helpers/net.js';
import { StreamFleet } from './helpers/stream-fleet.js';

const slices = endpointSlicesPath('default');

test('EndpointSlices: added, terminating, removed, never empty, 410, silent watch, API unreachable', { timeout: 120_000 }, async (t) => {
  const { api, kubeconfig } = await fakeCluster(t);
  const port = api.port;
  const id1 = `127.0.0.1:${port}`;
  const id2 = `127.0.0.2:${port}`;
  const id3 = `127.0.0.3:${port}`;
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.2' }], port));
  const pool = new UpstreamPool({ connectTimeout: 1000 });
  t.after(() => pool.destroy());
  const rebalancer = new Rebalancer(pool, { rate: 40, minAge: 300, stableFor: 200, closeTimeout: 300 });
  t.after(() => rebalancer.close());
  const drainTimeout = 1500;
  const source = new KubernetesSource({
    access: () => loadKubeconfig(kubeconfig),
    pool,
    bootstrap: [id1],
    watchSilence: 800,
    connectTimeout: 500,
    backoffBase: 100,
    backoffMax: 400,
  });
  const discovery = new Discovery({ pool, sources: [source], static: [id1], debounce: 100, drainTimeout });
  t.after(() => discovery.close());
  const held: { reason: string; why: string | undefined }[] = [];
  discovery.on('sourceHeld', (_s, reason, _k, error) => held.push({ reason, why: (error as { reason?: string } | undefined)?.reason }));
  await discovery.start();
  await waitFor(() => pool.has(id2), { what: 'the listed apiserver' });
  assert.equal(pool.get(id2)!.meta.source, 'kubernetes');
  assert.equal(pool.get(id1)!.meta.source, 'static');
  const stats = (): Record<string, unknown> => discovery.stats().sources.kubernetes!.source;
  assert.equal(stats().lists, 1);

  const fleet = new StreamFleet(t, await frontend(t, pool), 20, 0);
  await waitFor(() => fleet.open === 20 && Array.from(pool.members()).length === 20, { what: '20 streams' });

  // Added.
  const addAt = Date.now();
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.2' }, { address: '127.0.0.3' }], port));
  await waitFor(() => pool.has(id3), { what: 'apiserver 3 added' });
  const inPoolAt = Date.now();
  await waitFor(() => pool.has(id3) && Array.from(pool.members(id3)).length > 0, { what: 'a connection on apiserver 3' });
  t.diagnostic(`EndpointSlice add: in pool after ${inPoolAt - addAt} ms, carrying a connection after ${Date.now() - addAt} ms`);

  // Removed gracefully: terminating but serving -> draining (not down), then gone -> removed.
  const termAt = Date.now();
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.2', ready: false, serving: true, terminating: true }, { address: '127.0.0.3' }], port));
  await waitFor(() => pool.status(id2)?.admin === 'draining', { what: 'apiserver 2 draining' });
  assert.equal(pool.status(id2)!.health, 'up');
  const drainingAt = Date.now();
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.3' }], port));
  await waitFor(() => !pool.has(id2), { what: 'apiserver 2 removed' });
  await waitFor(() => fleet.open === 20 && Array.from(pool.members()).length === 20, { what: 'streams moved' });
  t.diagnostic(`EndpointSlice terminating: draining after ${drainingAt - termAt} ms; removed and every stream moved ${Date.now() - termAt} ms (drain deadline ${drainTimeout} ms)`);

  // All endpoints removed: never empty.
  api.put(slices, apiserverSlice('kubernetes', [], port));
  await waitFor(() => held.some((h) => h.reason === 'empty'), { what: 'empty answer held' });
  assert.ok(pool.has(id3) && pool.status(id3)!.admin === 'active', 'the last good list stays');

  // 410 Gone: re-listed.
  const listsBefore = stats().lists as number;
  api.compact();
  await waitFor(() => (stats().lists as number) > listsBefore, { what: 'a re-list after 410' });
  assert.ok((stats().gone as number) >= 1);
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.2' }, { address: '127.0.0.3' }], port));
  await waitFor(() => pool.has(id2), { what: 'apiserver 2 back after the re-list' });

  // A watch gone silent: detected and re-listed.
  const silentBefore = stats().silent as number;
  api.silenceWatches();
  const silenceAt = Date.now();
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.3' }], port));
  await waitFor(() => pool.status(id2)?.admin === 'draining' || !pool.has(id2), { what: 'the change seen after the silence' });
  assert.ok((stats().silent as number) > silentBefore);
  t.diagnostic(`silent watch: change applied ${Date.now() - silenceAt} ms after it was made (watchSilence 800 ms)`);

  // The API unreachable: fail-static.
  await api.stop();
  const failedBefore = held.filter((h) => h.reason === 'failed').length;
  await waitFor(() => held.filter((h) => h.reason === 'failed').length >= failedBefore + 3, { what: 'failures held' });
  assert.ok(pool.has(id1) && pool.has(id3), 'nothing removed while the API is away');
  assert.equal(discovery.stats().sources.kubernetes!.state, 'held');
  assert.ok(held.slice(failedBefore).some((h) => h.why === 'unreachable' || h.why === 'silent'), JSON.stringify(held.slice(failedBefore)));
  await api.resume();
  await waitFor(() => discovery.stats().sources.kubernetes!.state === 'ok', { timeout: 30_000, what: 'back once the API is' });
  fleet.stop();
});

test("the watch's own backend cut silently: it falls back to a direct dial", { timeout: 60_000 }, async (t) => {
  const { api, kubeconfig } = await fakeCluster(t);
  const port = api.port;
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.2' }, { address: '127.0.0.3' }], port));
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port } });
  t.after(() => proxy.close());
  const viaProxy = `127.0.0.1:${proxy.port}`;
  const pool = new UpstreamPool({ backends: [viaProxy], connectTimeout: 500 });
  t.after(() => pool.destroy());
  const source = new KubernetesSource({ access: await loadKubeconfig(kubeconfig), pool, bootstrap: [viaProxy], watchSilence: 800, connectTimeout: 500, backoffBase: 50, backoffMax: 200 });
  // A long debounce: the first list and watch go through the pool's only backend, the proxy.
  const discovery = new Discovery({ pool, sources: [source], static: [viaProxy], debounce: 1500 });
  t.after(() => discovery.close());
  await discovery.start();
  const stats = (): Record<string, unknown> => discovery.stats().sources.kubernetes!.source;
  await waitFor(() => (stats().watches as number) >= 1, { what: 'a watch' });
  assert.equal(stats().route, 'pool');
  assert.ok(proxy.connections >= 1, 'the watch went through the proxy');
  await waitFor(() => pool.has(`127.0.0.2:${port}`), { what: 'discovered apiservers applied' });
  const cutAt = Date.now();
  proxy.cut();
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.3' }], port));
  await waitFor(() => pool.status(`127.0.0.2:${port}`) === undefined || pool.status(`127.0.0.2:${port}`)!.admin === 'draining', { what: 'the change, seen through another route' });
  assert.match(String(stats().route), /^direct 127\.0\.0\.[23]:/);
  assert.ok((stats().silent as number) >= 1);
  t.diagnostic(`own backend cut silently: change applied ${Date.now() - cutAt} ms after the cut, through ${String(stats().route)}`);
});

test('KubernetesSource options are validated; a JSON kubeconfig needs no yaml', async () => {
  assert.throws(() => new KubernetesSource({ access: { server: 'https://x:1', origin: 't' }, bootstrap: ['nope'] }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new KubernetesSource({ access: { server: 'https://x:1', origin: 't' }, watchSilence: 0 }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(loadKubeconfig('/nonexistent/kubeconfig'), { code: 'KUBECONFIG_INVALID' });
  const dir = mkdtempSync(join(tmpdir(), 'fp-kubejson-'));
  try {
    const file = join(dir, 'config.json');
    const doc = {
      clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1:6443/', 'certificate-authority-data': Buffer.from('CA').toString('base64'), 'tls-server-name': 'api.internal' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
      users: [{ name: 'u', user: { tokenFile: 'token' } }],
    };
    writeFileSync(file, JSON.stringify(doc));
    const access = await loadKubeconfig(file);
    assert.equal(access.server, 'https://10.0.0.1:6443');
    assert.equal(access.ca?.toString(), 'CA');
    assert.equal(access.servername, 'api.internal');
    assert.equal(access.tokenFile, join(dir, 'token'), 'relative to the file');
    writeFileSync(file, JSON.stringify({ ...doc, 'current-context': 'nope' }));
    await assert.rejects(loadKubeconfig(file), { code: 'KUBECONFIG_INVALID' });
    writeFileSync(file, JSON.stringify({ ...doc, clusters: [{ name: 'c', cluster: { server: 'http://10.0.0.1' } }] }));
    await assert.rejects(loadKubeconfig(file), { code: 'KUBECONFIG_INVALID' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(inClusterAccess({}), { code: 'KUBECONFIG_INVALID' });
});

test('closing the discovery leaves no socket or timer behind', { timeout: 30_000 }, async (t) => {
  const { api, kubeconfig } = await fakeCluster(t);
  api.put(slices, apiserverSlice('kubernetes', [{ address: '127.0.0.2' }], api.port));
  const pool = new UpstreamPool({ backends: [`127.0.0.1:${api.port}`] });
  t.after(() => pool.destroy());
  const access = await loadKubeconfig(kubeconfig);
  const before = ourHandles();
  const source = new KubernetesSource({ access, pool, watchSilence: 5000 });
  const discovery = new Discovery({ pool, sources: [source], debounce: 50 });
  await discovery.start();
  await waitFor(() => (discovery.stats().sources.kubernetes!.source.watches as number) >= 1 && pool.has(`127.0.0.2:${api.port}`), { what: 'watching' });
  const closing = discovery.close();
  assert.equal(discovery.close(), closing, 'close is idempotent');
  await closing;
  await waitFor(() => ourHandles().join() === before.join(), { timeout: 5000, what: `handles back to ${before.join()} (now ${ourHandles().join()})` });
});
