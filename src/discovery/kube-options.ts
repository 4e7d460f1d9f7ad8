/**
 * Options shared by the Kubernetes source and the intent watcher: where the
 * API is, how to reach it, and how patiently.
 *
 * @module
 */
import { systemClock, type Clock } from '../clock.js';
import * as v from '../validate.js';
import type { KubeAccess } from './kubeconfig.js';
import type { KubeTransportPool } from './kube-transport.js';
import { MAX_TIMER_MS } from '../limits.js';

/** How to reach the Kubernetes API. */
export interface KubeConnectionOptions {
  /**
   * Credentials and server: from {@link loadKubeconfig} or
   * {@link inClusterAccess}, or a function that loads them at `start()`.
   */
  readonly access: KubeAccess | (() => Promise<KubeAccess>);
  /** Send requests through this pool's healthy backends first. */
  readonly pool?: KubeTransportPool | undefined;
  /**
   * Addresses (`HOST:PORT`) to dial directly when the pool route fails:
   * the bootstrap list. Discovered addresses are tried after them.
   * @default []
   */
  readonly bootstrap?: readonly string[] | undefined;
  /** Time to connect (TCP and TLS) per route, in ms. @default 5000 */
  readonly connectTimeout?: number | undefined;
  /**
   * A watch that carries nothing (no event, no bookmark) this long is
   * presumed cut, dropped, and the collection listed again, in ms.
   * @default 120000
   */
  readonly watchSilence?: number | undefined;
  /** First retry delay after a failure, in ms (doubled per failure, with jitter). @default 500 */
  readonly backoffBase?: number | undefined;
  /** Longest retry delay, in ms. @default 30000 */
  readonly backoffMax?: number | undefined;
  /** @default systemClock */
  readonly clock?: Clock | undefined;
  /** Jitter source in [0, 1). @default Math.random */
  readonly random?: (() => number) | undefined;
}

/** @internal */
export interface ResolvedKubeConnectionOptions {
  readonly access: KubeAccess | (() => Promise<KubeAccess>);
  readonly pool: KubeTransportPool | undefined;
  readonly bootstrap: readonly { host: string; port: number }[];
  readonly connectTimeout: number;
  readonly watchSilence: number;
  readonly backoffBase: number;
  readonly backoffMax: number;
  readonly clock: Clock;
  readonly random: () => number;
}

/** @internal */
export const kubeConnectionKeys = ['access', 'pool', 'bootstrap', 'connectTimeout', 'watchSilence', 'backoffBase', 'backoffMax', 'clock', 'random'] as const;


/** @internal */
export function resolveKubeConnectionOptions(o: KubeConnectionOptions): ResolvedKubeConnectionOptions {
  if (typeof o.access !== 'function') {
    v.object('access', o.access);
    v.string('access.server', o.access.server);
  }
  const bootstrap: readonly string[] = o.bootstrap ?? [];
  if (!Array.isArray(bootstrap)) throw v.invalid('bootstrap', 'an array of HOST:PORT', bootstrap);
  const backoffBase = v.integer('backoffBase', o.backoffBase ?? 500, 1, MAX_TIMER_MS);
  return {
    access: o.access,
    pool: o.pool,
    bootstrap: bootstrap.map((b, i) => parseAddress(v.string(`bootstrap[${i}]`, b), `bootstrap[${i}]`)),
    connectTimeout: v.integer('connectTimeout', o.connectTimeout ?? 5000, 1, MAX_TIMER_MS),
    watchSilence: v.integer('watchSilence', o.watchSilence ?? 120_000, 1, MAX_TIMER_MS),
    backoffBase,
    backoffMax: v.integer('backoffMax', o.backoffMax ?? 30_000, backoffBase, MAX_TIMER_MS),
    clock: o.clock ?? systemClock,
    random: o.random === undefined ? Math.random : v.func<() => number>('random', o.random),
  };
}

function parseAddress(text: string, name: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw v.invalid(name, 'HOST:PORT', text);
  return { host: (m[1] ?? m[2])!, port };
}
