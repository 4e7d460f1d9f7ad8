/**
 * Consistent hashing by weighted rendezvous (highest random weight) hashing.
 *
 * @module
 */
import { weightOf, type Balancer, type PickCandidate, type PickContext } from './balancer.js';
import { RoundRobinBalancer } from './round-robin.js';

/** Arbitrary fixed seed, so a key maps to the same backend in every process. */
const keySeed = 0x9747b28c;

/** 2^32: maps a 32-bit hash into (0, 1) with `(h + 0.5) / 2^32`. */
const two32 = 4294967296;

/**
 * MurmurHash3 (x86, 32-bit) over the UTF-16 code units of `text`. Hashing code
 * units rather than UTF-8 bytes avoids encoding (and allocating) anything; the
 * result is only ever compared with other results of this same function.
 */
function murmur32(text: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < text.length; i++) {
    let k = Math.imul(text.charCodeAt(i), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= text.length;
  // Final avalanche, so keys that differ in one character land far apart.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Consistent hashing of `context.key` by **weighted rendezvous hashing**: every
 * candidate gets the score `-weight / ln(u)`, where `u` in (0, 1) is a hash of
 * the key and the backend id, and the highest score wins. A backend with twice
 * the weight wins twice as many keys.
 *
 * Why rendezvous rather than a ring: a key's winner depends only on the scores
 * of the candidates present, so when a backend is removed or marked down, only
 * the keys it was winning move (each to its runner-up), every other key stays
 * put, and when it comes back exactly those keys return. There is no ring to
 * build, rebuild, or keep in sync with the pool; the cost is O(n) hashing per
 * pick, which for the handful of backends a proxy fronts is cheaper than a
 * ring lookup is to maintain. It also works with the pool's filtered candidate
 * lists for free: a backend at its connection cap or already tried is simply
 * absent, and the key goes to its next choice.
 *
 * The key is `context.key`, else the client's remote address (so one client
 * sticks to one backend). With neither (an agent request without a key, or a
 * client socket already closed), the connection is placed by smooth weighted
 * round-robin instead. Weight `0` candidates are never picked; if every
 * candidate has weight `0` it picks none. An exact score tie (rare: 32-bit
 * hashes) goes to the smaller id, so the result never depends on list order.
 *
 * No allocation per pick.
 *
 * @example
 * ```ts
 * const balancer = new HashBalancer();
 * balancer.pick(candidates, { key: 'tenant-42' }); // the same backend every time
 * balancer.pick(candidates, { client: socket });   // keyed by socket.remoteAddress
 * ```
 */
export class HashBalancer implements Balancer {
  readonly #keyless = new RoundRobinBalancer();

  pick(candidates: readonly PickCandidate[], context: PickContext = {}): PickCandidate | undefined {
    const key = context.key ?? context.client?.remoteAddress;
    if (key === undefined) return this.#keyless.pick(candidates, context);
    const seed = murmur32(key, keySeed);
    let best: PickCandidate | undefined;
    let bestScore = -Infinity;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i]!;
      const { id } = candidate.backend;
      const weight = weightOf(candidate);
      if (!(weight > 0)) continue;
      // (h + 0.5) / 2^32 is strictly inside (0, 1), so ln(u) < 0 and is finite.
      const u = (murmur32(id, seed) + 0.5) / two32;
      const score = -weight / Math.log(u);
      if (score > bestScore || (score === bestScore && best !== undefined && id < best.backend.id)) {
        best = candidate;
        bestScore = score;
      }
    }
    return best;
  }
}
