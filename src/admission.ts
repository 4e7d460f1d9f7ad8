/**
 * The one admission rule: may this backend take this connection now? Pick,
 * the check after a dial and `register()` all ask it; they differ only in
 * the stage they ask at, which says what is already settled.
 *
 * @module
 * @internal
 */
import type { ReadonlyBackendEntry } from './backend-entry.js';

/**
 * When admission is asked:
 *
 * - `pick`: a new connection, before its dial. The backend must take new
 *   connections (health `up`, admin `active`, not removed, weight above 0;
 *   or, while failing open with nothing eligible, any active backend with
 *   weight), with room under its own `maxConnections`, and the pool below
 *   its pool-wide `maxConnections`.
 * - `dialled`: the same connection once its dial is done, right before its
 *   member is attached. Its slots were counted from the pick, so the caps are
 *   not asked again; the backend's state is, since it may have left service
 *   while the dial ran.
 * - `register`: a member built by hand around an upstream its caller already
 *   holds (`pool.register`). It is refused only when its backend no longer
 *   serves: health not `up`, in maintenance, or removed. A drain or weight 0
 *   stops new picks, not a connection that already exists; caps do not apply.
 *
 * @internal
 */
export type AdmissionStage = 'pick' | 'dialled' | 'register';

/** What the pool says about admission as a whole. @internal */
export interface PoolGate {
  /** The pool is closing or closed. */
  readonly closing: boolean;
  /** No backend is eligible and the pool's `allDown` policy is `fail-open`. */
  readonly failOpen: boolean;
  /** Members registered plus dials in flight, all backends. */
  readonly active: number;
  /** The pool-wide `maxConnections`. */
  readonly maxConnections: number;
}

/**
 * Why not: the pool is closing (`pool-closed`), at its pool-wide cap
 * (`pool-full`), the backend does not serve (`unavailable`), or it is at its
 * own cap (`backend-full`).
 *
 * @internal
 */
export type Refusal = 'pool-closed' | 'pool-full' | 'unavailable' | 'backend-full';

/**
 * The admission rule, in its two parts. Without an entry it asks the pool
 * (is it closing? at `pick`, is it at its pool-wide cap?); with one, the
 * backend at `stage`. A new connection asks both: the pool once per
 * attempt, each candidate backend as it is picked.
 *
 * Returns why not, or `undefined` when it may.
 *
 * @internal
 */
export function refusal(entry: ReadonlyBackendEntry | undefined, stage: AdmissionStage, gate: PoolGate): Refusal | undefined {
  if (entry === undefined) {
    if (gate.closing) return 'pool-closed';
    if (stage === 'pick' && gate.active >= gate.maxConnections) return 'pool-full';
    return undefined;
  }
  if (stage === 'register') {
    return entry.health !== 'up' || entry.admin === 'maintenance' || entry.removed ? 'unavailable' : undefined;
  }
  // While failing open (nothing is eligible), every active backend with weight serves.
  if (!entry.eligible && !(gate.failOpen && entry.admin === 'active' && !entry.removed && entry.backend.weight > 0)) return 'unavailable';
  if (stage === 'pick' && entry.active >= entry.backend.maxConnections) return 'backend-full';
  return undefined;
}
