/**
 * Cluster-wide intent: a drain and a maintenance declared once in a
 * ConfigMap of the fake cluster reach two balancers' pools, survive the API
 * going away (fail-static, and still apply to a backend added meanwhile),
 * and `active` undoes only what the intent did.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configMapsPath } from '../examples/support/fake-kube-api.js';
import { ClusterIntent, loadKubeconfig, UpstreamPool, type IntentChange } from '../src/index.js';
import { fakeCluster } from './helpers/kube.js';
import { waitFor } from './helpers/net.js';

const cms = configMapsPath('kube-system');
const intentMap = (data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'failover-proxy-intent', namespace: 'kube-system' }, data });

test('a drain declared in the cluster reaches two balancers and survives the API going away', { timeout: 60_000 }, async (t) => {
  const { api, kubeconfig } = await fakeCluster(t, ['127.0.0.1']);
  const access = await loadKubeconfig(kubeconfig);
  const backends = ['127.0.0.2:6443', '127.0.0.3:6443', '127.0.0.4:6443'];
  const balancers = [0, 1].map(() => {
    const pool = new UpstreamPool({ backends });
    t.after(() => pool.destroy());
    const intent = new ClusterIntent({ access, target: pool, watchSilence: 800, connectTimeout: 300, backoffBase: 50, backoffMax: 200 });
    t.after(() => intent.close());
    const applied: IntentChange[] = [];
    intent.on('applied', (c) => applied.push(...c));
    return { pool, intent, applied };
  });
  // An operator's own drain (not the intent's) must survive `active`.
  balancers[0]!.pool.drain('127.0.0.4:6443').catch(() => {});
  for (const b of balancers) await b.intent.start();
  await waitFor(() => balancers.every((b) => b.intent.stats().updates >= 1), { what: 'both listed' });

  const declaredAt = Date.now();
  api.put(cms, intentMap({ '127.0.0.2_6443': 'drain', '127.0.0.3': 'maintenance', '127.0.0.9': 'sideways' }));
  await waitFor(() => balancers.every((b) => b.pool.status('127.0.0.2:6443')!.admin === 'draining' && b.pool.status('127.0.0.3:6443')!.admin === 'maintenance'), {
    what: 'the intent on both pools',
  });
  t.diagnostic(`intent reached both balancers in ${Date.now() - declaredAt} ms`);
  for (const b of balancers) assert.equal(b.pool.status('127.0.0.2:6443')!.health, 'up', 'intent is not a verdict');

  // The API goes away: the intent stays, and applies to a backend added meanwhile.
  await api.stop();
  const failures = balancers.map((b) => b.intent.stats().failures);
  await waitFor(() => balancers.every((b, i) => b.intent.stats().failures >= failures[i]! + 2), { what: 'the API unreachable' });
  balancers[1]!.pool.add('127.0.0.3:7443');
  for (const b of balancers) {
    assert.equal(b.pool.status('127.0.0.2:6443')!.admin, 'draining');
    assert.equal(b.pool.status('127.0.0.3:6443')!.admin, 'maintenance');
  }
  assert.equal(balancers[1]!.pool.status('127.0.0.3:7443')!.admin, 'maintenance', 'the cached intent applies to a new backend');

  // Back, and `active`: the intent's changes are undone, the operator's own drain is not.
  await api.resume();
  api.put(cms, intentMap({ '127.0.0.2_6443': 'active', '127.0.0.4_6443': 'active' }));
  await waitFor(() => balancers.every((b) => b.pool.status('127.0.0.2:6443')!.admin === 'active' && b.pool.status('127.0.0.3:6443')!.admin === 'active'), {
    timeout: 30_000,
    what: 'the intent lifted',
  });
  assert.equal(balancers[0]!.pool.status('127.0.0.4:6443')!.admin, 'draining', "an operator's own drain is not the intent's to lift");
});

test('ClusterIntent options are validated', () => {
  const access = { server: 'https://127.0.0.1:1', origin: 'test' };
  assert.throws(() => new ClusterIntent({ access, target: {} as never }), { code: 'INVALID_ARGUMENT' });
  const pool = new UpstreamPool();
  assert.throws(() => new ClusterIntent({ access, target: pool, drainTimeout: -1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => new ClusterIntent({ access, target: pool, namespace: '' }), { code: 'INVALID_ARGUMENT' });
  void pool.destroy();
});
