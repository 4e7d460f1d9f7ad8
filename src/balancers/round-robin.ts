/**
 * Smooth weighted round-robin, the algorithm nginx uses for `upstream`
 * weights.
 *
 * @module
 */
import { weightOf, type Balancer, type PickCandidate, type PickContext } from './balancer.js';

/** Per-backend state: nginx's `current_weight`, plus when the id was last offered. */
interface Slot {
  current: number;
  /** Value of the pick counter the last time this id was among the candidates. */
  seen: number;
}

/**
 * Ids not offered for this many picks are forgotten. Sweeping once per window
 * keeps the cost amortised O(1) per pick while bounding the state to the ids
 * seen in the last two windows, however much backends churn.
 */
const sweepEvery = 256;

/**
 * Smooth weighted round-robin: on every pick each candidate's `current` grows
 * by its weight, the largest `current` wins, and the winner gives back the sum
 * of the weights. Over any run of picks with a stable candidate list, each
 * backend is chosen in exact proportion to its weight, and the choices are
 * interleaved (weights 5,1,1 give `a a b a c a a`, not `a a a a a b c`), so a
 * heavy backend never receives a burst.
 *
 * State is keyed by backend id, not position, so candidate lists that differ
 * between picks (a backend at its cap, one already tried for this connection,
 * one added or removed) keep everyone's place. Ids that stop appearing are
 * pruned lazily. Candidates with weight `0` are never picked; if every
 * candidate has weight `0` it picks none. Among equal `current` values the
 * first in candidate order wins.
 *
 * @example
 * ```ts
 * const balancer = new RoundRobinBalancer();
 * // With weights 1, 2 and 3, six picks choose each backend 1, 2 and 3 times.
 * const chosen = balancer.pick(candidates, {});
 * ```
 */
export class RoundRobinBalancer implements Balancer {
  readonly #slots = new Map<string, Slot>();
  #picks = 0;
  #lastSweep = 0;

  pick(candidates: readonly PickCandidate[], _context?: PickContext): PickCandidate | undefined {
    const picks = ++this.#picks;
    let total = 0;
    let best: PickCandidate | undefined;
    let bestSlot: Slot | undefined;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      const weight = weightOf(candidate);
      if (!(weight > 0)) continue;
      const id = candidate.backend.id;
      let slot = this.#slots.get(id);
      if (slot === undefined) {
        // Allocates once per backend id, not per pick.
        slot = { current: 0, seen: picks };
        this.#slots.set(id, slot);
      }
      slot.seen = picks;
      slot.current += weight;
      total += weight;
      if (bestSlot === undefined || slot.current > bestSlot.current) {
        best = candidate;
        bestSlot = slot;
      }
    }
    if (bestSlot !== undefined) bestSlot.current -= total;
    if (picks - this.#lastSweep >= sweepEvery) this.#sweep(picks);
    return best;
  }

  /** Forgets ids not offered since the previous sweep. */
  #sweep(picks: number): void {
    for (const [id, slot] of this.#slots) {
      if (slot.seen <= this.#lastSweep) this.#slots.delete(id);
    }
    this.#lastSweep = picks;
  }
}
