/**
 * The reference balancer's settings: what they are ({@link BalancerConfig}),
 * their names (flags and config file keys alike), their defaults, and the
 * {@link ConfigError} every problem with them is. They are read by
 * `parseBalancerArgs` (parse-balancer-args.ts) from the command line
 * (command-line.ts) and a JSON config file (config-file.ts), value by value
 * (config-values.ts), merged (flags win) and validated into one frozen
 * {@link BalancerConfig}; `--help` is usage.ts.
 *
 * @module
 */
import type { BalancerName } from '../index.js';
import type { HostPort } from './address.js';

/** A bad flag, config file or value. `message` is one line, fit for stderr as is. */
export class ConfigError extends Error {
  /** The process exit code a CLI should use. */
  readonly exitCode = 2;

  constructor(message: string) {
    // Whatever reaches here must stay on one line, even a newline in a value.
    super(message.replace(/[\r\n]+/g, ' '));
    this.name = 'ConfigError';
  }
}

/** One `--backend`: its address and the id used in logs, metrics and `/stats`. */
export interface BackendAddress extends HostPort {
  /** `NAME` from `NAME=HOST:PORT`, else `HOST:PORT`. */
  readonly id: string;
  /** Relative weight (config file objects only); absent: 1. */
  readonly weight?: number;
  /** Per-backend connection cap (config file objects only); absent: none. */
  readonly maxConnections?: number;
}

/** The health check, as `--check` names it. */
export type CheckConfig =
  | { readonly type: 'https' | 'http'; readonly path: string }
  | { readonly type: 'tls' }
  | { readonly type: 'tcp' };

/** One `--discover`: where backends come from besides `--backend`. */
export type DiscoverSpec =
  | { readonly kind: 'dns'; readonly name: string; readonly port: number }
  | { readonly kind: 'srv'; readonly name: string }
  | { readonly kind: 'kubernetes' };

/** Every setting of the balancer, validated and with defaults filled in. */
export interface BalancerConfig {
  readonly listen: HostPort;
  readonly backends: readonly BackendAddress[];
  readonly check: CheckConfig;
  /** Path of the CA bundle the probe trusts (absolute when it came from a config file). */
  readonly ca: string | undefined;
  /** Path of the probe's client certificate. */
  readonly cert: string | undefined;
  /** Path of the probe's client key. */
  readonly key: string | undefined;
  /** Skip verification of the backends' certificates by the probe. */
  readonly insecure: boolean;
  /** SNI name (and verified name) for TLS checks; default: the backend's IP SANs. */
  readonly servername: string | undefined;
  readonly interval: number;
  readonly timeout: number;
  readonly rise: number;
  readonly fall: number;
  readonly strategy: BalancerName;
  readonly connectTimeout: number;
  readonly retries: number;
  readonly queueTimeout: number;
  /** Where `/stats` and `/metrics` are served; `undefined`: not served. */
  readonly status: HostPort | undefined;
  /** How long SIGTERM/SIGINT lets open connections finish before closing them; also the drain deadline of a reload and of the admin API. */
  readonly drainTimeout: number;
  /** File holding the admin API's bearer token; `undefined`: the API is read-only. */
  readonly adminTokenFile: string | undefined;
  /** Slow start of a backend that becomes eligible, in ms (the pool's `slowStart`); 0: off. */
  readonly slowStart: number;
  /** Whether a `Rebalancer` moves connections back to a backend that returns. */
  readonly rebalance: boolean;
  /** Connections moved per second at most, all backends together. */
  readonly rebalanceRate: number;
  /** How far from its share a backend may be and count as balanced (fraction of the share). */
  readonly rebalanceTolerance: number;
  /** The pool's `writeStallTimeout`, in ms; 0: off. Default: `interval × fall + timeout + 5000`. */
  readonly writeStallTimeout: number;
  /**
   * The pool's `leavingGrace`, in ms: how long a backend that reports a
   * graceful shutdown (`/readyz` with `[-]shutdown`) keeps its connections
   * for itself to close before what is left is moved at `rebalanceRate`.
   */
  readonly leavingGrace: number;
  /** What new clients get while no backend is up: wait in the queue, or placed on the unhealthy ones. */
  readonly allDown: 'queue' | 'fail-open';
  /** Processes accepting clients: 1 runs in this process; more fork `node:cluster` workers (see primary.ts). */
  readonly workers: number;
  /**
   * Clients held at most, all workers together (each worker takes an equal
   * share); past it new clients are refused at accept. `undefined` (`auto`):
   * derived at start from each process's descriptor limit (see client-cap.ts).
   */
  readonly maxClients: number | undefined;
  /** Path of a Unix socket serving the status endpoint and the admin API (mode 0600; changes need no token there); `undefined`: none. */
  readonly adminSocket: string | undefined;
  /**
   * Host names the status listener answers besides IP literals and
   * `localhost` (DNS rebinding): lower case, without port.
   */
  readonly statusAllowedHosts: readonly string[];
  /** Where the access log goes (one JSON line per closed connection): a file appended to, or `-` for stdout; `undefined`: off. */
  readonly accessLog: string | undefined;
  /** Discovery sources (`--discover`); empty: the backends are only the static ones. */
  readonly discover: readonly DiscoverSpec[];
  /** Resolver for the DNS sources; `undefined`: the system's. */
  readonly dnsServer: HostPort | undefined;
  /** Kubeconfig of the Kubernetes source and the intent; `undefined`: in-cluster. */
  readonly kubeconfig: string | undefined;
  /** File keeping the discovered lists across restarts. */
  readonly discoveryState: string | undefined;
  /** The intent ConfigMap (`NAMESPACE/NAME`) every balancer applies; `undefined`: none. */
  readonly intent: { readonly namespace: string; readonly name: string } | undefined;
}

