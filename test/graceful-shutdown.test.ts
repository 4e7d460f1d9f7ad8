/**
 * A kube-apiserver shutting down gracefully is `leaving`, not `down`: with
 * 60 watch streams through the pool, the balancer closes none of the
 * leaving backend's streams (the backend ends them itself, at its own
 * rate), places nothing new on it, and the clients end up on the others.
 * A `/readyz` failing for another reason (`[-]etcd failed`) is `down`, and
 * its streams are torn down at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyReadyz } from '../src/cli/readyz.js';
import { HealthProbe, UpstreamPool } from '../src/index.js';
import { gracefulShutdown, type ScenarioLibrary } from './helpers/graceful-shutdown.js';

const lib = { UpstreamPool, HealthProbe } as unknown as ScenarioLibrary;

/** Teardown reasons that are the balancer's doing (not a side closing its connection). */
const balancerReasons = ['probe-failed', 'marked-down', 'leaving-grace', 'drained', 'rebalanced', 'write-stalled', 'maintenance', 'backend-removed'];

function byBalancer(teardowns: Readonly<Record<string, number>>): number {
  return balancerReasons.reduce((sum, reason) => sum + (teardowns[reason] ?? 0), 0);
}

test('a graceful apiserver shutdown: 0 streams closed by the balancer, none placed on it, every client moves', async (t) => {
  const figures = await gracefulShutdown(t, lib, {
    clients: 60,
    delayMs: 1500,
    graceMs: 2500,
    // Far beyond the backend's own ending: every stream must be the backend's to end.
    pool: { leavingGrace: 60_000 },
    classify: classifyReadyz,
    log: (line) => t.diagnostic(line),
  });
  t.diagnostic(JSON.stringify(figures));
  assert.ok(figures.onVictim >= 10, `the victim served ${figures.onVictim} streams`);
  // Once it stopped listening its checks are refused: an answer, so it stays leaving (never down).
  assert.equal(figures.refusal, 'leaving', 'a check met the closed listener and read it as an answer');
  assert.deepEqual(figures.transitions, ['up -> leaving (probe-leaving, 0 torn down)']);
  assert.equal(figures.closedByBalancer, 0, 'no stream of the leaving backend was cut by the balancer');
  assert.equal(figures.endedByBackend, figures.onVictim, 'the backend ended every one of its streams itself');
  assert.equal(byBalancer(figures.teardowns), 0, `teardowns of the victim: ${JSON.stringify(figures.teardowns)}`);
  assert.equal(figures.placedAfterVerdict, 0, 'nothing was placed on the leaving backend');
  assert.equal(figures.byBackend['b1'], undefined);
  assert.equal(figures.connected, 60);
  assert.deepEqual(figures.othersChanged, [], 'no false verdict on the other backends');
});

test('readyz failing with [-]etcd failed: down, and every stream torn down by the balancer', async (t) => {
  const figures = await gracefulShutdown(t, lib, {
    clients: 30,
    delayMs: 0,
    graceMs: 0,
    failing: 'etcd',
    pool: { leavingGrace: 60_000 },
    classify: classifyReadyz,
    log: (line) => t.diagnostic(line),
  });
  t.diagnostic(JSON.stringify(figures));
  assert.ok(figures.onVictim >= 5, `the victim served ${figures.onVictim} streams`);
  assert.match(figures.transitions[0] ?? '', /^up -> down \(probe-failed, \d+ torn down\)$/);
  assert.equal(figures.teardowns['probe-failed'], figures.onVictim, `teardowns of the victim: ${JSON.stringify(figures.teardowns)}`);
  assert.equal(figures.endedByBackend, 0);
  assert.equal(figures.closedByBalancer, figures.onVictim);
  assert.equal(figures.placedAfterVerdict, 0);
  assert.equal(figures.connected, 30);
  assert.deepEqual(figures.othersChanged, []);
});

test("kube-apiserver's own order (the listener closes after the delay, watches still ending): stays leaving, 0 streams closed by the balancer", async (t) => {
  const figures = await gracefulShutdown(t, lib, {
    clients: 60,
    delayMs: 1500,
    graceMs: 2500,
    listenerClosesFirst: true,
    pool: { leavingGrace: 60_000 },
    classify: classifyReadyz,
    log: (line) => t.diagnostic(line),
  });
  t.diagnostic(JSON.stringify(figures));
  assert.ok(figures.onVictim >= 10, `the victim served ${figures.onVictim} streams`);
  // Refused checks after the listener closed are an answer: no `-> down`, nothing torn down.
  assert.equal(figures.refusal, 'leaving', 'a check met the closed listener and read it as an answer');
  assert.deepEqual(figures.transitions, ['up -> leaving (probe-leaving, 0 torn down)']);
  assert.equal(figures.closedByBalancer, 0, 'no stream of the leaving backend was cut by the balancer');
  assert.equal(figures.endedByBackend, figures.onVictim, 'the backend ended every one of its streams itself');
  assert.equal(byBalancer(figures.teardowns), 0, `teardowns of the victim: ${JSON.stringify(figures.teardowns)}`);
  assert.equal(figures.placedAfterVerdict, 0);
  assert.equal(figures.connected, 60);
  assert.deepEqual(figures.othersChanged, []);
});
