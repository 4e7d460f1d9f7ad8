import type { Clock } from '../../src/clock.js';

interface FakeTimer {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
}

/**
 * A manual {@link Clock}: time moves only when a test calls `advance()`, and
 * timers fire in due order (ties in the order they were set), synchronously,
 * from inside `advance()`. Nothing here touches real timers, so a test can
 * reason about intervals without ever waiting on wall-clock time.
 *
 * @example
 * ```ts
 * const clock = new FakeClock();
 * const probe = new HealthProbe({ clock, interval: 1000 });
 * clock.advance(1000); // fires whatever was due within that second
 * ```
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, FakeTimer>();

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, callback });
    return seq;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** The delays from now of every pending timer, soonest first (0 for one already due). */
  delays(): number[] {
    return Array.from(this.#timers.values(), (t) => Math.max(0, t.at - this.#now)).sort((a, b) => a - b);
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way
   * (including timers set by those callbacks), each with `now()` at its due time.
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const timer of this.#timers.values()) {
        if (timer.at <= end && (next === undefined || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer;
      }
      if (next === undefined) break;
      this.#timers.delete(next.seq);
      // A timer that fell due during a stall fires late, at the current time.
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = end;
  }

  /**
   * Moves time forward by `ms` without firing anything, as a blocked event
   * loop (or a process without CPU) does: the timers that fell due meanwhile
   * fire late, at the next `advance()`, with `now()` at the time they fire.
   */
  stall(ms: number): void {
    this.#now += ms;
  }

  /** Advances to the soonest pending timer and fires it (and any due at the same time). Returns whether one fired. */
  next(): boolean {
    const [soonest] = this.delays();
    if (soonest === undefined) return false;
    this.advance(soonest);
    return true;
  }
}