/** What the command line asks for. */
export type ParseResult =
  | { readonly kind: 'run'; readonly config: BalancerConfig }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' };

/** The I/O {@link parseBalancerArgs} needs. */
export interface ParseIo {
  /** Reads the `--config` file as UTF-8; throw (with `code`) when it cannot. */
  readonly readFile: (path: string) => string;
}

/** Defaults of every setting that has one. */
export const balancerDefaults = Object.freeze({
  listen: Object.freeze({ host: '0.0.0.0', port: 6443 }),
  check: Object.freeze({ type: 'https', path: '/readyz' } as const),
  insecure: false,
  interval: 1000,
  timeout: 1000,
  rise: 2,
  fall: 2,
  strategy: 'least-connections',
  connectTimeout: 3000,
  retries: 2,
  queueTimeout: 10_000,
  drainTimeout: 5000,
  slowStart: 10_000,
  rebalance: true,
  rebalanceRate: 4,
  rebalanceTolerance: 0.2,
  /** Added to the probe's detection time (`interval × fall + timeout`) for the default `writeStallTimeout`. */
  writeStallMargin: 5000,
  /** OpenShift's 70 s `--shutdown-delay-duration` and 20 s for the apiserver's own ending of its watches. */
  leavingGrace: 90_000,
  allDown: 'queue',
  workers: 1,
});

/** Every setting, by its flag name (also its config file key). */
export type ConfigKey =
  | 'listen'
  | 'backend'
  | 'check'
  | 'ca'
  | 'cert'
  | 'key'
  | 'insecure'
  | 'servername'
  | 'interval'
  | 'timeout'
  | 'rise'
  | 'fall'
  | 'strategy'
  | 'connect-timeout'
  | 'retries'
  | 'queue-timeout'
  | 'status'
  | 'drain-timeout'
  | 'admin-token-file'
  | 'slow-start'
  | 'rebalance-rate'
  | 'rebalance-tolerance'
  | 'no-rebalance'
  | 'write-stall-timeout'
  | 'leaving-grace'
  | 'all-down'
  | 'workers'
  | 'max-clients'
  | 'admin-socket'
  | 'status-allowed-hosts'
  | 'access-log'
  | 'discover'
  | 'dns-server'
  | 'kubeconfig'
  | 'discovery-state'
  | 'intent';

const keys: readonly ConfigKey[] = [
  'listen',
  'backend',
  'check',
  'ca',
  'cert',
  'key',
  'insecure',
  'servername',
  'interval',
  'timeout',
  'rise',
  'fall',
  'strategy',
  'connect-timeout',
  'retries',
  'queue-timeout',
  'status',
  'drain-timeout',
  'admin-token-file',
  'slow-start',
  'rebalance-rate',
  'rebalance-tolerance',
  'no-rebalance',
  'write-stall-timeout',
  'leaving-grace',
  'all-down',
  'workers',
  'max-clients',
  'admin-socket',
  'status-allowed-hosts',
  'access-log',
  'discover',
  'dns-server',
  'kubeconfig',
  'discovery-state',
  'intent',
];

/** Every setting's name, as a flag (`--NAME`) and as a config file key. */
export const configKeys: readonly ConfigKey[] = Object.freeze([...keys]);

/** Flags that take no value (`true` when given; a config file sets them to true or false). */
export const switches: readonly ConfigKey[] = ['insecure', 'no-rebalance'];

/** Whether `name` is a setting's name. */
export const isKey = (name: string): name is ConfigKey => (keys as readonly string[]).includes(name);

/** A backend NAME: what `NAME=` and the admin API accept. */
export const backendNamePattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/;

/** Largest weight a config file or the admin API accepts. */
export const MAX_WEIGHT = 1_000_000;
