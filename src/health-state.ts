/**
 * The rise/fall counter behind every health verdict, kept apart from the I/O
 * that feeds it (as HAProxy keeps the check apart from the server's health
 * counter) so it can be tested exhaustively without a socket or a timer.
 *
 * @module
 */
import * as v from './validate.js';

/**
 * A settled verdict: the backend passes its checks or it does not.
 */
export type HealthVerdict = 'up' | 'down';

/**
 * Where a {@link HealthState} starts. `'unknown'` is for a backend nobody has
 * checked yet (a pool waiting for its first probe): the first result decides.
 */
export type InitialHealth = HealthVerdict | 'unknown';

/**
 * Options of a {@link HealthState}.
 */
export interface HealthStateOptions {
  /** Consecutive successes that bring a `down` backend `up`. An integer >= 1. */
  readonly rise: number;
  /** Consecutive failures that bring an `up` backend `down`. An integer >= 1. */
  readonly fall: number;
  /**
   * The verdict before any result is recorded.
   * @default 'unknown'
   */
  readonly initial?: InitialHealth | undefined;
}

/**
 * A pure rise/fall state machine, as HAProxy's `rise`/`fall`: while `up`,
 * `fall` consecutive failures make it `down`; while `down`, `rise`
 * consecutive successes make it `up`. A success ends a run of failures and a
 * failure ends a run of successes, so a flapping backend (alternating results)
 * never changes verdict when `rise` and `fall` are both >= 2.
 *
 * No I/O, no timers, no events: {@link HealthState.record} returns the
 * transition and the caller acts on it.
 */
export class HealthState {
  readonly #rise: number;
  readonly #fall: number;
  #verdict: InitialHealth;
  #successes = 0;
  #failures = 0;

  constructor(options: HealthStateOptions) {
    const raw = v.object('options', options);
    v.knownKeys('', raw, ['rise', 'fall', 'initial']);
    this.#rise = v.integer('rise', options.rise, 1);
    this.#fall = v.integer('fall', options.fall, 1);
    this.#verdict = v.oneOf('initial', options.initial ?? 'unknown', ['up', 'down', 'unknown']);
  }

  /**
   * Records one check result and returns the verdict it caused, if the verdict
   * changed: `'up'`, `'down'`, or `undefined` when it did not change.
   */
  record(ok: boolean): HealthVerdict | undefined {
    if (ok) {
      this.#successes += 1;
      this.#failures = 0;
    } else {
      this.#failures += 1;
      this.#successes = 0;
    }
    // An unchecked backend has no run to complete: believing the first result
    // lets a freshly added backend enter (or stay out of) service at once.
    const next: HealthVerdict | undefined =
      this.#verdict === 'unknown'
        ? ok
          ? 'up'
          : 'down'
        : this.#verdict === 'up'
          ? !ok && this.#failures >= this.#fall
            ? 'down'
            : undefined
          : ok && this.#successes >= this.#rise
            ? 'up'
            : undefined;
    if (next !== undefined) this.#verdict = next;
    return next;
  }

  /**
   * The current verdict; `'unknown'` until the first result when started so.
   */
  get verdict(): InitialHealth {
    return this.#verdict;
  }

  /**
   * `true` only when the verdict is `up` (an unchecked backend is not healthy).
   */
  get healthy(): boolean {
    return this.#verdict === 'up';
  }

  /**
   * Successes in a row, up to and including the last result (0 after a failure).
   */
  get consecutiveSuccesses(): number {
    return this.#successes;
  }

  /**
   * Failures in a row, up to and including the last result (0 after a success).
   */
  get consecutiveFailures(): number {
    return this.#failures;
  }

  /**
   * `true` while a run against the current verdict is in progress (failures
   * while `up`, successes while `down`) but has not yet reached `fall` or
   * `rise`. A scheduler checks more often then (HAProxy's `fastinter`), so the
   * verdict is confirmed or dismissed sooner.
   */
  get changing(): boolean {
    return (this.#verdict === 'up' && this.#failures > 0) || (this.#verdict === 'down' && this.#successes > 0);
  }

  /**
   * The `rise` this state was built with.
   */
  get rise(): number {
    return this.#rise;
  }

  /**
   * The `fall` this state was built with.
   */
  get fall(): number {
    return this.#fall;
  }
}
