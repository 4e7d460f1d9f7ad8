/**
 * What a reload (SIGHUP, `POST /api/reload`) is made of: the backend list a
 * config asks for, the settings that only a restart can change, and the error
 * a refused reload carries. The reload itself lives in the balancer.
 *
 * @module
 */
import type { BackendSpec } from '../../src/index.js';
import type { BalancerConfig } from './config.js';

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

/** Settings a running balancer cannot change, by config key. */
const restartOnly: readonly [key: string, get: (c: BalancerConfig) => unknown][] = [
  ['listen', (c) => c.listen],
  ['status', (c) => c.status],
  ['check', (c) => c.check],
  ['ca', (c) => c.ca],
  ['cert', (c) => c.cert],
  ['key', (c) => c.key],
  ['insecure', (c) => c.insecure],
  ['servername', (c) => c.servername],
  ['interval', (c) => c.interval],
  ['timeout', (c) => c.timeout],
  ['rise', (c) => c.rise],
  ['fall', (c) => c.fall],
  ['strategy', (c) => c.strategy],
  ['connect-timeout', (c) => c.connectTimeout],
  ['retries', (c) => c.retries],
  ['queue-timeout', (c) => c.queueTimeout],
  ['discover', (c) => c.discover],
  ['dns-server', (c) => c.dnsServer],
  ['kubeconfig', (c) => c.kubeconfig],
  ['discovery-state', (c) => c.discoveryState],
  ['intent', (c) => c.intent],
];

/** The restart-only settings whose value differs between two configs. */
export function restartNeeded(running: BalancerConfig, next: BalancerConfig): string[] {
  return restartOnly.filter(([, get]) => JSON.stringify(get(running)) !== JSON.stringify(get(next))).map(([key]) => key);
}
