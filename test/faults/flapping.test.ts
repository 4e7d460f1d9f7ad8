/**
 * Fault: a flapping backend, its health checks passing and failing in a
 * seeded random pattern (and in the adversarial alternating one). Driven by
 * the probe's own schedule on a fake clock, the pool's transitions must be
 * exactly those a rise/fall counter allows: a reference model, written here
 * independently, predicts every one of them. Each down transition tears down
 * the backend's connections; its steady neighbour is never touched.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { HealthProbe, UpstreamPool, type Backend, type CheckResult } from '../../src/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { ConnectionLedger, Prng, seedFromEnv } from '../helpers/faults.js';
import { connect, frontend, HOST, listen, waitFor } from '../helpers/net.js';

/** The reference: HAProxy's rise/fall, from `up`. Returns the transitions a result sequence must produce. */
function expectedTransitions(results: readonly boolean[], rise: number, fall: number): { at: number; to: 'up' | 'down' }[] {
  let up = true;
  let run = 0;
  const out: { at: number; to: 'up' | 'down' }[] = [];
  results.forEach((ok, i) => {
    if (ok === up) {
      run = 0;
      return;
    }
    run++;
    if (run === (up ? fall : rise)) {
      up = !up;
      run = 0;
      out.push({ at: i, to: up ? 'up' : 'down' });
    }
  });
  return out;
}

interface Flap {
  readonly results: boolean[];
  readonly transitions: { at: number; to: string; tornDown: number }[];
  readonly clients: Socket[];
}

async function runFlapping(t: TestContext, outcomes: readonly boolean[], rise: number, fall: number): Promise<Flap> {
  const flap = await listen(t, (s) => s.pipe(s));
  const steady = await listen(t, (s) => s.pipe(s));
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: flap.port, id: 'flap' },
      { host: HOST, port: steady.port, id: 'steady' },
    ],
  });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const clock = new FakeClock();
  let next = 0;
  const probe = new HealthProbe({
    clock,
    jitter: 0,
    interval: 1000,
    fastInterval: 200,
    downInterval: 3000,
    rise,
    fall,
    check: (backend: Backend) => {
      if (backend.id === 'steady') return Promise.resolve();
      const ok = outcomes[next++];
      return ok === true ? Promise.resolve() : Promise.reject(new Error('flap'));
    },
  });
  probe.attach(pool);
  t.after(() => probe.stop());

  const port = await frontend(t, pool);
  const clients: Socket[] = [];
  const openClients = async (n: number): Promise<void> => {
    const target = pool.stats().active + n;
    for (let i = 0; i < n; i++) clients.push(await connect(t, port));
    await waitFor(() => pool.stats().active === target, { what: `${target} pinned` });
  };
  await openClients(6);

  const results: boolean[] = [];
  const transitions: Flap['transitions'] = [];
  pool.on('backendDown', (b, c) => {
    if (b.id !== 'flap') return;
    // Synchronous teardown: nothing of the flapping backend is left when the event fires.
    assert.equal([...pool.connections('flap')].length, 0);
    transitions.push({ at: results.length, to: 'down', tornDown: c.tornDown });
  });
  pool.on('backendUp', (b) => {
    if (b.id === 'flap') transitions.push({ at: results.length, to: 'up', tornDown: 0 });
  });
  probe.on('checked', (r: CheckResult) => {
    if (r.backend.id === 'flap') results.push(r.ok);
  });

  // Every flapping result comes from the probe's own timer; bounded by the outcome count.
  for (let guard = 0; results.length < outcomes.length && guard < outcomes.length * 8; guard++) {
    clock.next();
    // Checks settle in a few turns: let every one that started finish before
    // fake time moves again, or its timeout would fire in fake time.
    await waitFor(() => probe.health('flap')?.checking === false && probe.health('steady')?.checking === false, { interval: 0 });
    // Now and then, new clients while the flapping backend is up: they must be allowed to land on it.
    if (pool.status('flap')?.state === 'up' && results.length % 97 === 0 && clients.length < 60) await openClients(2);
  }
  assert.equal(results.length, outcomes.length);
  const steadyConns = [...ledger.entries.values()].filter((e) => e.backend === 'steady');
  assert.ok(steadyConns.every((e) => !e.conn.closed), `the steady backend’s connections are never touched: ${JSON.stringify(steadyConns.filter((e) => e.conn.closed).map((e) => e.info))}`);
  assert.ok(ledger.closed().every((e) => e.backend === 'flap' && e.info?.reason === 'probe-failed'));
  assert.deepEqual(ledger.problems(), []);
  return { results, transitions, clients };
}

test('a seeded random flapping pattern: every pool transition is one the rise/fall model predicts, and no other', async (t) => {
  const seed = seedFromEnv(0x5eed_f1a9);
  t.diagnostic(`SEED=${seed}`);
  const random = new Prng(seed);
  const rise = 2;
  const fall = 3;
  // Mostly flapping with runs long enough to cross the thresholds now and then.
  const outcomes: boolean[] = [];
  let p = 0.5;
  for (let i = 0; i < 600; i++) {
    if (i % 50 === 0) p = random.pick([0.2, 0.5, 0.8]);
    outcomes.push(random.chance(p));
  }
  const { results, transitions } = await runFlapping(t, outcomes, rise, fall);
  assert.deepEqual(results, outcomes, `SEED=${seed}: the probe saw the outcomes in order`);
  const expected = expectedTransitions(outcomes, rise, fall);
  assert.deepEqual(
    // The pool acts before \`checked\` is emitted, so a transition's \`at\` is the index of the result that caused it.
    transitions.map((tr) => `${tr.at}:${tr.to}`),
    expected.map((e) => `${e.at}:${e.to}`),
    `SEED=${seed}: pool transitions match the rise/fall model`,
  );
  // Consecutive transitions are at least min(rise, fall) results apart.
  for (let i = 1; i < expected.length; i++) assert.ok(expected[i]!.at - expected[i - 1]!.at >= Math.min(rise, fall));
  t.diagnostic(`${outcomes.length} results, ${expected.length} transitions, ${transitions.reduce((n, tr) => n + tr.tornDown, 0)} connections torn down`);
  assert.ok(expected.length >= 4, 'the pattern did flap across the thresholds');
});

test('strict alternation never changes the verdict with rise and fall >= 2', async (t) => {
  const outcomes = Array.from({ length: 200 }, (_, i) => i % 2 === 0);
  const { transitions, results } = await runFlapping(t, outcomes, 2, 2);
  assert.equal(results.length, 200);
  assert.deepEqual(transitions, []);
});
