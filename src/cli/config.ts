/**
 * The reference balancer's settings: command-line flags and a JSON config
 * file, merged (flags win) and validated into one frozen {@link BalancerConfig}.
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
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import type { BalancerName } from '../index.js';

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

/** A host and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
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
  /** Processes accepting clients: 1 runs in this process; more fork `node:cluster` workers (see workers.ts). */
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

const strategies: readonly BalancerName[] = ['least-connections', 'round-robin', 'random-two', 'hash'];
const MAX_MS = 2 ** 31 - 1;
/** More clients than this is a typo: it would take 20 million descriptors. */
const MAX_CLIENTS = 10_000_000;
/** More processes than this is a typo, not a machine. */
const MAX_WORKERS = 256;

/**
 * `--help` text, naming the program as it was invoked: `failover-proxy-apiserver`
 * through the package's bin, `apiserver-balancer` for the script.
 */
export function usage(command = 'apiserver-balancer'): string {
  return `Usage: ${command} --backend HOST:PORT [--backend HOST:PORT ...] [options]

TCP (TLS passthrough) balancer for kube-apiservers: active health checks, and
every connection pinned to a backend is torn down the moment it is marked down.

  --listen HOST:PORT         address to accept clients on (default 0.0.0.0:6443)
  --backend [NAME=]HOST:PORT a backend; repeat for each (at least one)
  --check CHECK              https:/PATH (default https:/readyz) | http:/PATH | tls | tcp
  --ca FILE                  CA bundle the check trusts (https, tls)
  --cert FILE --key FILE     client certificate for the check (https, tls)
  --insecure                 do not verify the backends' certificates in the check
  --servername NAME          SNI and verified name for the check (default: IP SANs)
  --interval MS              time between checks (default 1000)
  --timeout MS               time a check may take, at most the interval (default 1000)
  --rise N                   passes in a row to mark a backend up (default 2)
  --fall N                   failures in a row to mark it down (default 2)
  --strategy NAME            least-connections (default) | round-robin | random-two | hash
  --connect-timeout MS       time to connect to a backend (default 3000)
  --retries N                other backends to try when a connect fails (default 2)
  --queue-timeout MS         how long a client waits while no backend is up (default 10000)
  --status HOST:PORT         serve /stats, /metrics, /livez, /readyz, the admin API and the status page
                             (PORT alone: on 127.0.0.1)
  --drain-timeout MS         on SIGTERM/SIGINT, reload or removal, time open connections get (default 5000)
  --admin-token-file FILE    bearer token that unlocks the admin API's changes (default: read-only)
  --slow-start MS            a returning backend's share ramps up over this time; 0: off (default 10000)
  --rebalance-rate N         connections moved per second back to a returning backend (default 4)
  --rebalance-tolerance F    how far from its share (fraction) a backend counts as balanced (default 0.2)
  --no-rebalance             leave connections where they are when a backend returns
  --write-stall-timeout MS   tear down a connection whose writes made no progress this long; 0: off
                             (default: interval x fall + timeout + 5000)
  --leaving-grace MS         a backend whose /readyz reports [-]shutdown takes no new clients and keeps
                             its connections this long for itself to close; what is left is then
                             moved at the rebalance rate (default 90000)
  --all-down POLICY          while no backend is up: queue (default) | fail-open (use the unhealthy ones)
  --workers N|auto           processes accepting clients (default 1; auto: one per CPU)
  --max-clients N|auto       clients held at most, all workers together; more are refused at accept
                             (default auto: (descriptor limit - max(64, 5%)) / 2 per process)
  --admin-socket PATH        also serve the status endpoint and the admin API on this Unix socket
                             (mode 0600; changes need no token there)
  --status-allowed-hosts H,H host names the status listener answers besides IP addresses and
                             localhost (DNS rebinding guard; /livez and /readyz answer any Host)
  --access-log PATH|-        one JSON line per closed connection, appended to PATH or on stdout (default: off)
  --discover SOURCE          more backends from dns:NAME:PORT (A records), srv:_SERVICE._PROTO.NAME,
                             or kubernetes (the EndpointSlices of default/kubernetes); repeat for each;
                             combined with --backend, which are always kept
  --dns-server HOST[:PORT]   resolver for the dns: and srv: sources (default: the system's)
  --kubeconfig FILE          credentials for --discover kubernetes and --intent (default: in-cluster)
  --discovery-state FILE     keep the discovered lists here across restarts (never replaces --backend)
  --intent NAMESPACE/NAME    apply the drain/maintenance declared in this ConfigMap (default name
                             kube-system/failover-proxy-intent when given as "default")
  --config FILE.json         the same settings as JSON (keys are the flag names); flags win;
                             SIGHUP re-reads it
  --help                     this text
  --version                  print the version and exit
`;
}

