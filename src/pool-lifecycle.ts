/**
 * A pool's life: `open`, then `closing` from the first `close()` or
 * `destroy()`, then `closed` once every member is gone. A graceful close
 * asks every member to close and destroys what is left at its deadline; a
 * destroy does that at once. Both are idempotent and share one promise.
 *
 * @module
 * @internal
 */
import createDebug from 'debug';
import type { ReadonlyBackendEntry } from './backend-entry.js';
import type { Clock } from './clock.js';
import { MAX_TIMER_MS } from './limits.js';
import type { MemberRegistry } from './member-registry.js';
import type { PoolState } from './pool-stats.js';

const log = createDebug('failover-proxy:pool');

/** How long past the pool's close deadline a member's own close deadline falls (the pool's comes first). */
const MEMBER_CLOSE_MARGIN = 1000;

/** What the lifecycle acts on. @internal */
export interface LifecycleParts {
  readonly clock: Clock;
  readonly registry: MemberRegistry;
  readonly entries: ReadonlyMap<string, ReadonlyBackendEntry>;
  /** Closing begins: stop what starts new work (placements, evacuations). */
  closing(): void;
  /** No member is left to watch (or all are being destroyed): stop watching them (write stalls). */
  quiet(): void;
  /** The pool is closed: end what is left (drains) and say so. */
  closed(): void;
}

/** @internal */
export class PoolLifecycle {
  #state: PoolState = 'open';
  #done: Promise<void> | undefined;
  #idle: (() => void) | undefined;
  readonly #parts: LifecycleParts;

  constructor(parts: LifecycleParts) {
    this.#parts = parts;
  }

  get state(): PoolState {
    return this.#state;
  }

  /** Whether a close or destroy was called. */
  get closing(): boolean {
    return this.#state !== 'open';
  }

  /** Starts a graceful close with `timeout` ms for the members, or joins the one under way. */
  close(timeout: () => number): Promise<void> {
    return (this.#done ??= this.#shutdown(timeout()));
  }

  /** Destroys every member at once and closes; cuts a graceful close short. */
  destroy(): Promise<void> {
    this.#begin();
    const { registry, entries } = this.#parts;
    this.#parts.quiet();
    registry.destroyAll(entries.values(), 'pool-destroyed', false);
    return (this.#done ??= this.#shutdown(0));
  }

  /** The registry is empty: a close waiting for that goes on. */
  idle(): void {
    this.#idle?.();
  }

  #begin(): void {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    log('open -> closing');
    this.#parts.closing();
  }

  async #shutdown(timeout: number): Promise<void> {
    this.#begin();
    const { registry, entries, clock } = this.#parts;
    // Ask first: what can leave now (idle agent sockets) leaves before we
    // count. A member's own deadline is set past the pool's, so what is still
    // open at the pool's deadline is counted there, as `pool-closed`.
    const memberTimeout = Math.min(timeout + MEMBER_CLOSE_MARGIN, MAX_TIMER_MS);
    for (const entry of entries.values()) {
      if (entry.members.size > 0) registry.closeAll(entry, 'pool-closing', memberTimeout);
    }
    if (registry.active > 0) {
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
        timer = clock.setTimeout(() => registry.destroyAll(entries.values(), 'pool-closed', false), timeout);
      });
      clock.clearTimeout(timer);
      this.#idle = undefined;
    }
    this.#parts.quiet();
    await registry.swept();
    this.#state = 'closed';
    log('closing -> closed');
    this.#parts.closed();
  }
}
