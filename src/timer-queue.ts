/**
 * Many deadlines behind one clock timer, and a measure of how late that timer
 * fires: the time the process itself was stalled.
 *
 * @module
 */
import type { Clock } from './clock.js';

/**
 * One deadline in a {@link TimerQueue}. Made once and set again and again:
 * setting or clearing it allocates nothing.
 *
 * @internal
 */
export class QueuedTimer {
  /** When it falls due (clock time); meaningful while `pending`. */
  at = 0;
  /** Ties between equal `at` fire in the order they were set. */
  seq = 0;
  /** Position in the heap; -1 when not pending. */
  index = -1;
  readonly #callback: () => void;

  constructor(callback: () => void) {
    this.#callback = callback;
  }

  /** Set and not yet fired or cleared. */
  get pending(): boolean {
    return this.index >= 0;
  }

  /** @internal */
  fire(): void {
    this.#callback();
  }
}

function before(a: QueuedTimer, b: QueuedTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * Keeps any number of {@link QueuedTimer}s in a binary min-heap and arms a
 * single clock timer for the soonest: one timer for a probe of a thousand
 * backends instead of two per backend (a scheduled check and a running
 * check's timeout).
 *
 * Timers due within `coalesce` ms of the one that fires are fired with it,
 * early: each time the process wakes it does all the work due around then,
 * rather than waking once per timer (a wake-up costs more than the JavaScript
 * of a check on a busy host). Their callbacks must tolerate an early call.
 *
 * At most `maxPerPass` timers fire in one wake-up; the rest fire on the next
 * one (a 0 ms clock timer, so I/O is read in between): a burst of due timers
 * (after a stall, or many falling due together) becomes several short turns
 * instead of one long one.
 *
 * It also measures the process's own stalls. Each time its clock timer fires,
 * the lateness beyond `tolerance` (the loop was blocked, or the process had
 * no CPU) is added to {@link stalledMs}. While anything is held with
 * {@link hold}, the timer fires at least every `sampleEvery` ms, so a stall
 * is measured to within that much even when no deadline falls inside it.
 *
 * @internal
 */
export class TimerQueue {
  readonly #clock: Clock;
  readonly #tolerance: number;
  readonly #sampleEvery: number;
  readonly #coalesce: number;
  readonly #maxPerPass: number;
  readonly #heap: QueuedTimer[] = [];
  #seq = 0;
  #handle: unknown;
  /** The clock time the clock timer is armed for; Infinity when disarmed. */
  #armedAt = Infinity;
  #lastFiredAt = -Infinity;
  #stalledMs = 0;
  #holds = 0;
  #firing = false;
  #closed = false;

  constructor(
    clock: Clock,
    {
      tolerance,
      sampleEvery,
      coalesce = 0,
      maxPerPass = Infinity,
    }: { readonly tolerance: number; readonly sampleEvery: number; readonly coalesce?: number; readonly maxPerPass?: number },
  ) {
    this.#clock = clock;
    this.#tolerance = tolerance;
    this.#sampleEvery = Math.max(1, sampleEvery);
    this.#coalesce = Math.max(0, coalesce);
    this.#maxPerPass = Math.max(1, maxPerPass);
  }

  /** Milliseconds the process was measurably stalled since this queue was made; only grows. */
  get stalledMs(): number {
    return this.#stalledMs;
  }

  /** Timers pending. */
  get size(): number {
    return this.#heap.length;
  }

  /** Sets `timer` to fire `delay` ms from now, moving it if it was pending. */
  set(timer: QueuedTimer, delay: number): void {
    if (this.#closed) return;
    const at = this.#clock.now() + Math.max(0, delay);
    if (timer.index >= 0) this.#remove(timer);
    timer.at = at;
    timer.seq = ++this.#seq;
    timer.index = this.#heap.length;
    this.#heap.push(timer);
    this.#up(timer.index);
    this.#sync();
  }

  /** Clears `timer`; nothing when it is not pending. */
  clear(timer: QueuedTimer): void {
    if (timer.index < 0) return;
    this.#remove(timer);
    this.#sync();
  }

  /** Keeps stall sampling on until the matching {@link release}. */
  hold(): void {
    this.#holds++;
    this.#sync();
  }

  release(): void {
    if (this.#holds > 0) this.#holds--;
    this.#sync();
  }

  /** Clears every timer and the clock timer; later calls to `set` do nothing. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#heap) timer.index = -1;
    this.#heap.length = 0;
    this.#holds = 0;
    this.#disarm();
  }

  // ------------------------------------------------------------- internals

  readonly #onFire = (): void => {
    const armedAt = this.#armedAt;
    this.#handle = undefined;
    this.#armedAt = Infinity;
    const now = this.#clock.now();
    // Lateness since the later of when it was due and when it last fired, so
    // no stretch of time is counted twice.
    const late = now - Math.max(armedAt, this.#lastFiredAt);
    if (late > this.#tolerance) this.#stalledMs += late - this.#tolerance;
    this.#lastFiredAt = now;
    this.#firing = true;
    try {
      const heap = this.#heap;
      const until = now + this.#coalesce;
      // A timer set by a callback of this pass fires early only on a later
      // pass: one that re-sets itself for a moment later would loop here.
      const lastSeq = this.#seq;
      let fired = 0;
      while (heap.length > 0 && heap[0]!.at <= until && fired < this.#maxPerPass) {
        const timer = heap[0]!;
        if (timer.at > now && timer.seq > lastSeq) break;
        this.#remove(timer);
        fired++;
        timer.fire();
      }
    } finally {
      this.#firing = false;
    }
    this.#sync();
  };

  /** Arms the clock timer for the soonest timer (or the next stall sample), if it is not already. */
  #sync(): void {
    if (this.#firing || this.#closed) return;
    let at = this.#heap.length > 0 ? this.#heap[0]!.at : Infinity;
    if (this.#holds > 0) {
      const now = this.#clock.now();
      // A sample already armed within the period stays armed: no re-arming on every hold.
      if (this.#armedAt <= now + this.#sampleEvery && this.#armedAt <= at) return;
      at = Math.min(at, now + this.#sampleEvery);
    }
    if (at === this.#armedAt) return;
    this.#disarm();
    if (at === Infinity) return;
    this.#armedAt = at;
    this.#handle = this.#clock.setTimeout(this.#onFire, Math.max(0, at - this.#clock.now()));
  }

  #disarm(): void {
    if (this.#handle === undefined) return;
    this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    this.#armedAt = Infinity;
  }

  #remove(timer: QueuedTimer): void {
    const heap = this.#heap;
    const i = timer.index;
    const last = heap.pop()!;
    timer.index = -1;
    if (last === timer) return;
    heap[i] = last;
    last.index = i;
    this.#down(i);
    this.#up(last.index);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const timer = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (!before(timer, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = timer;
    timer.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const timer = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(heap[r]!, heap[l]!) ? r : l;
      const child = heap[c]!;
      if (!before(child, timer)) break;
      heap[i] = child;
      child.index = i;
      i = c;
    }
    heap[i] = timer;
    timer.index = i;
  }
}
