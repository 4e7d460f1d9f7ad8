/**
 * The two axes of a backend's state, as HAProxy keeps them apart: **health**
 * (what checks and traffic say) and **admin** (what an operator wants). A
 * backend takes new connections only when it is `up` and `active`. Neither
 * axis overwrites the other: a drain survives failures and recoveries, a
 * verdict recorded in maintenance is there when the operator makes it ready.
 *
 * @module
 */
import type { CheckLayer } from './errors.js';

/**
 * What checks and traffic say about a backend.
 * - `unknown`: not checked yet (`initialState: 'probe'`); not picked.
 * - `up`: healthy.
 * - `leaving`: it answers, says it is not ready, and still serves (a
 *   kube-apiserver shutting down gracefully: `/readyz` reports `[-]shutdown`).
 *   Not picked; its connections stay for the backend to close, and what is
 *   left after the pool's `leavingGrace` is moved at `leavingRate`. Envoy's
 *   DRAINING health status. Named `leaving`, not `draining`, because
 *   `draining` is the admin axis' word (an operator's drain) and the derived
 *   {@link BackendState} must tell the two apart.
 * - `down`: unhealthy; its connections were torn down when it went down.
 */
export type BackendHealth = 'unknown' | 'up' | 'leaving' | 'down';

/**
 * What an operator wants of a backend.
 * - `active`: serve (when healthy).
 * - `draining`: take no new connections; existing ones may finish until a deadline.
 * - `maintenance`: out of service; its connections were closed; verdicts are recorded but not acted on.
 */
export type AdminState = 'active' | 'draining' | 'maintenance';

/**
 * One word for logs, derived from both axes: `maintenance` wins, then a
 * `health` other than `up` (`down`/`leaving`/`unknown`), then `draining`
 * (the admin drain), else `up`.
 */
export type BackendState = 'up' | 'down' | 'unknown' | 'leaving' | 'draining' | 'maintenance';

/** Who set a backend's health. */
export type HealthSource = 'probe' | 'passive' | 'operator' | 'pool';

/**
 * Why a backend's health is what it is: plain, JSON-safe data, not a string
 * to parse.
 */
export interface HealthCause {
  /** Who decided: a probe check, passive traffic (failed dials, write stalls), an operator call, or the pool itself (a new backend). */
  readonly source: HealthSource;
  /** A stable code: an error code (`PROBE_TIMEOUT`, `CONNECT_FAILED`), or a reason (`probe-passed`, `probe-leaving`, `marked-down`, `added`, `awaiting-probe`). */
  readonly code: string;
  /** The layer a failed check failed at, when a check failed. */
  readonly layer?: CheckLayer | undefined;
  /** Human-readable detail. */
  readonly message: string;
  /** How long the deciding check took, in ms, when a check decided. */
  readonly durationMs?: number | undefined;
  /** Clock time the cause was recorded (ms since epoch). */
  readonly at: number;
}

/** Where a backend stands: both axes, the derived word, and why. */
export interface BackendStatus {
  readonly health: BackendHealth;
  readonly admin: AdminState;
  /** Derived from both axes, for logs. */
  readonly state: BackendState;
  /** Why the health is what it is. */
  readonly cause: HealthCause;
  /** Clock time of the last change of either axis (ms since epoch). */
  readonly since: number;
  /** Clock time health last changed. */
  readonly healthSince: number;
  /** Clock time admin last changed. */
  readonly adminSince: number;
  /** The reason given with the last change of either axis. */
  readonly reason: string;
  /** Whether the backend takes new connections now (`up` and `active`, weight above 0). */
  readonly eligible: boolean;
  /** Clock time it last became eligible; 0 if never. */
  readonly eligibleSince: number;
  /** Members registered under it now. */
  readonly members: number;
  /** The weight pickers use now: `weight`, ramped up during slow start. */
  readonly effectiveWeight: number;
  /** Whether slow start is under way. */
  readonly warming: boolean;
}

/** The one-word state of a pair of axes. */
export function deriveState(health: BackendHealth, admin: AdminState): BackendState {
  if (admin === 'maintenance') return 'maintenance';
  if (health !== 'up') return health;
  return admin === 'draining' ? 'draining' : 'up';
}
