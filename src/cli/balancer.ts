/**
 * The reference apiserver balancer, as a function of its validated config:
 * an {@link UpstreamPool} fed by a TCP listener (TLS passthrough), a
 * {@link HealthProbe} that marks backends down and up, the log, and the
 * status endpoint. Built only from the public API.
 *
 * @module
 */
import { createServer, type AddressInfo, type Server } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import {
  FailoverProxyError,
  HealthProbe,
  Rebalancer,
  UpstreamPool,
  type BackendSpec,
  type HealthProbeOptions,
  type ReconcileResult,
  type UpstreamPoolOptions,
} from '../index.js';
import { statSync } from 'node:fs';
import { MAX_TOKEN_LENGTH, MIN_TOKEN_LENGTH, handleAdminRequest, parseToken, tokenDigest } from './admin-api.js';
import { ClientCap, clientShare, descriptorLimit, type ClientCapStats } from './client-cap.js';
import { ConfigError, type BalancerConfig } from './config.js';
import { formatAddress, type HostPort } from './address.js';
import { EventLog } from './event-log.js';
import { AccessLog } from './access-log.js';
import { renderMetrics } from './metrics.js';
import { ProcessStats } from './process-stats.js';
import { packageVersion } from './program-info.js';
import { VerdictCounts } from './verdict-counts.js';
import { ProbeStats } from './probe-stats.js';
import { classifyReadyz, isReadyz } from './readyz.js';
import { RebalanceLog } from './rebalance-log.js';
import { RecentEvents } from './recent-events.js';
import { createBalancerDiscovery } from './discovery.js';
import { ReloadError, backendSpecs, restartNeeded, type ReloadSummary } from './reload.js';
import { startStatusServer, type StatusServer, type StatusServerOptions } from './status-server.js';

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

