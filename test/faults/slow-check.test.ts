/**
 * Fault: a slow upstream, whose health endpoint answers just under or just
 * over the check timeout. Time is a fake clock, so "just" is one millisecond:
 * an answer at `timeout - 1` passes; at `timeout` the check has already
 * failed with PROBE_TIMEOUT, its socket is closed, and the late answer counts
 * for nothing. Through a pool, `fall` timeouts in a row (and only that) take
 * the backend down and tear its connections down.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { HealthProbe, UpstreamPool, type CheckResult } from '../../src/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ConnectionLedger } from '../helpers/faults.js';
import { connect, frontend, HOST, waitFor } from '../helpers/net.js';

const TIMEOUT = 1000;

/** An HTTP server that holds every request until the test answers it. */
async function gatedServer(t: TestContext): Promise<{ port: number; next: () => Promise<ServerResponse>; closedEarly: () => number }> {
  const held: ServerResponse[] = [];
  let waiter: ((res: ServerResponse) => void) | undefined;
  let closedEarly = 0;
  const server = createServer((req, res) => {
    req.resume();
    res.on('close', () => {
      if (!res.writableFinished) closedEarly++;
    });
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(res);
    } else held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return {
    port: (server.address() as AddressInfo).port,
    next: () => {
      const res = held.shift();
      return res ? Promise.resolve(res) : new Promise((resolve) => (waiter = resolve));
    },
    closedEarly: () => closedEarly,
  };
}

async function turns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

test('an answer at timeout - 1 ms passes; at timeout the check fails with PROBE_TIMEOUT and the late answer is dropped', async (t) => {
  const gate = await gatedServer(t);
  const clock = new FakeClock();
  const probe = new HealthProbe({ clock, check: { type: 'http' }, interval: 2000, timeout: TIMEOUT, autoStart: false, rise: 1, fall: 1 });
  t.after(() => probe.stop());
  probe.add({ host: HOST, port: gate.port, id: 'slow' });
  const results: CheckResult[] = [];
  probe.on('checked', (r) => results.push(r));

  // Just under.
  let running = probe.checkNow('slow');
  let res = await gate.next();
  clock.advance(TIMEOUT - 1);
  res.end('ok');
  let result = await running;
  assert.equal(result.ok, true);
  assert.equal(result.durationMs, TIMEOUT - 1);

  // Just over: the timeout fires first; the answer arrives after it.
  running = probe.checkNow('slow');
  res = await gate.next();
  clock.advance(TIMEOUT);
  result = await running;
  assert.equal(result.ok, false);
  assert.equal(result.error?.code, 'PROBE_TIMEOUT');
  assert.equal(result.error.layer, 'timeout');
  assert.equal(result.durationMs, TIMEOUT);
  await waitFor(() => gate.closedEarly() === 1, { what: 'the timed-out check to close its socket' });
  res.on('error', () => undefined);
  res.end('ok, but too late');
  await turns();
  assert.equal(results.length, 2, 'the late answer produced no result');
  assert.deepEqual(
    results.map((r) => r.error?.code ?? 'ok'),
    ['ok', 'PROBE_TIMEOUT'],
  );
  assert.equal(probe.health('slow')?.verdict, 'down');
});

test('through a pool: alternating under/over never crosses fall 2; two overs in a row take it down and tear its connections down', async (t) => {
  const gate = await gatedServer(t);
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: gate.port, id: 'slow' }] });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const probe = new HealthProbe({ clock, check: { type: 'http' }, interval: 2000, timeout: TIMEOUT, autoStart: false, rise: 2, fall: 2 });
  probe.attach(pool);
  t.after(() => probe.stop());
  const transitions: string[] = [];
  pool.on('backendStateChanged', (_b, c) => transitions.push(`${c.from}->${c.to}:${c.reason}`));

  // Some clients pinned to the slow backend (raw TCP through the pool).
  const port = await frontend(t, pool);
  for (let i = 0; i < 5; i++) await connect(t, port);
  await waitFor(() => pool.stats().active === 5);

  async function check(answerAt: number): Promise<CheckResult> {
    const running = probe.checkNow('slow');
    const res = await gate.next();
    res.on('error', () => undefined);
    clock.advance(answerAt);
    res.end('ok');
    return running;
  }

  const pattern = [TIMEOUT - 1, TIMEOUT, TIMEOUT - 1, TIMEOUT, TIMEOUT - 1, TIMEOUT];
  for (const at of pattern) {
    const r = await check(at);
    assert.equal(r.ok, at < TIMEOUT, `answer at ${at} ms`);
  }
  assert.deepEqual(transitions, [], 'alternating results never reach fall 2');
  assert.equal(pool.stats().active, 5);

  // Two timeouts in a row.
  await check(TIMEOUT);
  const r = await check(TIMEOUT + 1);
  assert.equal(r.error?.code, 'PROBE_TIMEOUT');
  assert.deepEqual(transitions, ['up->down:probe-failed']);
  assert.equal(pool.stats().active, 0);
  assert.ok(ledger.closed().every((e) => e.info?.reason === 'probe-failed'));
  assert.equal(ledger.closed().length, 5);

  // Fast enough again, twice: back up.
  await check(TIMEOUT - 1);
  assert.equal(pool.status('slow')?.state, 'down', 'one pass of rise 2');
  await check(1);
  assert.deepEqual(transitions, ['up->down:probe-failed', 'down->up:probe-passed']);
  assert.deepEqual(ledger.problems(), []);
});
