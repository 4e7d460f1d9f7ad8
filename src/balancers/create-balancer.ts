/**
 * Turns the pool's `balancer` option into a {@link Balancer}.
 *
 * @module
 */
import type { Balancer, BalancerName, PickFunction } from './balancer.js';
import { HashBalancer } from './hash.js';
import { LeastConnectionsBalancer } from './least-connections.js';
import { RandomTwoBalancer } from './random-two.js';
import { RoundRobinBalancer } from './round-robin.js';
import * as v from '../validate.js';

/** The names {@link createBalancer} accepts, in the order the docs list them. */
export const balancerNames: readonly BalancerName[] = Object.freeze([
  'least-connections',
  'round-robin',
  'random-two',
  'hash',
] as const satisfies readonly BalancerName[]);

/** Options of {@link createBalancer}. */
export interface CreateBalancerOptions {
  /**
   * Source of randomness for `random-two`, returning a number in `[0, 1)`.
   * Ignored by the other strategies.
   * @default Math.random
   */
  readonly random?: (() => number) | undefined;
}

/**
 * Builds a balancer from a strategy name, passes a {@link Balancer} through
 * unchanged, and wraps a plain {@link PickFunction}. Each call to a name
 * returns a fresh instance: pickers hold per-pool state (cursors, weights)
 * that must not be shared between pools.
 *
 * Throws `INVALID_ARGUMENT` for anything else, naming the `balancer` option.
 *
 * @example
 * ```ts
 * createBalancer('least-connections');
 * createBalancer('random-two', { random: seededRandom(7) });
 * createBalancer((candidates) => candidates.find((c) => c.backend.meta.zone === 'a') ?? candidates[0]);
 * ```
 */
export function createBalancer(strategy: BalancerName | Balancer | PickFunction, options: CreateBalancerOptions = {}): Balancer {
  v.knownKeys('', v.object('options', options), ['random']);
  const random = options.random === undefined ? undefined : v.func<() => number>('random', options.random);
  if (typeof strategy === 'string') {
    const name = v.oneOf('balancer', strategy, balancerNames);
    switch (name) {
      case 'least-connections':
        return new LeastConnectionsBalancer();
      case 'round-robin':
        return new RoundRobinBalancer();
      case 'random-two':
        return new RandomTwoBalancer({ random });
      case 'hash':
        return new HashBalancer();
      default:
        return unreachable(name);
    }
  }
  if (typeof strategy === 'function') {
    const pick = strategy;
    // An arrow, so the caller's function is called unbound, exactly as written.
    return { pick: (candidates, context) => pick(candidates, context) };
  }
  if (typeof strategy === 'object' && strategy !== null && typeof (strategy as { pick?: unknown }).pick === 'function') {
    return strategy;
  }
  throw v.invalid(
    'balancer',
    `one of ${balancerNames.map((n) => `'${n}'`).join(', ')}, a pick function, or an object with a \`pick\` method`,
    strategy,
  );
}

function unreachable(name: never): never {
  throw v.invalid('balancer', 'a known strategy', name);
}
