/**
 * The `--config` file: a JSON object whose keys are the flags' names, read
 * into one {@link Given} per setting (checked later, as the flags are). An
 * unknown key is refused, with a hint for a near miss (`backends`,
 * `connectTimeout`).
 *
 * @module
 */
import { dirname, resolve as resolvePath } from 'node:path';
import { ConfigError, isKey, type ConfigKey, type ParseIo } from './config.js';
import { show, type Given } from './config-values.js';

/** A typo'd config key gets a hint. */
const aliases: Readonly<Record<string, ConfigKey>> = Object.freeze({
  backends: 'backend',
  connectTimeout: 'connect-timeout',
  queueTimeout: 'queue-timeout',
  drainTimeout: 'drain-timeout',
  adminTokenFile: 'admin-token-file',
  balancer: 'strategy',
  slowStart: 'slow-start',
  rebalanceRate: 'rebalance-rate',
  rebalanceTolerance: 'rebalance-tolerance',
  rebalance: 'no-rebalance',
  writeStallTimeout: 'write-stall-timeout',
  leavingGrace: 'leaving-grace',
  allDown: 'all-down',
  maxClients: 'max-clients',
  adminSocket: 'admin-socket',
  statusAllowedHosts: 'status-allowed-hosts',
  accessLog: 'access-log',
  dnsServer: 'dns-server',
  discoveryState: 'discovery-state',
  discovery: 'discover',
});

/** Reads and parses the config file at `path`: one {@link Given} per setting it sets. */
export function readConfigFile(path: string, io: ParseIo): Map<ConfigKey, Given> {
  const label = path;
  let source: string;
  try {
    source = io.readFile(path);
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    throw new ConfigError(`--config ${path}: cannot read it (${typeof code === 'string' ? code : err instanceof Error ? err.message : String(err)})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (err) {
    throw new ConfigError(`--config ${path}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`--config ${path}: expected a JSON object of settings, got ${show(parsed)}`);
  }
  const out = new Map<ConfigKey, Given>();
  const baseDir = dirname(resolvePath(path));
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === 'config') throw new ConfigError(`${label}: "config" cannot be set in a config file`);
    if (name === 'help' || name === 'version') throw new ConfigError(`${label}: ${show(name)} cannot be set in a config file`);
    if (!isKey(name)) {
      const hint = aliases[name];
      throw new ConfigError(`${label}: unknown setting ${show(name)}${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`);
    }
    out.set(name, { value, label: `${label}: "${name}"`, fromFile: true, baseDir });
  }
  return out;
}
