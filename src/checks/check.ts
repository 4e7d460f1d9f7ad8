/**
 * What a health check is: an async function of a backend and an abort signal,
 * and the error it rejects with when that signal fires.
 *
 * @module
 */
import type { Backend } from '../backend.js';
import { CheckError } from '../errors.js';
import type { ConnectionSlot } from './connection-slot.js';

/**
 * What a check is given besides the backend.
 */
export interface CheckContext {
  /**
   * Fires when the check must stop (its timeout, or the probe stopping). A
   * check must then release everything it holds and settle.
   */
  readonly signal: AbortSignal;
  /**
   * Where the check may keep its connection to this backend for the next
   * check (the `http` and `https` checks do, unless `reuseConnection: false`).
   * {@link HealthProbe} gives one per backend; without it a check uses a
   * fresh connection and closes it.
   */
  readonly connection?: ConnectionSlot | undefined;
}

/**
 * What a check resolves with when the backend answered that it is leaving:
 * not ready, still serving (a graceful shutdown), e.g.
 * `{ outcome: 'leaving', message: '[-]shutdown failed: reason withheld' }`.
 * The probe records the outcome `leaving`; `message` becomes the cause's message.
 */
export interface LeavingAnswer {
  readonly outcome: 'leaving';
  readonly message: string;
}

/**
 * A health check: resolves when the backend passes (with nothing), or with
 * a {@link LeavingAnswer} when the backend answered that it is leaving;
 * rejects when it fails. Built-in checks reject with a {@link CheckError}
 * whose `layer` says where the failure happened.
 */
export type CheckFunction = (backend: Backend, context: CheckContext) => Promise<void | LeavingAnswer>;

/** Whether what a check resolved with says `leaving`. @internal */
export function isLeaving(value: unknown): value is LeavingAnswer {
  return typeof value === 'object' && value !== null && (value as { outcome?: unknown }).outcome === 'leaving';
}

/**
 * The error a check rejects with when its signal fires: the signal's reason
 * when that is already a `CheckError` (the probe aborts with its own
 * `PROBE_TIMEOUT` error), else a `timeout` error caused by the reason.
 *
 * @internal
 */
export function abortError(signal: AbortSignal): CheckError {
  const reason: unknown = signal.reason;
  return reason instanceof CheckError ? reason : new CheckError('timeout', 'The check was aborted', { cause: reason });
}
