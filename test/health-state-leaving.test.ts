/**
 * The third outcome of a check, `leaving` (answered: not ready, still
 * serving), in the rise/fall state machine. Pure: no socket, no timer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthState, type CheckOutcome, type HealthVerdict } from '../src/health-state.js';

const P: CheckOutcome = 'pass';
const L: CheckOutcome = 'leaving';
const F: CheckOutcome = 'fail';

function run(state: HealthState, results: readonly CheckOutcome[]): (HealthVerdict | '-')[] {
  return results.map((r) => state.record(r) ?? '-');
}

test('up: `fall` leaving answers make it leaving, in the same number of checks as down', () => {
  const state = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  assert.deepEqual(run(state, [L, L]), ['-', '-']);
  assert.equal(state.changing, true, 'a run against up is under way: checks come at fastInterval');
  assert.equal(state.healthy, true);
  assert.deepEqual(run(state, [L]), ['leaving']);
  assert.equal(state.verdict, 'leaving');
  assert.equal(state.healthy, false);
  assert.equal(state.changing, false);
  assert.equal(state.consecutiveFailures, 0, 'a leaving answer is not a failure');
  // Further leaving answers report nothing.
  assert.deepEqual(run(state, [L, L]), ['-', '-']);
});

test('up: a mixed run of failures and leaving answers is leaving (it answered), all failures is down', () => {
  const mixed = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  assert.deepEqual(run(mixed, [F, F, L]), ['-', '-', 'leaving']);
  const mixed2 = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  assert.deepEqual(run(mixed2, [L, F, F]), ['-', '-', 'leaving']);
  // Then one more failure completes a run of `fall` failures: down.
  assert.deepEqual(run(mixed2, [F]), ['down']);
  const failures = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  assert.deepEqual(run(failures, [F, F, F]), ['-', '-', 'down']);
});

test('up: a pass ends a run of leaving answers', () => {
  const state = new HealthState({ rise: 2, fall: 2, initial: 'up' });
  assert.deepEqual(run(state, [L, P, L, P, L]), ['-', '-', '-', '-', '-']);
  assert.equal(state.verdict, 'up');
});

test('leaving: `fall` failures in a row make it down (it stopped answering)', () => {
  const state = new HealthState({ rise: 2, fall: 2, initial: 'leaving' });
  assert.deepEqual(run(state, [F]), ['-']);
  assert.equal(state.changing, true);
  // A leaving answer ends the run of failures.
  assert.deepEqual(run(state, [L, F]), ['-', '-']);
  assert.deepEqual(run(state, [F]), ['down']);
  assert.equal(state.verdict, 'down');
});

test('leaving: `rise` passes bring it back up', () => {
  const state = new HealthState({ rise: 3, fall: 2, initial: 'leaving' });
  assert.deepEqual(run(state, [P, P, L, P, P]), ['-', '-', '-', '-', '-']);
  assert.deepEqual(run(state, [P]), ['up']);
  assert.equal(state.healthy, true);
});

test('down: leaving answers keep it down; only `rise` passes bring it up', () => {
  const state = new HealthState({ rise: 2, fall: 2, initial: 'down' });
  assert.deepEqual(run(state, [L, L, L, L]), ['-', '-', '-', '-']);
  assert.equal(state.verdict, 'down');
  assert.equal(state.changing, false);
  assert.deepEqual(run(state, [P, L, P, P]), ['-', '-', '-', 'up']);
});

test('unknown: a first leaving answer decides at once', () => {
  const state = new HealthState({ rise: 5, fall: 5 });
  assert.equal(state.record('leaving'), 'leaving');
  assert.equal(state.healthy, false);
});

test('booleans still mean pass and fail', () => {
  const state = new HealthState({ rise: 1, fall: 1, initial: 'up' });
  assert.equal(state.record(false), 'down');
  assert.equal(state.record(true), 'up');
});

test('a long random sequence matches a reference model', () => {
  let seed = 7;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let round = 0; round < 50; round++) {
    const rise = 1 + Math.floor(random() * 3);
    const fall = 1 + Math.floor(random() * 3);
    const state = new HealthState({ rise, fall, initial: 'up' });
    // The model: the last `fall` results (not passing, all failures) decide a fall; the last `rise` passes a rise.
    const history: CheckOutcome[] = [];
    let verdict: HealthVerdict = 'up';
    for (let i = 0; i < 200; i++) {
      const r = ([P, L, F] as const)[Math.floor(random() * 3)]!;
      history.push(r);
      const tail = (n: number): CheckOutcome[] => history.slice(-n);
      const lastFails: boolean = tail(fall).length === fall && tail(fall).every((x) => x === F);
      const lastNotPass: boolean = tail(fall).length === fall && tail(fall).every((x) => x !== P);
      const lastPasses: boolean = tail(rise).length === rise && tail(rise).every((x) => x === P);
      let expected: HealthVerdict | undefined;
      if (verdict === 'up') expected = lastFails ? 'down' : lastNotPass ? 'leaving' : undefined;
      else if (verdict === 'leaving') expected = lastFails ? 'down' : lastPasses ? 'up' : undefined;
      else expected = lastPasses ? 'up' : undefined;
      const got = state.record(r);
      assert.equal(got, expected, `round ${round} step ${i} (rise ${rise}, fall ${fall}) after ${history.slice(-4).join(',')}`);
      // Runs are counted across a change too (as before this outcome existed): the history is kept.
      if (expected !== undefined) verdict = expected;
    }
  }
});

test('initial accepts leaving; anything else is INVALID_ARGUMENT', () => {
  assert.equal(new HealthState({ rise: 1, fall: 1, initial: 'leaving' }).verdict, 'leaving');
  assert.throws(() => new HealthState({ rise: 1, fall: 1, initial: 'draining' as never }), { code: 'INVALID_ARGUMENT' });
});
