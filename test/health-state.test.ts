import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthState, type HealthVerdict, type InitialHealth } from '../src/health-state.js';

/** Feeds `results` and returns every transition (or `-` for none), one per result. */
function run(state: HealthState, results: readonly boolean[]): (HealthVerdict | '-')[] {
  return results.map((ok) => state.record(ok) ?? '-');
}

const T = true;
const F = false;

test('starts unknown by default, not healthy, not changing', () => {
  const state = new HealthState({ rise: 2, fall: 3 });
  assert.equal(state.verdict, 'unknown');
  assert.equal(state.healthy, false);
  assert.equal(state.changing, false);
  assert.equal(state.consecutiveSuccesses, 0);
  assert.equal(state.consecutiveFailures, 0);
  assert.equal(state.rise, 2);
  assert.equal(state.fall, 3);
});

test('unknown: the first result decides at once, whatever rise and fall are', () => {
  const up = new HealthState({ rise: 5, fall: 5, initial: 'unknown' });
  assert.equal(up.record(true), 'up');
  assert.equal(up.healthy, true);
  assert.equal(up.changing, false);

  const down = new HealthState({ rise: 5, fall: 5, initial: 'unknown' });
  assert.equal(down.record(false), 'down');
  assert.equal(down.healthy, false);
  assert.equal(down.changing, false);
  // From then on the ordinary rules apply: it takes `rise` successes to come up.
  assert.deepEqual(run(down, [T, T, T, T, T]), ['-', '-', '-', '-', 'up']);
});

test('up: `fall` consecutive failures mark down, and only the last one reports it', () => {
  const state = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  assert.equal(state.record(false), undefined);
  assert.equal(state.changing, true);
  assert.equal(state.consecutiveFailures, 1);
  assert.equal(state.record(false), undefined);
  assert.equal(state.healthy, true);
  assert.equal(state.record(false), 'down');
  assert.equal(state.healthy, false);
  assert.equal(state.verdict, 'down');
  assert.equal(state.consecutiveFailures, 3);
  assert.equal(state.changing, false, 'the run completed: nothing is in progress against `down`');
  // Further failures do not report `down` again.
  assert.deepEqual(run(state, [F, F]), ['-', '-']);
  assert.equal(state.consecutiveFailures, 5);
});

test('down: `rise` consecutive successes mark up', () => {
  const state = new HealthState({ rise: 2, fall: 3, initial: 'down' });
  assert.equal(state.record(true), undefined);
  assert.equal(state.changing, true);
  assert.equal(state.record(true), 'up');
  assert.equal(state.changing, false);
  assert.equal(state.consecutiveSuccesses, 2);
  assert.deepEqual(run(state, [T, T, T]), ['-', '-', '-']);
});

test('a success resets the failure run', () => {
  const state = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  assert.deepEqual(run(state, [F, F, T]), ['-', '-', '-']);
  assert.equal(state.consecutiveFailures, 0);
  assert.equal(state.consecutiveSuccesses, 1);
  assert.equal(state.changing, false);
  // The count starts over: three more failures are needed.
  assert.deepEqual(run(state, [F, F, F]), ['-', '-', 'down']);
});

test('a failure resets the success run', () => {
  const state = new HealthState({ rise: 3, fall: 2, initial: 'down' });
  assert.deepEqual(run(state, [T, T, F]), ['-', '-', '-']);
  assert.equal(state.consecutiveSuccesses, 0);
  assert.equal(state.consecutiveFailures, 1);
  assert.equal(state.changing, false);
  assert.deepEqual(run(state, [T, T, T]), ['-', '-', 'up']);
});

test('flapping never transitions when rise and fall are >= 2', () => {
  for (const initial of ['up', 'down'] as const) {
    for (let rise = 2; rise <= 4; rise++) {
      for (let fall = 2; fall <= 4; fall++) {
        for (const first of [true, false]) {
          const state = new HealthState({ rise, fall, initial });
          const results = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? first : !first));
          assert.ok(
            run(state, results).every((t) => t === '-'),
            `rise=${rise} fall=${fall} initial=${initial} first=${first}`,
          );
          assert.equal(state.verdict, initial);
        }
      }
    }
  }
});

test('flapping with runs shorter than the threshold never transitions', () => {
  // up, fall=3: two failures then a success, forever.
  const state = new HealthState({ rise: 2, fall: 3, initial: 'up' });
  const results = Array.from({ length: 99 }, (_, i) => i % 3 === 2);
  assert.ok(run(state, results).every((t) => t === '-'));
  assert.equal(state.healthy, true);
});

test('rise=1 and fall=1 follow every result', () => {
  const state = new HealthState({ rise: 1, fall: 1, initial: 'up' });
  assert.deepEqual(run(state, [F, T, F, F, T, T]), ['down', 'up', 'down', '-', 'up', '-']);
  assert.equal(state.changing, false);
});

test('changing is true exactly while a run against the verdict is under way', () => {
  const state = new HealthState({ rise: 3, fall: 3, initial: 'up' });
  const seen: boolean[] = [];
  for (const ok of [T, F, F, F, F, T, T, T, T]) {
    state.record(ok);
    seen.push(state.changing);
  }
  //                 T      F     F     F(down) F      T     T     T(up)  T
  assert.deepEqual(seen, [false, true, true, false, false, true, true, false, false]);
});

test('a long sequence matches a reference model', () => {
  // A second, deliberately naive implementation to compare against.
  function reference(initial: InitialHealth, rise: number, fall: number, results: readonly boolean[]): (HealthVerdict | '-')[] {
    let verdict = initial;
    const out: (HealthVerdict | '-')[] = [];
    for (let i = 0; i < results.length; i++) {
      const ok = results[i]!;
      let runLength = 0;
      for (let j = i; j >= 0 && results[j] === ok; j--) runLength++;
      let next: HealthVerdict | undefined;
      if (verdict === 'unknown') next = ok ? 'up' : 'down';
      else if (verdict === 'up' && !ok && runLength >= fall) next = 'down';
      else if (verdict === 'down' && ok && runLength >= rise) next = 'up';
      if (next) verdict = next;
      out.push(next ?? '-');
    }
    return out;
  }
  let seed = 42;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let round = 0; round < 200; round++) {
    const rise = 1 + Math.floor(random() * 4);
    const fall = 1 + Math.floor(random() * 4);
    const initial = (['up', 'down', 'unknown'] as const)[round % 3]!;
    const bias = random();
    const results = Array.from({ length: 60 }, () => random() < bias);
    assert.deepEqual(run(new HealthState({ rise, fall, initial }), results), reference(initial, rise, fall, results));
  }
});

test('invalid options throw INVALID_ARGUMENT naming the option', () => {
  const cases: [unknown, RegExp][] = [
    [{ rise: 0, fall: 3 }, /`rise`/],
    [{ rise: 2, fall: 1.5 }, /`fall`/],
    [{ rise: 2, fall: 3, initial: 'maybe' }, /`initial`/],
    [{ rise: 2, fall: 3, rize: 2 }, /`rize`/],
    [null, /`options`/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => new HealthState(options as never),
      (err: unknown) => {
        assert.equal((err as { code?: unknown }).code, 'INVALID_ARGUMENT');
        assert.match((err as Error).message, message);
        return true;
      },
    );
  }
});
