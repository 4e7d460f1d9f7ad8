/**
 * What both modes of the balancer build a process from, one way: the
 * settings (the command line and its config file, read again for a reload),
 * the process's I/O, the probe's
 * check (with the TLS files read and checked), the admin token, the pool's,
 * probe's and rebalancer's options, the access log, the listener, and the
 * `probe` part of `/stats`. A single process (balancer.ts), the primary of
 * `--workers` (primary.ts) and each worker (worker.ts) call these, so a
 * setting means the same in every mode.
 *
 * @module
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { createSecureContext } from 'node:tls';
import { FailoverProxyError, Rebalancer, type HealthProbeOptions, type UpstreamPool, type UpstreamPoolOptions } from '../index.js';
import { AccessLog } from './access-log.js';
import { MAX_TOKEN_LENGTH, MIN_TOKEN_LENGTH, parseToken, tokenDigest } from './admin-api.js';
import type { HostPort } from './address.js';
import type { ClientCapStats } from './client-cap.js';
import { ConfigError, type BalancerConfig, type ParseResult } from './config.js';
import { parseBalancerArgs } from './parse-balancer-args.js';
import type { ProbeStats } from './probe-stats.js';
import { packageVersion } from './program-info.js';
import { classifyReadyz, isReadyz } from './readyz.js';
import { backendSpecs } from './reload.js';
import type { StatusServerOptions } from './status-server.js';

/** The I/O a balancer needs. */
export interface BalancerIo {
  /** Receives every log line, without the trailing newline. */
  readonly log: (line: string) => void;
  /** Reads a certificate, key or token file. */
  readonly readFile: (path: string) => Buffer;
  /** The mode of a file (the admin token's); default `fs.statSync`. */
  readonly statFile?: ((path: string) => { readonly mode: number }) | undefined;
  /**
   * Re-reads the settings for a reload (the same flags, the config file read
   * again); throws {@link ConfigError}. Absent: the balancer was started
   * without a config file, and a reload is refused (`NO_CONFIG_FILE`).
   */
  readonly loadConfig?: (() => BalancerConfig) | undefined;
}

/** The settings from a command line (without `node` and the script) and the config file it names, read now. */
export function readSettings(argv: readonly string[]): ParseResult {
  return parseBalancerArgs(argv, { readFile: (path) => readFileSync(path, 'utf8') });
}

/**
 * A process's I/O: `log` for its lines, files read from disk, and for a
 * reload the same command line read again (flags still win over the file);
 * without `--config` there is nothing to re-read, and a reload is refused.
 */
export function processIo(argv: readonly string[], log: (line: string) => void): BalancerIo {
  const hasConfig = argv.some((arg) => arg === '--config' || arg.startsWith('--config='));
  const loadConfig = (): BalancerConfig => {
    const again = readSettings(argv);
    if (again.kind !== 'run') throw new ConfigError('the command line no longer describes a balancer');
    return again.config;
  };
  return { log, readFile: (path) => readFileSync(path), loadConfig: hasConfig ? loadConfig : undefined };
}

/** `/stats`: the pool's snapshot, the client cap and, per backend, its probe figures. */
export type BalancerStats = ReturnType<UpstreamPool['stats']> & {
  /** `--max-clients` and the clients it refused. */
  readonly clients?: ClientCapStats | undefined;
  readonly probe: {
    readonly check: string;
    readonly interval: number;
    readonly timeout: number;
    readonly rise: number;
    readonly fall: number;
    readonly verifyTls: boolean | undefined;
    readonly backends: ReturnType<ProbeStats['snapshot']>;
  };
};

/** `failover_proxy_build_info`'s labels. */
export function buildInfo(): { version: string; node: string } {
  return { version: packageVersion() ?? 'unknown', node: process.version };
}

/** The access log of a pool when the config asks for one; its write errors are logged once, never thrown. */
export function accessLogFor(pool: UpstreamPool, config: Pick<BalancerConfig, 'accessLog'>, log: (line: string) => void, fields?: Record<string, number>): AccessLog | undefined {
  if (config.accessLog === undefined) return undefined;
  return new AccessLog(pool, config.accessLog, {
    fields,
    onError: (err) => log(`access log ${config.accessLog}: ${err.message}; no more lines are written (SIGHUP does not reopen it; restart to resume)`),
  });
}

/**
 * Builds what the library makes of the settings; an option it refuses that the
 * parser let through is still a config error (exit 2), not a crash.
 */
export function asConfigError<T>(build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT') throw new ConfigError(err.message);
    throw err;
  }
}

/** A file the config names (TLS, token), read now so a bad path stops the start with exit 2. */
function readConfiguredFile(io: Pick<BalancerIo, 'readFile'>, flag: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return io.readFile(path);
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    throw new ConfigError(`${flag} ${path}: cannot read it (${typeof code === 'string' ? code : String(err)})`);
  }
}

/** What the probe needs of the config (a worker gets it too, for when its primary is silent). */
export type ProbeSettings = Pick<BalancerConfig, 'check' | 'ca' | 'cert' | 'key' | 'insecure' | 'servername' | 'interval' | 'timeout' | 'rise' | 'fall'>;

