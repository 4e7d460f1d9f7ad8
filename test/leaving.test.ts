/**
 * Health `leaving` in the pool and the probe, on real loopback sockets with
 * an injected clock: no new placements, members kept for the backend to
 * close, and after `leavingGrace` what is left is closed at `leavingRate`,
 * one at a time. A leaving backend that stops answering goes down and is
 * torn down; one that passes again comes back up.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { CheckError, HealthProbe, UpstreamPool, type CheckFunction, type StateChange } from '../src/index.js';
import { FakeClock } from './helpers/fake-clock.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

/** Lets pending promise callbacks and I/O callbacks run. */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Fires due timers one wake-up at a time until `ms` from now, letting what they start run in between. */
async function runFor(clock: FakeClock, ms: number): Promise<void> {
  const end = clock.now() + ms;
  for (;;) {
    const [soonest] = clock.delays();
    if (soonest === undefined || clock.now() + soonest > end) break;
    clock.advance(soonest);
    await turns();
  }
  clock.advance(end - clock.now());
  await turns();
}

/** A client that answers the pool's FIN with its own, so a graceful close completes. */
async function client(t: TestContext, port: number): Promise<Socket> {
  const socket = await connect(t, port);
  socket.on('end', () => socket.end());
  socket.resume();
  return socket;
}

async function setup(t: TestContext, options: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const backends = [];
  for (const id of ['a', 'b']) backends.push({ host: HOST, port: (await listen(t, (s) => s.pipe(s))).port, id });
  const pool = new UpstreamPool({ backends, clock, leavingGrace: 10_000, leavingRate: 4, ...options });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  const changes: string[] = [];
  pool.on('backendStateChanged', (backend, change: StateChange) => changes.push(`${backend.id} ${change.from} -> ${change.to} (${change.reason}, ${change.tornDown})`));
  const closed: string[] = [];
  pool.on('connectionClosed', (member, info) => closed.push(`${member.backend?.id}:${info.reason}`));
  return { clock, pool, port, changes, closed };
}

test('markLeaving: no new placement, members kept; after the grace one member per 1000/rate ms, oldest first', async (t) => {
  const { clock, pool, port, changes, closed } = await setup(t);
  for (let i = 0; i < 8; i++) await client(t, port);
  await waitFor(() => pool.stats().active === 8);
  assert.equal(pool.status('a')!.members, 4);
  const onA = Array.from(pool.members('a'));

  const leaving: StateChange[] = [];
  pool.on('backendLeaving', (_b, change) => leaving.push(change));
  pool.markLeaving('a', 'probe-leaving', { source: 'probe', code: 'probe-leaving', message: '[-]shutdown failed: reason withheld' });
  assert.deepEqual(changes, ['a up -> leaving (probe-leaving, 0)']);
  assert.equal(leaving.length, 1);
  assert.equal(leaving[0]!.health, 'leaving');
  assert.equal(leaving[0]!.previous.health, 'up');
  const status = pool.status('a')!;
  assert.equal(status.health, 'leaving');
  assert.equal(status.state, 'leaving');
  assert.equal(status.admin, 'active', 'the admin axis is untouched');
  assert.equal(status.eligible, false);
  assert.equal(status.cause.message, '[-]shutdown failed: reason withheld');
  assert.equal(status.members, 4, 'its members stay');

  // New clients all go to b.
  for (let i = 0; i < 4; i++) await client(t, port);
  await waitFor(() => pool.stats().active === 12);
  assert.equal(pool.status('a')!.members, 4);
  assert.equal(pool.status('b')!.members, 8);

  // Within the grace nothing is closed.
  await runFor(clock, 9_999);
  assert.deepEqual(closed, []);
  // The grace runs out: one member now, then one per 250 ms, oldest first.
  await runFor(clock, 1);
  await waitFor(() => closed.length === 1);
  assert.deepEqual(closed, ['a:leaving-grace']);
  assert.equal(onA[0]!.closed, true, 'the oldest went first');
  assert.equal(onA[1]!.closed, false);
  await runFor(clock, 249);
  await turns();
  assert.equal(closed.length, 1, 'not before 1000/rate ms');
  await runFor(clock, 1);
  await waitFor(() => closed.length === 2);
  await runFor(clock, 500);
  await waitFor(() => closed.length === 4);
  assert.deepEqual(closed, Array(4).fill('a:leaving-grace'));
  assert.equal(pool.stats().teardowns['leaving-grace'], 4);
  assert.equal(pool.status('b')!.members, 8, 'the other backend is untouched');
  // Nothing left to close: the evacuation stopped, no timer of it remains.
  await runFor(clock, 5_000);
  assert.equal(closed.length, 4);
});

