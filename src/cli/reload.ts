/**
 * What a reload (SIGHUP, `POST /api/reload`) is made of: the backend list a
 * config asks for, the settings that only a restart can change, and the error
 * a refused reload carries. The reload itself lives in the balancer.
 *
 * @module
 */
import type { BackendSpec } from '../index.js';
import type { BalancerConfig, ConfigKey } from './config.js';

/** Why a reload was refused; the running config stays as it was. */
export class ReloadError extends Error {
  /**
   * - `NO_CONFIG_FILE`: the balancer was started without `--config`; there is nothing to re-read.
   * - `CONFIG_INVALID`: the file (or a file it names) cannot be read or is not valid.
   */
  readonly code: 'NO_CONFIG_FILE' | 'CONFIG_INVALID';

  constructor(code: ReloadError['code'], message: string) {
    super(message.replace(/[\r\n]+/g, ' '));
    this.name = 'ReloadError';
    this.code = code;
  }
}

/** What a reload did: the ids per outcome of `pool.reconcile`, and the settings left for a restart. */
export interface ReloadSummary {
  readonly added: readonly string[];
  readonly updated: readonly string[];
  /** Draining, removed at the drain deadline or when empty. */
  readonly removed: readonly string[];
  /** Address changed: removed at once and added anew. */
  readonly replaced: readonly string[];
  readonly unchanged: readonly string[];
  /** Settings whose new value differs but needs a restart (`listen`, `interval`...), as config keys. */
  readonly restartNeeded: readonly string[];
}

/** The pool specs of a config's backends: id, address and, when the file gives them, tunables. */
export function backendSpecs(config: Pick<BalancerConfig, 'backends'>): BackendSpec[] {
  return config.backends.map((b) => ({
    host: b.host,
    port: b.port,
    id: b.id,
    ...(b.weight !== undefined && { weight: b.weight }),
    ...(b.maxConnections !== undefined && { maxConnections: b.maxConnections }),
  }));
}

/**
 * What a reload does with each setting, by config key: `live` applies it to
 * the running balancer; `restart` reports it as "not applied until a
 * restart" in the log line and the API's answer when its value changed.
 * Typed over every key, so a new setting cannot ship without a decision.
 */
export const reloadPolicy: Readonly<Record<ConfigKey, ReloadPolicy>> = Object.freeze({
  // The pool is reconciled with the list: added, updated, drained, replaced.
  backend: { applies: 'live', value: (c) => c.backends },
  // The next drain (SIGTERM, reload, removal) uses the new deadline.
  'drain-timeout': { applies: 'live', value: (c) => c.drainTimeout },
  // The token is re-read and checked (mode, length) on every reload.
  'admin-token-file': { applies: 'live', value: (c) => c.adminTokenFile },
  // Bound sockets and the processes holding them.
  listen: { applies: 'restart', value: (c) => c.listen },
  status: { applies: 'restart', value: (c) => c.status },
  // The log file is opened once, at start.
  'access-log': { applies: 'restart', value: (c) => c.accessLog },
  'admin-socket': { applies: 'restart', value: (c) => c.adminSocket },
  'status-allowed-hosts': { applies: 'restart', value: (c) => c.statusAllowedHosts },
  workers: { applies: 'restart', value: (c) => c.workers },
  // The probe's check and its TLS material are built once.
  check: { applies: 'restart', value: (c) => c.check },
  ca: { applies: 'restart', value: (c) => c.ca },
  cert: { applies: 'restart', value: (c) => c.cert },
  key: { applies: 'restart', value: (c) => c.key },
  insecure: { applies: 'restart', value: (c) => c.insecure },
  servername: { applies: 'restart', value: (c) => c.servername },
  interval: { applies: 'restart', value: (c) => c.interval },
  timeout: { applies: 'restart', value: (c) => c.timeout },
  rise: { applies: 'restart', value: (c) => c.rise },
  fall: { applies: 'restart', value: (c) => c.fall },
  // Pool options: the library takes them at construction only.
  strategy: { applies: 'restart', value: (c) => c.strategy },
  'connect-timeout': { applies: 'restart', value: (c) => c.connectTimeout },
  retries: { applies: 'restart', value: (c) => c.retries },
  'queue-timeout': { applies: 'restart', value: (c) => c.queueTimeout },
  'slow-start': { applies: 'restart', value: (c) => c.slowStart },
  'write-stall-timeout': { applies: 'restart', value: (c) => c.writeStallTimeout },
  'all-down': { applies: 'restart', value: (c) => c.allDown },
  'leaving-grace': { applies: 'restart', value: (c) => c.leavingGrace },
  // Each process sizes its accept cap from its descriptor limit at start.
  'max-clients': { applies: 'restart', value: (c) => c.maxClients },
  // The rebalancer (in every worker with --workers) is built once.
  'no-rebalance': { applies: 'restart', value: (c) => c.rebalance },
  'rebalance-rate': { applies: 'restart', value: (c) => c.rebalanceRate },
  'rebalance-tolerance': { applies: 'restart', value: (c) => c.rebalanceTolerance },
  // Discovery sources and the intent watcher are built once, at start.
  discover: { applies: 'restart', value: (c) => c.discover },
  'dns-server': { applies: 'restart', value: (c) => c.dnsServer },
  kubeconfig: { applies: 'restart', value: (c) => c.kubeconfig },
  'discovery-state': { applies: 'restart', value: (c) => c.discoveryState },
  intent: { applies: 'restart', value: (c) => c.intent },
});

/** How a reload treats one setting: applied `live`, or reported as needing a `restart`; `value` reads it from a config. */
export interface ReloadPolicy {
  readonly applies: 'live' | 'restart';
  readonly value: (config: BalancerConfig) => unknown;
}

/** The restart-only settings whose value differs between two configs. */
export function restartNeeded(running: BalancerConfig, next: BalancerConfig): string[] {
  return (Object.entries(reloadPolicy) as [ConfigKey, ReloadPolicy][])
    .filter(([, p]) => p.applies === 'restart' && JSON.stringify(p.value(running)) !== JSON.stringify(p.value(next)))
    .map(([key]) => key);
}
