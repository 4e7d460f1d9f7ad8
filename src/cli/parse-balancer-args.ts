/**
 * The balancer's settings from its command line and, when it names one, its
 * `--config` file: flags override the file, `--backend` flags replace the
 * file's list, and everything is validated together into one frozen
 * {@link BalancerConfig}.
 *
 * {@link parseBalancerArgs} is pure: the only I/O it needs, reading the config
 * file, is injected, so it can be unit-tested and fuzzed. Every problem is a
 * {@link ConfigError} whose message is one line naming the flag (or config
 * key), what was expected and what was given; the entry point prints it and
 * exits 2.
 *
 * @module
 */
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import type { BalancerName } from '../index.js';
import { formatAddress, parseAddress, validHost } from './address.js';
import { readCommandLine } from './command-line.js';
import { ConfigError, balancerDefaults, type BackendAddress, type BalancerConfig, type ConfigKey, type ParseIo, type ParseResult } from './config.js';
import { readConfigFile } from './config-file.js';
import {
  address,
  backendList,
  check,
  decimal,
  discoverList,
  fail,
  file,
  flag,
  hostList,
  integer,
  show,
  socketPath,
  text,
  type Given,
} from './config-values.js';
import { MAX_MS } from './limits.js';

const strategies: readonly BalancerName[] = ['least-connections', 'round-robin', 'random-two', 'hash'];
/** More clients than this is a typo: it would take 20 million descriptors. */
const MAX_CLIENTS = 10_000_000;
/** More processes than this is a typo, not a machine. */
const MAX_WORKERS = 256;

/**
 * Parses the balancer's command line (without `node` and the script) and, when
 * it names one, its `--config` file, into a validated {@link BalancerConfig}.
 * Flags override the file; `--backend` flags replace the file's list.
 *
 * @throws {ConfigError} with a one-line message for anything wrong.
 * @example
 * ```ts
 * const result = parseBalancerArgs(['--backend', '10.0.0.1:6443', '--interval', '500'], {
 *   readFile: (path) => readFileSync(path, 'utf8'),
 * });
 * if (result.kind === 'run') console.log(result.config.interval); // 500
 * ```
 */
export function parseBalancerArgs(argv: readonly string[], io: ParseIo): ParseResult {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  if (argv.includes('--version')) return { kind: 'version' };
  const line = readCommandLine(argv);
  const settings = line.configPath === undefined ? new Map<ConfigKey, Given>() : readConfigFile(line.configPath, io);
  const pick = (key: ConfigKey): Given | undefined => line.flags.get(key) ?? settings.get(key);
  const discoverGiven = line.discover.length > 0 ? line.discover : settings.has('discover') ? [settings.get('discover')!] : [];
  return { kind: 'run', config: validate(pick, line.backends, settings.get('backend'), discoverGiven) };
}

