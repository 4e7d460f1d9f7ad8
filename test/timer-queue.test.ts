/**
 * The probe's one timer: many deadlines in a heap behind a single clock
 * timer, and the process's own stalls measured by how late it fires.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QueuedTimer, TimerQueue } from '../src/timer-queue.js';
import { FakeClock } from './helpers/fake-clock.js';

function setup(tolerance = 10, sampleEvery = 100): { clock: FakeClock; queue: TimerQueue; fired: string[]; timer: (name: string) => QueuedTimer } {
  const clock = new FakeClock(0);
  const queue = new TimerQueue(clock, { tolerance, sampleEvery });
  const fired: string[] = [];
  const timer = (name: string): QueuedTimer => new QueuedTimer(() => fired.push(`${name}@${clock.now()}`));
  return { clock, queue, fired, timer };
}

void test('timers fire in due order (ties in the order set) behind one clock timer', () => {
  const { clock, queue, fired, timer } = setup();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(timer) as [QueuedTimer, QueuedTimer, QueuedTimer, QueuedTimer];
  queue.set(a, 300);
  queue.set(b, 100);
  queue.set(c, 300);
  queue.set(d, 200);
  assert.equal(clock.pending, 1);
  assert.deepEqual(clock.delays(), [100]);
  assert.equal(queue.size, 4);
  clock.advance(1000);
  assert.deepEqual(fired, ['b@100', 'd@200', 'a@300', 'c@300']);
  assert.equal(clock.pending, 0);
  assert.equal(queue.size, 0);
  assert.equal(a.pending, false);
});

void test('set moves a pending timer; clear removes it and re-arms for the next soonest', () => {
  const { clock, queue, fired, timer } = setup();
  const a = timer('a');
  const b = timer('b');
  queue.set(a, 100);
  queue.set(b, 500);
  queue.set(a, 700);
  assert.deepEqual(clock.delays(), [500]);
  queue.clear(b);
  queue.clear(b);
  assert.deepEqual(clock.delays(), [700]);
  queue.clear(a);
  assert.equal(clock.pending, 0);
  queue.set(a, 50);
  clock.advance(1000);
  assert.deepEqual(fired, ['a@50']);
});

void test('a timer set from a firing callback fires at its own time', () => {
  const { clock, queue, fired } = setup();
  let n = 0;
  const tick: QueuedTimer = new QueuedTimer(() => {
    fired.push(`tick@${clock.now()}`);
    if (++n < 3) queue.set(tick, 250);
  });
  queue.set(tick, 250);
  clock.advance(2000);
  assert.deepEqual(fired, ['tick@250', 'tick@500', 'tick@750']);
  assert.equal(clock.pending, 0);
});

void test('the heap keeps due order through random sets and clears', () => {
  const { clock, queue, fired, timer } = setup();
  let seed = 42;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const timers = Array.from({ length: 50 }, (_, i) => timer(String(i)));
  const due = new Map<QueuedTimer, number>();
  for (let step = 0; step < 500; step++) {
    const t = timers[Math.floor(random() * timers.length)]!;
    if (random() < 0.3) {
      queue.clear(t);
      due.delete(t);
    } else {
      const delay = Math.floor(random() * 1000);
      queue.set(t, delay);
      due.set(t, delay);
    }
    assert.ok(clock.pending <= 1);
  }
  assert.equal(queue.size, due.size);
  clock.advance(1000);
  const times = fired.map((f) => Number(f.split('@')[1]));
  assert.deepEqual(times, [...times].sort((x, y) => x - y));
  assert.equal(fired.length, due.size);
  for (const [t, delay] of due) assert.ok(fired.includes(`${timers.indexOf(t)}@${delay}`));
});

void test('stalledMs counts how late the clock timer fired beyond the tolerance, never twice', () => {
  const { clock, queue, timer } = setup(10);
  const a = timer('a');
  const b = timer('b');
  queue.set(a, 100);
  queue.set(b, 150);
  clock.advance(100);
  assert.equal(queue.stalledMs, 0, 'on time');
  clock.stall(505);
  // b was due at 150; it fires at 605: 455 ms late, 445 beyond the tolerance.
  clock.advance(0);
  assert.equal(queue.stalledMs, 445);
  queue.set(a, 0);
  clock.stall(8);
  clock.advance(0);
  assert.equal(queue.stalledMs, 445, 'within the tolerance');
});

void test('hold() samples stalls every sampleEvery ms, with no deadline inside the stall; release() stops it', () => {
  const { clock, queue, timer } = setup(10, 100);
  const far = timer('far');
  queue.set(far, 10_000);
  assert.deepEqual(clock.delays(), [10_000]);
  queue.hold();
  queue.hold();
  assert.deepEqual(clock.delays(), [100]);
  clock.advance(250);
  assert.deepEqual(clock.delays(), [50]);
  clock.advance(20);
  clock.stall(1000);
  // The sample due at 300 fires at 1270.
  clock.advance(0);
  assert.equal(queue.stalledMs, 960);
  queue.release();
  assert.deepEqual(clock.delays(), [100], 'still held once');
  queue.release();
  queue.release();
  assert.equal(clock.pending, 1);
  assert.deepEqual(clock.delays(), [10_000 - 1270]);
});

void test('close() clears every timer and the clock timer; set afterwards does nothing', () => {
  const { clock, queue, fired, timer } = setup();
  const a = timer('a');
  queue.set(a, 100);
  queue.hold();
  queue.close();
  assert.equal(clock.pending, 0);
  assert.equal(a.pending, false);
  queue.set(a, 100);
  queue.hold();
  assert.equal(clock.pending, 0);
  clock.advance(1000);
  assert.deepEqual(fired, []);
});

void test('coalesce: timers due within the window fire with the one that fires, early; none loops on re-setting itself', () => {
  const clock = new FakeClock(0);
  const queue = new TimerQueue(clock, { tolerance: 10, sampleEvery: 100, coalesce: 10 });
  const fired: string[] = [];
  const timer = (name: string): QueuedTimer => new QueuedTimer(() => fired.push(`${name}@${clock.now()}`));
  const [a, b, c] = [timer('a'), timer('b'), timer('c')];
  queue.set(a, 100);
  queue.set(b, 110);
  queue.set(c, 111);
  clock.advance(100);
  assert.deepEqual(fired, ['a@100', 'b@100']);
  assert.deepEqual(clock.delays(), [11]);
  clock.advance(11);
  assert.deepEqual(fired, ['a@100', 'b@100', 'c@111']);

  // A deadline-like timer that re-sets itself until its time: fired early once, then on time.
  const due = 205;
  const self: QueuedTimer = new QueuedTimer(() => {
    fired.push(`self@${clock.now()}`);
    if (clock.now() < due) queue.set(self, due - clock.now());
  });
  queue.set(a, 200 - clock.now());
  queue.set(self, due - clock.now());
  clock.advance(200 - clock.now());
  assert.deepEqual(fired.slice(3), ['a@200', 'self@200']);
  clock.advance(5);
  assert.deepEqual(fired.slice(3), ['a@200', 'self@200', 'self@205']);
  assert.equal(clock.pending, 0);
});

void test('maxPerPass: a burst of due timers fires a few per wake-up, the rest on the next ones, in due order', () => {
  const log: string[] = [];
  // Each wake-up of the clock timer is marked `|`.
  class MarkingClock extends FakeClock {
    override setTimeout(callback: () => void, ms: number): unknown {
      return super.setTimeout(() => {
        log.push('|');
        callback();
      }, ms);
    }
  }
  const clock = new MarkingClock(0);
  const queue = new TimerQueue(clock, { tolerance: 10, sampleEvery: 100, coalesce: 10, maxPerPass: 2 });
  for (const [i, name] of ['a', 'b', 'c', 'd', 'e'].entries()) queue.set(new QueuedTimer(() => log.push(name)), 100 + i);
  // A stall: every timer is overdue when the clock timer fires.
  clock.stall(200);
  clock.advance(0);
  assert.deepEqual(log, ['|', 'a', 'b', '|', 'c', 'd', '|', 'e']);
  assert.equal(queue.size, 0);
  assert.equal(clock.pending, 0);
  // 100 ms late (less the 10 ms tolerance), once: the passes right after it are not stalls.
  assert.equal(queue.stalledMs, 90);
});