test('a leaving backend that goes down is torn down at once; one that comes back up keeps its members and stops the evacuation', async (t) => {
  const { clock, pool, port, changes, closed } = await setup(t);
  for (let i = 0; i < 4; i++) await client(t, port);
  await waitFor(() => pool.stats().active === 4);
  pool.markLeaving('a');
  assert.equal(pool.markDown('a', 'probe-failed'), 2);
  assert.deepEqual(changes.slice(-1), ['a leaving -> down (probe-failed, 2)']);
  await waitFor(() => closed.length === 2);
  assert.deepEqual(closed, ['a:probe-failed', 'a:probe-failed']);

  pool.markLeaving('b');
  await runFor(clock, 5_000);
  pool.markUp('b', 'probe-passed');
  assert.deepEqual(changes.slice(-2), ['b up -> leaving (marked-leaving, 0)', 'b leaving -> up (probe-passed, 0)']);
  await runFor(clock, 20_000);
  assert.equal(pool.status('b')!.members, 2, 'back up before the grace: nothing closed');
  assert.equal(closed.length, 2);
});

test('a drain (admin) and leaving (health) are separate axes', async (t) => {
  const { pool, changes } = await setup(t);
  void pool.drain('a', { timeout: 60_000 });
  pool.markLeaving('a');
  const s = pool.status('a')!;
  assert.equal(s.admin, 'draining');
  assert.equal(s.health, 'leaving');
  assert.equal(s.state, 'leaving');
  pool.markReady('a');
  assert.equal(pool.status('a')!.health, 'leaving', 'making it ready does not touch its health');
  assert.deepEqual(changes, ['a up -> draining (drain, 0)', 'a draining -> leaving (marked-leaving, 0)', 'a leaving -> leaving (ready, 0)']);
});

test('leavingGrace and leavingRate are validated', () => {
  assert.throws(() => new UpstreamPool({ leavingGrace: -1 }), { code: 'INVALID_ARGUMENT', message: /leavingGrace/ });
  assert.throws(() => new UpstreamPool({ leavingGrace: 1.5 }), { code: 'INVALID_ARGUMENT', message: /leavingGrace/ });
  assert.throws(() => new UpstreamPool({ leavingRate: 0 }), { code: 'INVALID_ARGUMENT', message: /leavingRate/ });
  assert.throws(() => new UpstreamPool({ leavingRate: 'fast' as never }), { code: 'INVALID_ARGUMENT', message: /leavingRate/ });
});

test('the probe: fall leaving answers mark the pool leaving within the detection time; failures then mark it down', async (t) => {
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'a' }], clock });
  t.after(() => pool.destroy());
  let answer: 'pass' | 'leaving' | 'fail' = 'pass';
  const check: CheckFunction = () =>
    answer === 'pass' ? Promise.resolve() : answer === 'leaving' ? Promise.resolve({ outcome: 'leaving', message: '[-]shutdown failed' }) : Promise.reject(new Error('refused'));
  const probe = new HealthProbe({ check, clock, interval: 1000, fastInterval: 500, fall: 2, rise: 2, jitter: 0 });
  t.after(() => probe.stop());
  const events: string[] = [];
  probe.on('leaving', (backend, result) => events.push(`leaving ${backend.id} ${result.outcome} ${result.message}`));
  probe.on('unhealthy', (backend) => events.push(`unhealthy ${backend.id}`));
  probe.attach(pool);
  await runFor(clock, 1000);
  assert.equal(pool.status('a')!.health, 'up');
  answer = 'leaving';
  // interval, then fastInterval: detected by the second answer, as a failure would be.
  await runFor(clock, 1500);
  assert.equal(pool.status('a')!.health, 'leaving');
  assert.equal(pool.status('a')!.cause.code, 'probe-leaving');
  assert.match(pool.status('a')!.cause.message, /shutdown failed/);
  assert.deepEqual(events, ['leaving a leaving [-]shutdown failed']);
  assert.equal(probe.health('a')!.lastResult!.outcome, 'leaving');
  answer = 'fail';
  await runFor(clock, 1500);
  assert.equal(pool.status('a')!.health, 'down');
  assert.deepEqual(events, ['leaving a leaving [-]shutdown failed', 'unhealthy a']);
});