/** Builds the probe's check from the config, reading and checking the TLS files. */
export function probeCheck(config: ProbeSettings, io: Pick<BalancerIo, 'readFile'>): NonNullable<HealthProbeOptions['check']> {
  const { check } = config;
  if (check.type === 'tcp') return { type: 'tcp' };
  if (check.type === 'http') return { type: 'http', path: check.path, ...(isReadyz(check.path) && { classify: classifyReadyz }) };
  const ca = readConfiguredFile(io, '--ca', config.ca);
  const cert = readConfiguredFile(io, '--cert', config.cert);
  const key = readConfiguredFile(io, '--key', config.key);
  // Fail now, with a readable message, on a file that is not what it should
  // be: Node silently ignores a CA bundle with no certificate in it.
  if (ca !== undefined) {
    const pems = ca.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    try {
      if (pems.length === 0) throw new Error('no PEM certificate in it');
      for (const pem of pems) new X509Certificate(pem);
    } catch (err) {
      throw new ConfigError(`--ca ${config.ca}: not usable for TLS (${err instanceof Error ? err.message : String(err)})`);
    }
  }
  if (cert !== undefined && key !== undefined) {
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new ConfigError(`--cert/--key: not usable for TLS (${err instanceof Error ? err.message : String(err)})`);
    }
  }
  const tls = {
    ...(ca && { ca }),
    ...(cert && { cert }),
    ...(key && { key }),
    ...(config.servername !== undefined && { servername: config.servername }),
    rejectUnauthorized: !config.insecure,
  };
  if (check.type === 'tls') return { type: 'tls', ...tls };
  // `/readyz` tells a graceful shutdown (`[-]shutdown`: leaving) from any other failure (down).
  return { type: 'https', path: check.path, ...tls, ...(isReadyz(check.path) && { classify: classifyReadyz }) };
}

/**
 * The admin token's digest, from `--admin-token-file`. Refused, as ssh
 * refuses a private key, when group or others may read or write the file:
 * whoever can read it can change the pool.
 */
export function readToken(io: BalancerIo, path: string): Buffer {
  const content = readConfiguredFile(io, '--admin-token-file', path)!;
  let mode: number | undefined;
  try {
    mode = (io.statFile ?? statSync)(path).mode;
  } catch {
    // Read a moment ago: gone since, or a platform without modes. The content still counts.
  }
  if (mode !== undefined && process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new ConfigError(
      `--admin-token-file ${path}: group or others may access it (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); make it private with chmod 600`,
    );
  }
  const token = parseToken(content.toString('latin1'));
  if (token === undefined) {
    throw new ConfigError(`--admin-token-file ${path}: expected one line of ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} printable characters without spaces`);
  }
  return tokenDigest(token);
}

/** The status listener's options from the config: allowed hosts, the Unix socket. */
export function statusOptions(config: Pick<BalancerConfig, 'statusAllowedHosts' | 'adminSocket'>): StatusServerOptions {
  return { allowedHosts: config.statusAllowedHosts, adminSocket: config.adminSocket };
}

/** The pool's options: the same in the single process and in every worker. */
export function poolOptions(
  config: Pick<
    BalancerConfig,
    'backends' | 'strategy' | 'connectTimeout' | 'retries' | 'queueTimeout' | 'drainTimeout' | 'slowStart' | 'writeStallTimeout' | 'leavingGrace' | 'rebalanceRate' | 'allDown'
  >,
): UpstreamPoolOptions {
  return {
    backends: backendSpecs(config),
    balancer: config.strategy,
    // Nothing is sent to a backend before its first check passes.
    initialState: 'probe',
    connectTimeout: config.connectTimeout,
    retries: config.retries,
    queue: { timeout: config.queueTimeout },
    closeTimeout: config.drainTimeout,
    slowStart: config.slowStart,
    writeStallTimeout: config.writeStallTimeout,
    // A leaving backend's leftovers move at the rebalancer's rate: the same storm, the same bound.
    leavingGrace: config.leavingGrace,
    leavingRate: config.rebalanceRate,
    allDown: config.allDown,
  };
}

/**
 * The rebalancer of a pool when the config asks for one: without it, watches
 * that moved off a failed backend would stay on the others after it returns.
 */
export function rebalancerFor(pool: UpstreamPool, config: Pick<BalancerConfig, 'rebalance' | 'rebalanceRate' | 'rebalanceTolerance'>): Rebalancer | undefined {
  return config.rebalance ? new Rebalancer(pool, { rate: config.rebalanceRate, tolerance: config.rebalanceTolerance }) : undefined;
}

/** The probe's options; it is started by hand once attached. */
export function probeOptions(config: ProbeSettings, check: NonNullable<HealthProbeOptions['check']>): HealthProbeOptions {
  return { check, interval: config.interval, timeout: config.timeout, rise: config.rise, fall: config.fall, autoStart: false };
}

/** The check as `/stats` and the log name it: `https:/readyz`, `tcp`. */
export function checkLabel(config: Pick<BalancerConfig, 'check'>): string {
  return config.check.type === 'https' || config.check.type === 'http' ? `${config.check.type}:${config.check.path}` : config.check.type;
}

/** The `probe` part of `/stats`. */
export function probeSummary(config: BalancerConfig, probeStats: ProbeStats): BalancerStats['probe'] {
  return {
    check: checkLabel(config),
    interval: config.interval,
    timeout: config.timeout,
    rise: config.rise,
    fall: config.fall,
    verifyTls: config.check.type === 'https' || config.check.type === 'tls' ? !config.insecure : undefined,
    backends: probeStats.snapshot(),
  };
}

/** Listens and resolves with the bound address; rejects with the socket error. */
export function listen(server: Server, address: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      const bound = server.address() as AddressInfo;
      resolve({ host: bound.address, port: bound.port });
    });
  });
}
