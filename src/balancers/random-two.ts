/**
 * Power of two choices: draw two backends at random, keep the less loaded.
 *
 * @module
 */
import { weightOf, type Balancer, type PickCandidate, type PickContext } from './balancer.js';
import * as v from '../validate.js';

/** Options of {@link RandomTwoBalancer}. */
export interface RandomTwoBalancerOptions {
  /**
   * Source of randomness, returning a number in `[0, 1)`. Inject a seeded
   * generator to make picks reproducible in tests.
   * @default Math.random
   */
  readonly random?: (() => number) | undefined;
}

/**
 * Power of two choices: draws two distinct candidates at random and picks the
 * one with the lower `active / weight` (the first drawn on a tie).
 *
 * Draws are **weighted**: each of the two is sampled with probability
 * proportional to its weight, without replacement. That keeps weights
 * meaningful when connections are short-lived and every backend sits at zero
 * active connections, where the load comparison alone would ignore them.
 * Weight `0` candidates are never drawn; with one eligible candidate it is
 * returned, with none the pick is `undefined`.
 *
 * Compared with least connections, the randomness keeps many independent
 * proxies (each with its own view of `active`) from all stampeding onto the
 * same momentarily idle backend, while still avoiding the most loaded ones:
 * the most loaded backend is never chosen unless tied.
 *
 * Two passes over the candidates, no allocation.
 *
 * @example
 * ```ts
 * const balancer = new RandomTwoBalancer({ random: seededRandom(42) });
 * const chosen = balancer.pick(candidates, {}); // the lighter of two random draws
 * ```
 */
export class RandomTwoBalancer implements Balancer {
  readonly #random: () => number;

  constructor(options: RandomTwoBalancerOptions = {}) {
    v.knownKeys('', v.object('options', options), ['random']);
    this.#random = options.random === undefined ? Math.random : v.func<() => number>('random', options.random);
  }

  pick(candidates: readonly PickCandidate[], _context?: PickContext): PickCandidate | undefined {
    let total = 0;
    let eligible = 0;
    let only: PickCandidate | undefined;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      const weight = weightOf(candidate);
      if (!(weight > 0)) continue;
      total += weight;
      eligible++;
      only = candidate;
    }
    if (eligible <= 1) return only;
    const first = draw(candidates, total * this.#random(), undefined);
    const second = draw(candidates, (total - weightOf(first)) * this.#random(), first);
    return second.active / weightOf(second) < first.active / weightOf(first) ? second : first;
  }
}

/**
 * Walks the cumulative weights until `target` is used up. Callers guarantee at
 * least one eligible candidate besides `skip`.
 */
function draw(candidates: readonly PickCandidate[], target: number, skip: PickCandidate | undefined): PickCandidate {
  let last: PickCandidate | undefined;
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i]!;
    const weight = weightOf(candidate);
    if (candidate === skip || !(weight > 0)) continue;
    target -= weight;
    if (target < 0) return candidate;
    last = candidate;
  }
  // Floating-point rounding (or a `random` returning 1) can leave the target
  // at exactly zero after the last candidate: that belongs to the last one.
  return last!;
}
