/**
 * The balancer's lines about rebalancing: one when moves start (where the
 * connections are), one if they pause (why), and one summary when the
 * backends are balanced again (how many moved, from where, how long it took,
 * where they are now). Moves are never logged one by one.
 *
 * @module
 */
import type { Backend, PoolMember, Rebalancer, UpstreamPool } from '../index.js';

function spread(pool: UpstreamPool): string {
  return pool
    .backends()
    .map((b) => `${b.id} ${pool.status(b.id)?.members ?? 0}`)
    .join(', ');
}

/**
 * Follows a {@link Rebalancer} and writes its summary lines.
 *
 * @example
 * ```ts
 * const rebalanceLog = new RebalanceLog(pool, rebalancer, (line) => log.info(line));
 * // on shutdown:
 * rebalanceLog.close();
 * ```
 */
export class RebalanceLog {
  readonly #pool: UpstreamPool;
  readonly #rebalancer: Rebalancer;
  readonly #write: (line: string) => void;
  readonly #now: () => number;
  /** Moves of the episode under way, by the backend they left. */
  readonly #moved = new Map<string, number>();
  #startedAt = 0;

  readonly #onStarted = (): void => {
    this.#moved.clear();
    this.#startedAt = this.#now();
    this.#write(`rebalancing: ${spread(this.#pool)}`);
  };
  readonly #onMoved = (_member: PoolMember, from: Backend): void => {
    this.#moved.set(from.id, (this.#moved.get(from.id) ?? 0) + 1);
  };
  readonly #onPaused = (reason: string): void => this.#write(`rebalancing paused: ${reason}`);
  readonly #onBalanced = (): void => this.#summary('rebalanced');

  constructor(pool: UpstreamPool, rebalancer: Rebalancer, write: (line: string) => void, now: () => number = Date.now) {
    this.#pool = pool;
    this.#rebalancer = rebalancer;
    this.#write = write;
    this.#now = now;
    rebalancer.on('started', this.#onStarted);
    rebalancer.on('moved', this.#onMoved);
    rebalancer.on('paused', this.#onPaused);
    rebalancer.on('balanced', this.#onBalanced);
  }

  /** Stops following; moves of an unfinished episode are summed up. Idempotent. */
  close(): void {
    const r = this.#rebalancer;
    r.off('started', this.#onStarted);
    r.off('moved', this.#onMoved);
    r.off('paused', this.#onPaused);
    r.off('balanced', this.#onBalanced);
    if (this.#moved.size > 0) this.#summary('rebalancing stopped');
  }

  #summary(what: string): void {
    let total = 0;
    for (const n of this.#moved.values()) total += n;
    const from = Array.from(this.#moved, ([id, n]) => `${id} ${n}`).join(', ');
    const seconds = ((this.#now() - this.#startedAt) / 1000).toFixed(1);
    this.#write(`${what}: ${total} connection${total === 1 ? '' : 's'} moved${total > 0 ? ` (from ${from})` : ''} in ${seconds} s; now ${spread(this.#pool)}`);
    this.#moved.clear();
  }
}