type Key =
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

/** Every setting, by its flag name (also its config file key). */
export type ConfigKey = Key;

const keys: readonly Key[] = [
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
const switches: readonly Key[] = ['insecure', 'no-rebalance'];

const isKey = (name: string): name is Key => (keys as readonly string[]).includes(name);

/** A value as given: from a flag (always text) or from the config file (any JSON). */
interface Given {
  readonly value: unknown;
  /** `--interval` or `cfg.json: "interval"`, for messages. */
  readonly label: string;
  readonly fromFile: boolean;
  /** Directory of the config file, against which relative paths in it resolve. */
  readonly baseDir: string | undefined;
}

/** Shows a value in a message: quoted, shortened, on one line. */
function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    // Too deep (or circular) to print: String() would recurse just as far.
    text = Array.isArray(value) ? '[…]' : Object.prototype.toString.call(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function fail(given: Given, expectation: string): never {
  throw new ConfigError(`${given.label}: expected ${expectation}, got ${show(given.value)}`);
}

function text(given: Given, expectation: string): string {
  if (typeof given.value !== 'string' || given.value === '') fail(given, expectation);
  return given.value;
}

function integer(given: Given, min: number, max: number, unit: string): number {
  const expectation = `an integer from ${min} to ${max}${unit}`;
  let n: number;
  if (given.fromFile) {
    if (typeof given.value !== 'number') fail(given, expectation);
    n = given.value;
  } else {
    // Digits only: no "1e3", "0x10", " 5" or "10ms" sneaking through Number().
    if (typeof given.value !== 'string' || !/^\d{1,16}$/.test(given.value)) fail(given, expectation);
    n = Number(given.value);
  }
  if (!Number.isSafeInteger(n) || n < min || n > max) fail(given, expectation);
  return n;
}

function decimal(given: Given, min: number, max: number): number {
  const expectation = `a number from ${min} to ${max}`;
  let n: number;
  if (given.fromFile) {
    if (typeof given.value !== 'number') fail(given, expectation);
    n = given.value;
  } else {
    // Plain decimals only, as for integers: no exponents, signs or units.
    if (typeof given.value !== 'string' || !/^\d{1,9}(?:\.\d{1,9})?$/.test(given.value)) fail(given, expectation);
    n = Number(given.value);
  }
  if (!Number.isFinite(n) || n < min || n > max) fail(given, expectation);
  return n;
}

const hostnamePattern = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function validHost(host: string): boolean {
  return isIP(host) !== 0 || hostnamePattern.test(host);
}

/**
 * Parses `HOST:PORT` or `[IPv6]:PORT`. With `loopbackDefault`, a bare `PORT`
 * or `:PORT` means 127.0.0.1. `minPort` 0 lets a listener pick a free port.
 */
export function parseAddress(input: string, { minPort = 1, loopbackDefault = false } = {}): HostPort | undefined {
  let host: string | undefined;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(input);
  if (bracketed) {
    host = bracketed[1];
    portText = bracketed[2];
    if (host === undefined || isIP(host) !== 6) return undefined;
  } else {
    const plain = /^([^:[\]\s]*):(\d{1,5})$/.exec(input) ?? (loopbackDefault ? /^()(\d{1,5})$/.exec(input) : null);
    if (!plain) return undefined;
    host = plain[1] === '' ? (loopbackDefault ? '127.0.0.1' : undefined) : plain[1];
    portText = plain[2];
    if (host === undefined || !validHost(host)) return undefined;
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < minPort || port > 65535) return undefined;
  return { host, port };
}

function address(given: Given, options: { minPort?: number; loopbackDefault?: boolean }, expectation: string): HostPort {
  const parsed = parseAddress(text(given, expectation), options);
  return parsed ?? fail(given, expectation);
}

/** A backend NAME: what `NAME=` and the admin API accept. */
export const backendNamePattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/;

/** Largest weight a config file or the admin API accepts. */
export const MAX_WEIGHT = 1_000_000;

function backendList(given: Given): BackendAddress[] {
  const expectation = '[NAME=]HOST:PORT (port 1-65535)';
  const items = given.fromFile && Array.isArray(given.value) ? (given.value as unknown[]) : [given.value];
  if (given.fromFile && Array.isArray(given.value) && items.length === 0) fail(given, 'at least one backend');
  return items.map((value) => {
    const item: Given = { ...given, value };
    if (given.fromFile && typeof value === 'object' && value !== null && !Array.isArray(value)) return backendObject(item, value as Record<string, unknown>);
    const raw = text(item, expectation);
    const eq = raw.indexOf('=');
    const name = eq === -1 ? undefined : raw.slice(0, eq);
    if (name !== undefined && !backendNamePattern.test(name)) {
      fail(item, 'a NAME of letters, digits, ".", "_", ":" or "-" before "="');
    }
    const hostPort = parseAddress(eq === -1 ? raw : raw.slice(eq + 1));
    if (hostPort === undefined) fail(item, expectation);
    const id = name ?? (hostPort.host.includes(':') ? `[${hostPort.host}]:${hostPort.port}` : `${hostPort.host}:${hostPort.port}`);
    return Object.freeze({ ...hostPort, id });
  });
}

/** A config file's `{"name", "address", "weight", "maxConnections"}`: a backend with tunables. */
function backendObject(item: Given, value: Record<string, unknown>): BackendAddress {
  const expectation = '{"name"?, "address": "HOST:PORT", "weight"?, "maxConnections"?}';
  for (const key of Object.keys(value)) {
    if (!['name', 'address', 'weight', 'maxConnections'].includes(key)) fail(item, `${expectation} (unknown key ${show(key)})`);
  }
  const name = value['name'];
  if (name !== undefined && (typeof name !== 'string' || !backendNamePattern.test(name))) {
    fail(item, 'a "name" of letters, digits, ".", "_", ":" or "-"');
  }
  const hostPort = typeof value['address'] === 'string' ? parseAddress(value['address']) : undefined;
  if (hostPort === undefined) fail(item, expectation);
  const weight = value['weight'];
  if (weight !== undefined && (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > MAX_WEIGHT)) {
    fail(item, `a "weight" from 0 to ${MAX_WEIGHT}`);
  }
  const cap = value['maxConnections'];
  if (cap !== undefined && (typeof cap !== 'number' || !Number.isSafeInteger(cap) || cap < 1)) fail(item, 'a "maxConnections" integer >= 1');
  const id = name ?? (hostPort.host.includes(':') ? `[${hostPort.host}]:${hostPort.port}` : `${hostPort.host}:${hostPort.port}`);
  return Object.freeze({ ...hostPort, id, ...(weight !== undefined && { weight }), ...(cap !== undefined && { maxConnections: cap }) });
}

function check(given: Given): CheckConfig {
  const expectation = 'https:/PATH, http:/PATH, https, http, tls or tcp';
  const raw = text(given, expectation);
  if (raw === 'tls' || raw === 'tcp') return Object.freeze({ type: raw });
  if (raw === 'https' || raw === 'http') return Object.freeze({ type: raw, path: '/readyz' });
  const match = /^(https?):(\/[\x21-\x7e]*)$/.exec(raw);
  if (!match) fail(given, expectation);
  return Object.freeze({ type: match[1] as 'https' | 'http', path: match[2]! });
}

function file(given: Given): string {
  const path = text(given, 'a file path');
  if (path.includes('\0')) fail(given, 'a file path');
  return given.baseDir !== undefined && !isAbsolute(path) ? resolvePath(given.baseDir, path) : path;
}

/** Longest Unix socket path Linux takes (`sun_path` is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

function socketPath(given: Given): string {
  const path = file(given);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) fail(given, `a socket path of at most ${MAX_SOCKET_PATH} bytes`);
  return path;
}

/** `a.example,b.example` (a flag) or `["a.example"]` (a config file): DNS names, stored lower case. */
function hostList(given: Given): string[] {
  const expectation = 'DNS names separated by commas';
  let items: unknown[];
  if (given.fromFile && Array.isArray(given.value)) items = given.value as unknown[];
  else items = text(given, expectation).split(',');
  return items.map((item) => {
    if (typeof item !== 'string' || !hostnamePattern.test(item) || isIP(item) !== 0) fail(given, expectation);
    return item.toLowerCase().replace(/\.$/, '');
  });
}

function flag(given: Given): boolean {
  if (given.fromFile) {
    if (typeof given.value !== 'boolean') fail(given, 'true or false');
    return given.value;
  }
  return true;
}

/** A typo'd config key gets a hint. */
const aliases: Readonly<Record<string, Key>> = Object.freeze({
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

function readConfig(path: string, io: ParseIo): Map<Key, Given> {
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
  const out = new Map<Key, Given>();
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
  const flags = new Map<Key, Given>();
  const backendFlags: Given[] = [];
  const discoverFlags: Given[] = [];
  let configPath: string | undefined;

  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  if (argv.includes('--version')) return { kind: 'version' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      throw new ConfigError(`unexpected argument ${show(arg)} (flags start with --; see --help)`);
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const label = `--${name}`;
    if (name !== 'config' && !isKey(name)) throw new ConfigError(`unknown flag ${show(`--${name}`)} (see --help)`);
    let value: string | undefined;
    if ((switches as readonly string[]).includes(name)) {
      if (eq !== -1) throw new ConfigError(`${label} takes no value`);
    } else if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`${label} needs a value (see --help)`);
      value = next;
      i++;
    }
    if (name === 'config') {
      if (configPath !== undefined) throw new ConfigError('--config given twice');
      if (value === undefined || value === '') throw new ConfigError('--config needs a file path');
      configPath = value;
      continue;
    }
    if (!isKey(name)) continue;
    const given: Given = { value: value ?? true, label, fromFile: false, baseDir: undefined };
    if (name === 'backend') {
      backendFlags.push(given);
      continue;
    }
    if (name === 'discover') {
      discoverFlags.push(given);
      continue;
    }
    if (flags.has(name)) throw new ConfigError(`${label} given twice`);
    flags.set(name, given);
  }

  const settings = configPath === undefined ? new Map<Key, Given>() : readConfig(configPath, io);
  const pick = (key: Key): Given | undefined => flags.get(key) ?? settings.get(key);
  const discoverGiven = discoverFlags.length > 0 ? discoverFlags : settings.has('discover') ? [settings.get('discover')!] : [];
  return { kind: 'run', config: validate(pick, backendFlags, settings.get('backend'), discoverGiven) };
}

/** `dns:NAME:PORT`, `srv:_SERVICE._PROTO.NAME` or `kubernetes`; a config file may give a list. */
function discoverList(given: Given): DiscoverSpec[] {
  const expectation = 'dns:NAME:PORT, srv:_SERVICE._PROTO.NAME or kubernetes';
  const items = given.fromFile && Array.isArray(given.value) ? (given.value as unknown[]) : [given.value];
  return items.map((value) => {
    const item: Given = { ...given, value };
    const raw = text(item, expectation);
    if (raw === 'kubernetes') return Object.freeze({ kind: 'kubernetes' as const });
    const dns = /^dns:([^:]+):(\d{1,5})$/.exec(raw);
    if (dns) {
      const port = Number(dns[2]);
      if (!hostnamePattern.test(dns[1]!) || isIP(dns[1]!) !== 0 || port < 1 || port > 65535) fail(item, expectation);
      return Object.freeze({ kind: 'dns' as const, name: dns[1]!, port });
    }
    const srv = /^srv:(_[A-Za-z0-9-]+\._(?:tcp|udp)\..+)$/.exec(raw);
    if (srv && hostnamePattern.test(srv[1]!.replace(/^_([^.]+)\._([^.]+)\./, 'a.b.'))) return Object.freeze({ kind: 'srv' as const, name: srv[1]! });
    return fail(item, expectation);
  });
}

function validate(
  pick: (key: Key) => Given | undefined,
  backendFlags: readonly Given[],
  fileBackends: Given | undefined,
  discoverGiven: readonly Given[] = [],
): BalancerConfig {
  const d = balancerDefaults;
  const ms = (key: Key, fallback: number, min = 1): number => {
    const given = pick(key);
    return given === undefined ? fallback : integer(given, min, MAX_MS, ' (milliseconds)');
  };
  const count = (key: Key, fallback: number, min: number, max: number): number => {
    const given = pick(key);
    return given === undefined ? fallback : integer(given, min, max, '');
  };
  const optional = <T>(key: Key, parse: (given: Given) => T): T | undefined => {
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
    const address = `${b.host}:${b.port}`;
    for (const other of seen.values()) {
      if (other.id === b.id) throw new ConfigError(`--backend: ${show(b.id)} given twice`);
      if (`${other.host}:${other.port}` === address) throw new ConfigError(`--backend: ${show(address)} given twice`);
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