test('the probe: a run of a leaving answer then a failure (fall 2) marks the pool leaving, not down', async (t) => {
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'a' }], clock });
  t.after(() => pool.destroy());
  const answers: ('pass' | 'leaving' | 'fail')[] = ['pass', 'leaving', 'fail'];
  const check: CheckFunction = () => {
    const answer = answers.shift() ?? 'leaving';
    return answer === 'pass' ? Promise.resolve() : answer === 'leaving' ? Promise.resolve({ outcome: 'leaving', message: 'bye' }) : Promise.reject(new Error('timed out'));
  };
  const probe = new HealthProbe({ check, clock, interval: 1000, fall: 2, rise: 2, jitter: 0 });
  t.after(() => probe.stop());
  probe.attach(pool);
  await runFor(clock, 3000);
  assert.equal(probe.health('a')!.verdict, 'leaving');
  assert.equal(pool.status('a')!.health, 'leaving');
  assert.equal(pool.status('a')!.reason, 'probe-leaving');
});

test('the probe: a target without markLeaving gets markDown (it knows only up and down)', async (t) => {
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'a' }], clock });
  t.after(() => pool.destroy());
  const calls: string[] = [];
  const target = {
    backends: () => pool.backends(),
    status: (id: string) => pool.status(id),
    markDown: (id: string, reason: string) => {
      calls.push(`down ${id} ${reason}`);
      return pool.markDown(id, reason);
    },
    markUp: (id: string, reason: string) => pool.markUp(id, reason),
    on: (event: never, fn: never) => pool.on(event, fn),
    off: (event: never, fn: never) => pool.off(event, fn),
  };
  const probe = new HealthProbe({ check: () => Promise.resolve({ outcome: 'leaving' as const, message: 'bye' }), clock, interval: 1000, fall: 1, jitter: 0 });
  t.after(() => probe.stop());
  probe.attach(target);
  await runFor(clock, 1000);
  assert.deepEqual(calls, ['down a probe-failed']);
  assert.equal(pool.status('a')!.health, 'down');
});

test('the probe: a leaving backend whose listener closes (checks refused) stays leaving; one that falls silent (timeouts) goes down', async (t) => {
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'a' }], clock });
  t.after(() => pool.destroy());
  let answer: 'pass' | 'leaving' | 'refused' | 'timeout' = 'pass';
  const refusal = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  const check: CheckFunction = () => {
    switch (answer) {
      case 'pass':
        return Promise.resolve();
      case 'leaving':
        return Promise.resolve({ outcome: 'leaving', message: '[-]shutdown failed' });
      case 'refused':
        return Promise.reject(new CheckError('connect', 'connection refused', { cause: refusal }));
      case 'timeout':
        return Promise.reject(new CheckError('timeout', 'no answer within 500 ms'));
    }
  };
  const probe = new HealthProbe({ check, clock, interval: 1000, fastInterval: 500, fall: 2, rise: 2, jitter: 0 });
  t.after(() => probe.stop());
  probe.attach(pool);
  await runFor(clock, 1000);
  answer = 'leaving';
  await runFor(clock, 1500);
  assert.equal(pool.status('a')!.health, 'leaving');
  // The listener closed, as kube-apiserver's does after its shutdown delay: a refusal is an answer.
  answer = 'refused';
  await runFor(clock, 5000);
  assert.equal(pool.status('a')!.health, 'leaving');
  assert.equal(probe.health('a')!.verdict, 'leaving');
  assert.equal(probe.health('a')!.lastResult!.outcome, 'leaving');
  assert.match(probe.health('a')!.lastResult!.message ?? '', /stopped listening while leaving/);
  // Silence is not an answer: the host is gone.
  answer = 'timeout';
  await runFor(clock, 1500);
  assert.equal(pool.status('a')!.health, 'down');
});

test('the probe: a refused check of a backend that is up is a failure as before (only leaving turns a refusal into an answer)', async (t) => {
  const clock = new FakeClock();
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'a' }], clock });
  t.after(() => pool.destroy());
  let refuse = false;
  const refusal = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  const check: CheckFunction = () => (refuse ? Promise.reject(new CheckError('connect', 'connection refused', { cause: refusal })) : Promise.resolve());
  const probe = new HealthProbe({ check, clock, interval: 1000, fastInterval: 500, fall: 2, rise: 2, jitter: 0 });
  t.after(() => probe.stop());
  probe.attach(pool);
  await runFor(clock, 1000);
  assert.equal(pool.status('a')!.health, 'up');
  refuse = true;
  await runFor(clock, 1500);
  assert.equal(pool.status('a')!.health, 'down');
});