function validate(
  pick: (key: ConfigKey) => Given | undefined,
  backendFlags: readonly Given[],
  fileBackends: Given | undefined,
  discoverGiven: readonly Given[] = [],
): BalancerConfig {
  const d = balancerDefaults;
  const ms = (key: ConfigKey, fallback: number, min = 1): number => {
    const given = pick(key);
    return given === undefined ? fallback : integer(given, min, MAX_MS, ' (milliseconds)');
  };
  const count = (key: ConfigKey, fallback: number, min: number, max: number): number => {
    const given = pick(key);
    return given === undefined ? fallback : integer(given, min, max, '');
  };
  const optional = <T>(key: ConfigKey, parse: (given: Given) => T): T | undefined => {
    const given = pick(key);
    return given === undefined ? undefined : parse(given);
  };

  const listenGiven = pick('listen');
  const listen = listenGiven === undefined ? d.listen : address(listenGiven, { minPort: 0 }, 'HOST:PORT (port 0-65535)');

  const backends = backendFlags.length > 0 ? backendFlags.flatMap(backendList) : fileBackends === undefined ? [] : backendList(fileBackends);
  const discover = discoverGiven.flatMap(discoverList);
  if (backends.length === 0 && discover.length === 0) throw new ConfigError('no backend: give at least one --backend HOST:PORT or --discover SOURCE (see --help)');
  if (new Set(discover.map((d) => JSON.stringify(d))).size !== discover.length) throw new ConfigError(`${discoverGiven[0]!.label}: a source given twice`);
  const seen = new Map<string, BackendAddress>();
  for (const b of backends) {
    const address = formatAddress(b);
    for (const other of seen.values()) {
      if (other.id === b.id) throw new ConfigError(`--backend: ${show(b.id)} given twice`);
      if (formatAddress(other) === address) throw new ConfigError(`--backend: ${show(address)} given twice`);
    }
    seen.set(b.id, b);
  }

  const checkConfig = optional('check', check) ?? d.check;
  const ca = optional('ca', file);
  const cert = optional('cert', file);
  const key = optional('key', file);
  const insecure = optional('insecure', flag) ?? d.insecure;
  const servername = optional('servername', (given) => {
    const name = text(given, 'a DNS name');
    return validHost(name) && isIP(name) === 0 ? name : fail(given, 'a DNS name');
  });
  const tlsCheck = checkConfig.type === 'https' || checkConfig.type === 'tls';
  for (const [name, value] of [
    ['ca', ca],
    ['cert', cert],
    ['key', key],
    ['insecure', insecure || undefined],
    ['servername', servername],
  ] as const) {
    if (value !== undefined && !tlsCheck) {
      throw new ConfigError(`${pick(name)!.label} only applies to the https and tls checks, not --check ${checkConfig.type}`);
    }
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError(cert === undefined ? '--key needs --cert (the client certificate)' : '--cert needs --key (its private key)');
  }
  if (insecure && ca !== undefined) {
    throw new ConfigError('--insecure and --ca contradict each other: with --insecure nothing is verified against the CA');
  }

  const strategy =
    optional('strategy', (given) => {
      const name = text(given, strategies.join(' | '));
      return (strategies as readonly string[]).includes(name) ? (name as BalancerName) : fail(given, strategies.join(' | '));
    }) ?? d.strategy;

  const status = optional('status', (given) => address(given, { minPort: 0, loopbackDefault: true }, 'HOST:PORT or PORT (port 0-65535)'));

  const interval = ms('interval', d.interval);
  // As the probe does: an unset timeout never exceeds a short interval.
  const timeout = ms('timeout', Math.min(d.timeout, interval));
  if (timeout > interval) {
    // The probe refuses it too: a check slower than its period has no period.
    throw new ConfigError(`${pick('timeout')!.label}: expected at most the interval (${interval} ms), got ${timeout}`);
  }

  const allDown =
    optional('all-down', (given) => {
      const policy = text(given, 'queue | fail-open');
      return policy === 'queue' || policy === 'fail-open' ? policy : fail(given, 'queue | fail-open');
    }) ?? d.allDown;
  const fall = count('fall', d.fall, 1, 1000);
  // Above the probe's own detection time, so the probe normally acts first;
  // 0 turns it off, and anything else must be at least the pool's 100 ms.
  const writeStallTimeout = ms('write-stall-timeout', Math.min(MAX_MS, interval * fall + timeout + d.writeStallMargin), 0);
  if (writeStallTimeout > 0 && writeStallTimeout < 100) fail(pick('write-stall-timeout')!, '0 (off) or an integer from 100 to 2147483647 (milliseconds)');

  const dnsServer = optional('dns-server', (given) => {
    const raw = text(given, 'HOST or HOST:PORT (an IP address)');
    const parsed = isIP(raw) !== 0 ? { host: raw, port: 53 } : parseAddress(raw);
    return parsed !== undefined && isIP(parsed.host) !== 0 ? Object.freeze(parsed) : fail(given, 'HOST or HOST:PORT (an IP address)');
  });
  const kubeconfig = optional('kubeconfig', file);
  const discoveryState = optional('discovery-state', file);
  const intent = optional('intent', (given) => {
    const raw = text(given, 'NAMESPACE/NAME or default');
    if (raw === 'default') return Object.freeze({ namespace: 'kube-system', name: 'failover-proxy-intent' });
    const m = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$/.exec(raw);
    return m ? Object.freeze({ namespace: m[1]!, name: m[3]! }) : fail(given, 'NAMESPACE/NAME or default');
  });
  const hasDns = discover.some((d) => d.kind !== 'kubernetes');
  const hasKube = discover.some((d) => d.kind === 'kubernetes');
  if (dnsServer !== undefined && !hasDns) throw new ConfigError(`${pick('dns-server')!.label} needs --discover dns:… or srv:…`);
  if (kubeconfig !== undefined && !hasKube && intent === undefined) throw new ConfigError(`${pick('kubeconfig')!.label} needs --discover kubernetes or --intent`);
  if (discoveryState !== undefined && discover.length === 0) throw new ConfigError(`${pick('discovery-state')!.label} needs --discover`);

  const config: BalancerConfig = Object.freeze({
    discover: Object.freeze(discover),
    dnsServer,
    kubeconfig,
    discoveryState,
    intent,
    listen: Object.freeze(listen),
    backends: Object.freeze(backends),
    check: checkConfig,
    ca,
    cert,
    key,
    insecure,
    servername,
    interval,
    timeout,
    rise: count('rise', d.rise, 1, 1000),
    fall,
    strategy,
    connectTimeout: ms('connect-timeout', d.connectTimeout),
    retries: count('retries', d.retries, 0, 1000),
    queueTimeout: ms('queue-timeout', d.queueTimeout),
    status: status === undefined ? undefined : Object.freeze(status),
    drainTimeout: ms('drain-timeout', d.drainTimeout, 0),
    adminTokenFile: optional('admin-token-file', file),
    slowStart: ms('slow-start', d.slowStart, 0),
    // --no-rebalance wins over the rebalance-* settings, which are then unused.
    rebalance: !(optional('no-rebalance', flag) ?? !d.rebalance),
    rebalanceRate: optional('rebalance-rate', (given) => decimal(given, 0.01, 10_000)) ?? d.rebalanceRate,
    rebalanceTolerance: optional('rebalance-tolerance', (given) => decimal(given, 0, 10)) ?? d.rebalanceTolerance,
    writeStallTimeout,
    leavingGrace: ms('leaving-grace', d.leavingGrace, 0),
    allDown,
    workers: optional('workers', (given) => (given.value === 'auto' ? availableParallelism() : integer(given, 1, MAX_WORKERS, ' or auto'))) ?? d.workers,
    maxClients: optional('max-clients', (given) => (given.value === 'auto' ? undefined : integer(given, 1, MAX_CLIENTS, ' or auto'))),
    adminSocket: optional('admin-socket', socketPath),
    statusAllowedHosts: Object.freeze(optional('status-allowed-hosts', hostList) ?? []),
    accessLog: optional('access-log', (given) => (given.value === '-' ? '-' : file(given))),
  });
  if (config.workers > 1 && (config.discover.length > 0 || config.intent !== undefined)) {
    throw new ConfigError(`--workers ${config.workers}: discovery and --intent run in a single process for now (use --workers 1)`);
  }
  return config;
}