/** A running balancer. */
export interface RunningBalancer {
  /** Where clients connect. */
  readonly address: HostPort;
  /** Where `/stats` and `/metrics` are served, if they are. */
  readonly statusAddress: HostPort | undefined;
  readonly pool: UpstreamPool;
  readonly probe: HealthProbe;
  /** The recent backend events `GET /api/events` serves. */
  readonly events: RecentEvents;
  /** Moves connections back to a backend that returns; `undefined` with `--no-rebalance`. */
  readonly rebalancer: Rebalancer | undefined;
  /** The `/stats` document. */
  stats(): BalancerStats;
  /**
   * Re-reads the config (SIGHUP, `POST /api/reload`) and makes the pool match
   * it: unchanged backends keep every connection, changed tunables apply
   * live, removed backends drain for `drain-timeout`, new ones are probed
   * before they take clients; the admin token and `drain-timeout` apply too.
   * Logs one line either way. Throws {@link ReloadError} and changes nothing
   * when there is no config file or it is not valid.
   */
  reload(): ReloadSummary;
  /**
   * Stops accepting, lets open connections finish for `drainTimeout` ms, then
   * closes the rest, stops the probe and the status endpoint. Idempotent.
   */
  close(): Promise<void>;
  /** Closes every connection now, then as {@link RunningBalancer.close}. */
  destroy(): Promise<void>;
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

function list(ids: readonly string[]): string {
  return ids.length === 0 ? '-' : ids.join(', ');
}

/** The status listener's options from the config: allowed hosts, the Unix socket. */
export function statusOptions(config: Pick<BalancerConfig, 'statusAllowedHosts' | 'adminSocket'>): StatusServerOptions {
  return { allowedHosts: config.statusAllowedHosts, adminSocket: config.adminSocket };
}

/** What {@link reloadConfig} works on. */
export interface ReloadTarget {
  /** The config the balancer started with (restart-only settings are compared with it). */
  readonly config: BalancerConfig;
  readonly io: BalancerIo;
  /** Makes the pool match the list; throws (and changes nothing) for a bad one. */
  readonly reconcile: (specs: BackendSpec[], options: { readonly drainTimeout: number }) => ReconcileResult;
  /** One line either way. */
  readonly log: (line: string) => void;
  /** The new config is in force: take its admin token (digest) and drain deadline. */
  readonly applied: (next: BalancerConfig, token: Buffer | undefined) => void;
}

/**
 * A reload (SIGHUP, `POST /api/reload`), the same in a single process and in
 * the primary of `--workers`: re-reads the config and reconciles the pool
 * with it. Throws {@link ReloadError} and changes nothing when there is no
 * config file or it is not valid; logs one line either way.
 */
export function reloadConfig(target: ReloadTarget): ReloadSummary {
  const { config, io, log } = target;
  try {
    if (io.loadConfig === undefined) throw new ReloadError('NO_CONFIG_FILE', 'no config file: start the balancer with --config FILE to reload');
    let next: BalancerConfig;
    let nextToken: Buffer | undefined;
    let result: ReconcileResult;
    try {
      next = io.loadConfig();
      nextToken = next.adminTokenFile === undefined ? undefined : readToken(io, next.adminTokenFile);
      // Validates every spec before it changes anything.
      result = target.reconcile(backendSpecs(next), { drainTimeout: next.drainTimeout });
    } catch (err) {
      if (err instanceof ConfigError) throw new ReloadError('CONFIG_INVALID', err.message);
      if (err instanceof FailoverProxyError && (err.code === 'INVALID_ARGUMENT' || err.code === 'DUPLICATE_BACKEND')) {
        throw new ReloadError('CONFIG_INVALID', err.message);
      }
      throw err;
    }
    target.applied(next, nextToken);
    result.settled.catch((err: unknown) => log(`reload: a drain ended badly: ${err instanceof Error ? err.message : String(err)}`));
    const summary: ReloadSummary = {
      added: result.added,
      updated: result.updated,
      removed: result.removed,
      replaced: result.replaced,
      unchanged: result.unchanged,
      // Compared with the start: these never change while running.
      restartNeeded: restartNeeded(config, next),
    };
    log(
      `reload: added ${list(summary.added)}; updated ${list(summary.updated)}; draining ${list(summary.removed)}` +
        `${summary.removed.length > 0 ? ` (${next.drainTimeout} ms)` : ''}; replaced ${list(summary.replaced)}; unchanged ${list(summary.unchanged)}` +
        `${summary.restartNeeded.length > 0 ? `; needs a restart (running value kept): ${summary.restartNeeded.join(', ')}` : ''}`,
    );
    return summary;
  } catch (err) {
    log(`reload refused, running config kept: ${err instanceof Error ? err.message : String(err)}`);
    throw err;
  }
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

/**
 * Validates what is left to validate (TLS files, library options), then
 * listens and starts probing. Throws {@link ConfigError} before anything is
 * started when the config cannot work; rejects with the socket error (and
 * leaves nothing running) when an address cannot be bound.
 *
 * @example
 * ```ts
 * const balancer = await startBalancer(config, { log: console.log, readFile: (p) => readFileSync(p) });
 * console.log(`listening ${formatAddress(balancer.address)}`);
 * process.once('SIGTERM', () => void balancer.close());
 * ```
 */
export async function startBalancer(config: BalancerConfig, io: BalancerIo): Promise<RunningBalancer> {
  const check = probeCheck(config, io);
  let token = config.adminTokenFile === undefined ? undefined : readToken(io, config.adminTokenFile);
  let drainTimeout = config.drainTimeout;
  let pool: UpstreamPool;
  let probe: HealthProbe;
  let rebalancer: Rebalancer | undefined;
  try {
    pool = new UpstreamPool(poolOptions(config));
    probe = new HealthProbe(probeOptions(config, check));
    rebalancer = rebalancerFor(pool, config);
  } catch (err) {
    // The parser should have caught it; if the library disagrees, it is still a config error.
    if (err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT') throw new ConfigError(err.message);
    throw err;
  }

  const probeStats = new ProbeStats();
  probeStats.attach(probe);
  const log = new EventLog(pool, probe, { write: io.log });
  const proc = new ProcessStats('main');
  const verdicts = new VerdictCounts(pool);
  const access = accessLogFor(pool, config, (line) => log.info(line));
  const build = buildInfo();
  const events = new RecentEvents(pool);
  const rebalanceLog = rebalancer && new RebalanceLog(pool, rebalancer, (line) => log.info(line));
  let stats = (): BalancerStats => ({ ...pool.stats(), probe: probeSummary(config, probeStats) });

  const checkName = stats().probe.check;
  log.info(
    `balancing ${config.backends.length} backend${config.backends.length === 1 ? '' : 's'} (${config.backends.map((b) => b.id).join(', ')}) ` +
      `with ${config.strategy}; check ${checkName} every ${config.interval} ms, timeout ${config.timeout} ms, rise ${config.rise}, fall ${config.fall}`,
  );
  log.info(
    `slow start ${config.slowStart} ms; ${rebalancer === undefined ? 'no rebalancing' : `rebalancing at ${config.rebalanceRate}/s, tolerance ${config.rebalanceTolerance}`}; ` +
      `write-stall timeout ${config.writeStallTimeout === 0 ? 'off' : `${config.writeStallTimeout} ms`}; all down: ${config.allDown}`,
  );
  if (config.insecure) log.info(`warning: --insecure: the ${checkName} check does not verify the backends' certificates`);
  if (token !== undefined && config.status === undefined) {
    log.info(
      config.adminSocket === undefined
        ? 'warning: --admin-token-file without --status: there is no admin API to unlock'
        : 'warning: --admin-token-file without --status: the --admin-socket needs no token',
    );
  }

  const discovery = createBalancerDiscovery(config, pool, (line) => log.info(line));
  const reload = (): ReloadSummary =>
    reloadConfig({
      config,
      io,
      // With discovery the config's backends are its static list: a reload must not drop what was discovered.
      reconcile: (specs, options) =>
        discovery.discovery === undefined
          ? pool.reconcile(specs, options)
          : (discovery.discovery.setStatic(specs) ?? { added: [], updated: [], removed: [], replaced: [], unchanged: specs.map((s) => s.id ?? formatAddress(s)), settled: Promise.resolve() }),
      log: (line) => log.info(line),
      applied: (next, nextToken) => {
        token = nextToken;
        drainTimeout = next.drainTimeout;
      },
    });

  // One round of checks before the first client: clients that arrived while
  // every backend still awaited its probe would all pile onto the first one
  // to pass, and watches stay where they land.
  probe.attach(pool);
  probe.start();
  const first = await probe.checkNow();
  const upCount = first.filter((r) => r.ok).length;

  // allowHalfOpen: a client's FIN is forwarded, not answered; pauseOnConnect:
  // the ClientHello waits in the socket until the upstream is connected.
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => pool.accept(socket));
  // Refuse clients before the descriptors run out: the checks and the status
  // listener keep theirs, so a flood of clients is never blamed on a backend.
  const limit = descriptorLimit();
  const cap = new ClientCap(server, clientShare(config.maxClients, 1, limit), (line) => log.info(line));
  log.info(`max clients ${cap.max}${config.maxClients === undefined ? ` (from the descriptor limit ${limit})` : ''}`);
  stats = (): BalancerStats => ({ ...pool.stats(), clients: { max: cap.max, refused: cap.refused }, probe: probeSummary(config, probeStats) });
  let status: StatusServer | undefined;
  let address: HostPort;
  let closing: Promise<void> | undefined;
  // Ready while it accepts clients and can place them: a supervisor (keepalived,
  // a kubelet) moves traffic away from a balancer with nothing up or draining.
  const ready = (): boolean => closing === undefined && pool.backends().some((b) => pool.status(b.id)?.state === 'up');
  try {
    address = await listen(server, config.listen);
    if (config.status !== undefined || config.adminSocket !== undefined) {
      status = await startStatusServer(config.status, {
        stats,
        metrics: () =>
          renderMetrics(pool.stats(), probeStats.snapshot(), {
            clients: { max: cap.max, refused: cap.refused },
            build,
            processes: [proc.snapshot()],
            verdicts: verdicts.snapshot(),
            discovery: discovery.discovery?.stats(),
          }),
        ready,
        api: (req) =>
          handleAdminRequest(
            { pool, events, tokenDigest: () => token, drainTimeout: () => drainTimeout, reload, log: (line) => log.info(line) },
            req,
          ),
      }, statusOptions(config));
    }
  } catch (err) {
    server.close();
    events.close();
    rebalanceLog?.close();
    rebalancer?.close();
    log.close();
    probeStats.detach();
    proc.close();
    verdicts.close();
    await probe.stop();
    await pool.destroy();
    await access?.close();
    throw err;
  }
  try {
    await discovery.start();
  } catch (err) {
    // A kubeconfig that cannot be read: say so and run on the static backends.
    log.info(`discovery: not started: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Accept errors (EMFILE) must not kill the balancer; the pool reports its own.
  server.on('error', (err) => log.info(`listener error: ${err.message}`));

  log.info(
    upCount === 0
      ? `warning: no backend passed its first check; clients wait up to ${config.queueTimeout} ms for one`
      : `first checks: ${upCount} of ${first.length} backends up`,
  );

  const shutdown = async (force: boolean): Promise<void> => {
    const open = pool.stats().active;
    log.info(
      force
        ? `closing ${open} connection${open === 1 ? '' : 's'} now`
        : `shutting down: not accepting; ${open} connection${open === 1 ? '' : 's'} open, ${drainTimeout} ms to finish`,
    );
    server.close();
    await discovery.close();
    // No moves during a drain: it would close connections the drain lets finish.
    rebalanceLog?.close();
    rebalancer?.close();
    if (force) await pool.destroy();
    else await pool.close({ timeout: drainTimeout });
    await probe.stop();
    probeStats.detach();
    await status?.close();
    const closedAtDeadline = pool.stats().teardowns['pool-closed'] ?? 0;
    events.close();
    proc.close();
    verdicts.close();
    await access?.close();
    log.close();
    log.info(`stopped${closedAtDeadline > 0 ? ` (${closedAtDeadline} connection${closedAtDeadline === 1 ? '' : 's'} closed at the deadline)` : ''}`);
  };

  return {
    address,
    statusAddress: status?.address,
    pool,
    probe,
    events,
    rebalancer,
    stats,
    reload,
    close() {
      closing ??= shutdown(false);
      return closing;
    },
    destroy() {
      if (closing === undefined) {
        closing = shutdown(true);
        return closing;
      }
      // A drain is under way: cut it short; the drain's own promise finishes the rest.
      return pool.destroy().then(() => closing);
    },
  };
}
