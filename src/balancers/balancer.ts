/**
 * The contract between the pool and a picker. The pool filters first (only
 * eligible backends — health `up`, admin `active`, weight above 0 — under
 * their `maxConnections`, not yet tried for this connection); a picker only
 * chooses among what it is given.
 *
 * @module
 */
import type { Socket } from 'node:net';
import type { Backend } from '../backend.js';

/** One backend the picker may choose. */
export interface PickCandidate {
  readonly backend: Backend;
  /** Connections open or being dialled to this backend right now. */
  readonly active: number;
  /**
   * The weight to balance by now: `backend.weight`, scaled down while the
   * backend warms up after becoming eligible (slow start). Always set by the
   * pool; a hand-built candidate without it is weighed by `backend.weight`.
   */
  readonly effectiveWeight?: number | undefined;
  /** Clock time the backend last became eligible (up and active), when the pool knows it. */
  readonly eligibleSince?: number | undefined;
}

/** The weight a built-in picker balances a candidate by. */
export function weightOf(candidate: PickCandidate): number {
  return candidate.effectiveWeight ?? candidate.backend.weight;
}

/** What the pool knows about the connection being placed. */
export interface PickContext {
  /** The client socket, when there is one (absent for agent requests). */
  readonly client?: Socket | undefined;
  /**
   * Hash key for `hash` pickers. Defaults to the client's remote address when
   * the pool has a client socket.
   */
  readonly key?: string | undefined;
  /** Free-form data passed to `pin(socket, context)` (a zone, a tenant). */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * Chooses a backend for one connection. Return `undefined` to choose none (the
 * connection then waits in the queue, as if nothing were up).
 */
export type PickFunction = (candidates: readonly PickCandidate[], context: PickContext) => PickCandidate | undefined;

/** A stateful picker. `pick` is only ever called with a non-empty candidate list. */
export interface Balancer {
  pick(candidates: readonly PickCandidate[], context: PickContext): PickCandidate | undefined;
}

/** Built-in strategies, by name. */
export type BalancerName = 'least-connections' | 'round-robin' | 'random-two' | 'hash';
