/**
 * Least connections: send each new connection to the backend with the fewest
 * open connections per unit of weight.
 *
 * @module
 */
import { weightOf, type Balancer, type PickCandidate, type PickContext } from './balancer.js';

/**
 * Picks the candidate with the lowest `active / weight`. Candidates with weight
 * `0` are never picked; if every candidate has weight `0` it picks none.
 *
 * Ties rotate: the scan starts just after the position chosen last time, so
 * equally loaded backends take turns instead of the first one in the list
 * absorbing every short-lived connection. The cursor is positional (not keyed
 * by id) because that costs nothing per pick; when the candidate list changes
 * between picks the rotation merely restarts from a nearby position.
 *
 * One pass over the candidates, no allocation.
 *
 * @example
 * ```ts
 * const balancer = new LeastConnectionsBalancer();
 * const chosen = balancer.pick(candidates, {}); // the least loaded, per unit of weight
 * ```
 */
export class LeastConnectionsBalancer implements Balancer {
  /** Where the next scan starts: one past the previous winner. */
  #cursor = 0;

  pick(candidates: readonly PickCandidate[], _context?: PickContext): PickCandidate | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    // The list may have shrunk since the last pick; wrap rather than index past the end.
    const start = this.#cursor < n ? this.#cursor : this.#cursor % n;
    let best = -1;
    let bestLoad = Infinity;
    for (let i = 0; i < n; i++) {
      let index = start + i;
      if (index >= n) index -= n;
      const candidate = candidates[index]!;
      const weight = weightOf(candidate);
      if (!(weight > 0)) continue;
      const load = candidate.active / weight;
      // Strictly less: among equals the first in scan order wins, and the scan
      // order rotates, which is what makes ties round-robin.
      if (load < bestLoad) {
        bestLoad = load;
        best = index;
      }
    }
    if (best < 0) return undefined;
    this.#cursor = best + 1;
    return candidates[best];
  }
}
