/**
 * Fault: this process runs out of something (descriptors, buffers, local
 * ports) while checking or dialling a backend. The failure is ours, not the
 * backend's: the check and the dial report it at layer `local`, the probe
 * emits `checkSkipped` and counts it, and no verdict follows — with `fall 1`,
 * where a single counted failure would take the backend down. A refused dial
 * beside it still counts, so the rule cannot pass by counting nothing.
 *
 * The errors are injected through the probe's check function and the pool's
 * dial function (no monkeypatching); the built balancer under a real low
 * descriptor limit is in fd-exhaustion.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthProbe, UpstreamPool, type Backend, type CheckResult, type DialFunction } from '../../src/index.js';
import { HOST } from '../helpers/net.js';

/** A socket error as libuv reports it. */
function sysError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`connect ${code} ${HOST}:1`), { code, syscall: 'connect' });
}

const LOCAL = ['EMFILE', 'ENFILE', 'ENOBUFS', 'EADDRNOTAVAIL', 'ENOMEM'];

for (const code of LOCAL) {
  test(`an active check failing with ${code} is reported at layer local, with no verdict`, async (t) => {
    let fail = false;
    const check = (): Promise<void> => (fail ? Promise.reject(sysError(code)) : Promise.resolve());
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'b1' }], initialState: 'probe' });
    const probe = new HealthProbe({ check, fall: 1, rise: 1, autoStart: false });
    t.after(async () => {
      await probe.stop();
      await pool.destroy();
    });
    probe.attach(pool);
    assert.equal((await probe.checkNow('b1')).ok, true);
    assert.equal(pool.status('b1')!.health, 'up');

    const checked: CheckResult[] = [];
    const skipped: [Backend, CheckResult][] = [];
    let downs = 0;
    probe.on('checked', (r) => checked.push(r));
    probe.on('checkSkipped', (b, r) => skipped.push([b, r]));
    pool.on('backendDown', () => downs++);
    fail = true;
    const result = await probe.checkNow('b1');
    assert.equal(result.ok, false);
    assert.equal(result.error?.layer, 'local');
    assert.equal(result.error?.code, 'PROBE_LOCAL_ERROR');
    assert.equal(skipped.length, 1, 'checkSkipped emitted');
    assert.equal(skipped[0]![0].id, 'b1');
    assert.equal(checked.length, 0, 'not a check result: no `checked`');
    assert.equal(downs, 0);
    assert.equal(pool.status('b1')!.health, 'up', 'fall 1, yet no verdict');
    const h = probe.health('b1')!;
    assert.equal(h.consecutiveFailures, 0);
    assert.equal(h.localErrors, 1);
    assert.equal(h.lastResult?.ok, true, 'the last verdict-bearing result is kept');
  });
}

test('a check failing at the backend (ECONNREFUSED) still counts: fall 1 marks it down', async (t) => {
  const check = (): Promise<void> => Promise.reject(sysError('ECONNREFUSED'));
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'b1' }] });
  const probe = new HealthProbe({ check, fall: 1, rise: 1, autoStart: false });
  t.after(async () => {
    await probe.stop();
    await pool.destroy();
  });
  probe.attach(pool);
  const result = await probe.checkNow('b1');
  assert.equal(result.error?.layer, 'custom');
  assert.equal(pool.status('b1')!.health, 'down');
});

for (const [code, local] of [
  ['EMFILE', true],
  ['EADDRNOTAVAIL', true],
  ['ECONNREFUSED', false],
] as const) {
  test(`a dial failing with ${code} ${local ? 'counts against no backend (layer local)' : 'counts against its backend'}`, async (t) => {
    const dial: DialFunction = () => Promise.reject(sysError(code));
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'b1' }], dial, retries: 0, queue: { timeout: 50 } });
    const probe = new HealthProbe({ check: () => Promise.resolve(), fall: 1, rise: 1, autoStart: false });
    t.after(async () => {
      await probe.stop();
      await pool.destroy();
    });
    probe.attach(pool);
    const skipped: CheckResult[] = [];
    probe.on('checkSkipped', (_b, r) => skipped.push(r));
    let downs = 0;
    pool.on('backendDown', () => downs++);

    await assert.rejects(pool.connect(), { code: 'CONNECT_FAILED' });
    const stats = pool.stats();
    const b1 = stats.backends.find((b) => b.id === 'b1')!;
    if (local) {
      assert.equal(downs, 0);
      assert.equal(pool.status('b1')!.health, 'up', 'fall 1, yet no verdict');
      assert.equal(skipped.length, 1);
      assert.equal(skipped[0]!.passive, true);
      assert.equal(skipped[0]!.error?.layer, 'local');
      assert.equal(b1.connectFailures, 0, 'not counted against the backend');
      assert.equal(stats.localDialErrors, 1, 'counted as the pool’s own');
      assert.equal(probe.health('b1')!.localErrors, 1);
    } else {
      assert.equal(downs, 1, 'a refused dial is the backend’s: fall 1 marks it down');
      assert.equal(skipped.length, 0);
      assert.equal(b1.connectFailures, 1);
      assert.equal(stats.localDialErrors, 0);
    }
  });
}

test('the built-in checks blame a local socket error on this process, at any phase; a peer error on the backend', async () => {
  const { socketError } = await import('../../src/checks/socket-supervision.js');
  for (const phase of ['connect', 'tls', 'open'] as const) {
    assert.equal(socketError('b1', phase, sysError('EMFILE')).layer, 'local');
    assert.equal(socketError('b1', phase, sysError('ENOBUFS')).code, 'PROBE_LOCAL_ERROR');
  }
  assert.equal(socketError('b1', 'connect', sysError('ECONNREFUSED')).layer, 'connect');
  assert.equal(socketError('b1', 'connect', sysError('ETIMEDOUT')).layer, 'connect');
  assert.equal(socketError('b1', 'open', sysError('ECONNRESET')).layer, 'protocol');
});
