/**
 * Backend hosts are checked when added: an IP address or a DNS name, else
 * INVALID_ARGUMENT and nothing changes (not a failure only when dialled).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FailoverProxyError, HealthProbe, UpstreamPool } from '../src/index.js';

const bad = ['a=127.0.0.1', 'x y', '999.1.1.1', '1.2.3', '256.0.0.1', '[::1]', 'host/path', '-leading.example', 'trailing-.example', 'a..b', 'é.example', 'a'.repeat(64), `${'a.'.repeat(127)}a`, '10.0.0.1 ', '\n'];
const good = ['127.0.0.1', '::1', 'fd00::3', 'fe80::1%eth0', 'localhost', 'api-3.example.com', 'apiserver.example.', 'kube_apiserver.svc', '10.0.0.1', 'a1.b2'];

test('pool.add, the pool option and reconcile refuse a host that is neither an IP address nor a DNS name', () => {
  const pool = new UpstreamPool({ backends: [{ host: '127.0.0.1', port: 1, id: 'keep' }] });
  for (const host of bad) {
    assert.throws(
      () => pool.add({ host, port: 6443, id: 'x' }),
      (err: unknown) => err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT' && err.message.includes('backend.host'),
      JSON.stringify(host),
    );
    assert.throws(() => new UpstreamPool({ backends: [{ host, port: 6443 }] }), (err: unknown) => err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT', JSON.stringify(host));
    assert.throws(() => pool.reconcile([{ host, port: 6443, id: 'x' }]), (err: unknown) => err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT', JSON.stringify(host));
  }
  assert.deepEqual(pool.backends().map((b) => b.id), ['keep'], 'a refused host changes nothing');
  for (const [i, host] of good.entries()) assert.equal(pool.add({ host, port: 6443, id: `g${i}` }).host, host);
  void pool.destroy();
});

test('probe.add refuses the same hosts', async () => {
  const probe = new HealthProbe({ autoStart: false });
  for (const host of bad) {
    assert.throws(() => probe.add({ host, port: 1 }), (err: unknown) => err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT', JSON.stringify(host));
  }
  await probe.stop();
});
