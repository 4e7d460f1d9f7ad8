// Slow start on real loopback sockets: a backend that comes back under a
// reconnect storm gets a small share of it first, and its full share once it
// has warmed up. The pool's clock is injected (real timers, a `now` the test
// moves), so the ramp is measured at known points, not raced against.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Clock } from '../src/clock.js';
import { UpstreamPool } from '../src/index.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

const SLOW_START = 10_000;
const STORM = 1000;
const LATER = 500;
const IN_FLIGHT = 50;

/** Real timers (connect timeouts, the queue), and a `now` that moves only when the test says. */
function steppedClock(): Clock & { advance(ms: number): void } {
  let now = 1_700_000_000_000;
  return {
    now: () => now,
    setTimeout(callback, ms) {
      const timer = setTimeout(callback, ms);
      timer.unref();
      return timer;
    },
    clearTimeout(handle) {
      clearTimeout(handle as NodeJS.Timeout);
    },
    advance(ms: number) {
      now += ms;
    },
  };
}

test('a backend made ready under a reconnect storm gets well under its share at first, its full share once warm', { timeout: 120_000 }, async (t) => {
  const clock = steppedClock();
  const backends = [];
  for (const id of ['b1', 'b2', 'b3']) backends.push({ host: HOST, port: (await listen(t)).port, id });
  const pool = new UpstreamPool({ backends, slowStart: SLOW_START, clock });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);

  // b3 starts with the pool: no warm-up for a backend that was there from the start.
  assert.equal(pool.status('b3')!.warming, false);
  assert.equal(pool.status('b3')!.effectiveWeight, 1);
  pool.markDown('b3');
  clock.advance(1000);
  pool.markUp('b3');
  const ramp: string[] = [];
  const sample = (): number => {
    const s = pool.status('b3')!;
    ramp.push(`${s.effectiveWeight.toFixed(2)}${s.warming ? ' warming' : ''}`);
    return s.effectiveWeight;
  };
  assert.ok(Math.abs(sample() - 0.1) < 1e-9, 'the ramp starts at 10% of the weight');
  assert.equal(pool.status('b3')!.warming, true);

  // The storm: every client reconnects at once (50 connects in flight at a time).
  for (let i = 0; i < STORM; i += IN_FLIGHT) {
    await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, STORM - i) }, () => connect(t, port)));
  }
  await waitFor(() => pool.stats().active === STORM, { what: `${STORM} pinned connections` });
  const early = pool.status('b3')!.members;
  const equalShare = STORM / 3;
  t.diagnostic(`during the first phase b3 took ${early} of ${STORM} (equal share ${equalShare.toFixed(0)})`);
  assert.ok(early > 0, 'b3 takes some of the storm: it is eligible');
  assert.ok(early < equalShare / 2, `b3 took ${early}, below half its equal share (${(equalShare / 2).toFixed(0)})`);
  // Least connections per unit of effective weight: about 0.1 / 2.1 of the storm.
  assert.ok(early <= Math.ceil((STORM * 0.1) / 2.1) + 3, `b3 took ${early}, about its 10% weight's worth`);

  // Half way: 55%; at the end: all of it, and the ramp is over.
  clock.advance(SLOW_START / 2);
  assert.ok(Math.abs(sample() - 0.55) < 1e-9, `half way through the ramp: ${ramp.at(-1)}`);
  clock.advance(SLOW_START / 2);
  assert.equal(sample(), 1);
  assert.equal(pool.status('b3')!.warming, false);
  t.diagnostic(`b3 effective weight over the ramp: ${ramp.join(' -> ')}`);

  // Warm: the next clients fill b3 up to its full share of everything.
  for (let i = 0; i < LATER; i += IN_FLIGHT) {
    await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, LATER - i) }, () => connect(t, port)));
  }
  await waitFor(() => pool.stats().active === STORM + LATER, { what: `${STORM + LATER} pinned connections` });
  const members = ['b1', 'b2', 'b3'].map((id) => pool.status(id)!.members);
  const share = (STORM + LATER) / 3;
  t.diagnostic(`once warm: ${members.join('/')} (share ${share})`);
  for (const n of members) assert.ok(Math.abs(n - share) <= 2, `every backend at its share: ${members.join('/')}`);
});

test('slowStart 0 (the default): a returning backend takes its full weight at once', async (t) => {
  const a = await listen(t);
  const b = await listen(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  pool.markDown('b');
  pool.markUp('b');
  assert.equal(pool.status('b')!.warming, false);
  assert.equal(pool.status('b')!.effectiveWeight, 1);
  assert.throws(() => new UpstreamPool({ slowStart: -1 }), { code: 'INVALID_ARGUMENT' });
});
