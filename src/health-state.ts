/**
 * The rise/fall counter behind every health verdict, kept apart from the I/O
 * that feeds it (as HAProxy keeps the check apart from the server's health
 * counter) so it can be tested exhaustively without a socket or a timer.
 *
 * @module
 */
import * as v from './validate.js';

/**
 * A settled verdict: the backend passes its checks (`up`), answers that it
 * is leaving while it still serves (`leaving`), or fails them (`down`).
 */
export type HealthVerdict = 'up' | 'leaving' | 'down';

/**
 * What one check said: `pass`, `leaving` (the backend answered that it is
 * not ready and still serves: a graceful shutdown), or `fail`. A boolean is
 * read as `pass`/`fail`.
 *
 * @example
 * ```ts
 * const outcome: CheckOutcome = res.status === 200 ? 'pass' : 'fail';
 * ```
 */
export type CheckOutcome = 'pass' | 'leaving' | 'fail';

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
 * A third outcome, `leaving`, is an answer, not a failure: while `up`, `fall`
 * consecutive results that do not pass make it `leaving` when they were not
 * all failures (so placement stops within the same detection time as for
 * `down`), and `down` when they were. While `leaving`, `fall` consecutive
 * failures make it `down` (it stopped answering) and `rise` consecutive
 * passes make it `up`. A `down` backend stays `down` until `rise` passes:
 * saying it is leaving does not bring it back.
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
  /** Results in a row that did not pass (failures and `leaving` answers). */
  #notPassing = 0;

  constructor(options: HealthStateOptions) {
    const raw = v.object('options', options);
    v.knownKeys('', raw, ['rise', 'fall', 'initial']);
    this.#rise = v.integer('rise', options.rise, 1);
    this.#fall = v.integer('fall', options.fall, 1);
    this.#verdict = v.oneOf('initial', options.initial ?? 'unknown', ['up', 'leaving', 'down', 'unknown']);
  }

  /**
   * Records one check result and returns the verdict it caused, if the verdict
   * changed: `'up'`, `'leaving'`, `'down'`, or `undefined` when it did not
   * change. `true`/`false` stand for `'pass'`/`'fail'`.
   */
  record(result: boolean | CheckOutcome): HealthVerdict | undefined {
    const outcome: CheckOutcome = result === true ? 'pass' : result === false ? 'fail' : result;
    if (outcome === 'pass') {
      this.#successes += 1;
      this.#failures = 0;
      this.#notPassing = 0;
    } else {
      this.#successes = 0;
      this.#notPassing += 1;
      this.#failures = outcome === 'fail' ? this.#failures + 1 : 0;
    }
    const next = this.#next(outcome);
    if (next !== undefined) this.#verdict = next;
    return next;
  }

  #next(outcome: CheckOutcome): HealthVerdict | undefined {
    switch (this.#verdict) {
      // An unchecked backend has no run to complete: believing the first result
      // lets a freshly added backend enter (or stay out of) service at once.
      case 'unknown':
        return outcome === 'pass' ? 'up' : outcome === 'leaving' ? 'leaving' : 'down';
      case 'up':
        if (this.#failures >= this.#fall) return 'down';
        return this.#notPassing >= this.#fall ? 'leaving' : undefined;
      case 'leaving':
        if (this.#failures >= this.#fall) return 'down';
        return this.#successes >= this.#rise ? 'up' : undefined;
      case 'down':
        return this.#successes >= this.#rise ? 'up' : undefined;
    }
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
   * `true` while a run against the current verdict is in progress (results
   * that do not pass while `up`, successes while `down`, failures or
   * successes while `leaving`) but has not yet reached `fall` or `rise`. A scheduler checks more often then (HAProxy's `fastinter`), so the
   * verdict is confirmed or dismissed sooner.
   */
  get changing(): boolean {
    switch (this.#verdict) {
      case 'up':
        return this.#notPassing > 0;
      case 'down':
        return this.#successes > 0;
      case 'leaving':
        return this.#successes > 0 || this.#failures > 0;
      default:
        return false;
    }
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
