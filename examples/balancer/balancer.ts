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
import { FailoverProxyError, HealthProbe, UpstreamPool, type HealthProbeOptions, type UpstreamPoolOptions } from '../../src/index.js';
import { ConfigError, type BalancerConfig, type HostPort } from './config.js';
import { EventLog } from './event-log.js';
import { renderMetrics } from './metrics.js';
import { ProbeStats } from './probe-stats.js';
import { startStatusServer, type StatusServer } from './status-server.js';

/** The I/O a balancer needs. */
export interface BalancerIo {
  /** Receives every log line, without the trailing newline. */
  readonly log: (line: string) => void;
  /** Reads a certificate or key file. */
  readonly readFile: (path: string) => Buffer;
}

/** A running balancer. */
export interface RunningBalancer {
  /** Where clients connect. */
  readonly address: HostPort;
  /** Where `/stats` and `/metrics` are served, if they are. */
  readonly statusAddress: HostPort | undefined;
  readonly pool: UpstreamPool;
  readonly probe: HealthProbe;
  /** The `/stats` document. */
  stats(): BalancerStats;
  /**
   * Stops accepting, lets open connections finish for `drainTimeout` ms, then
   * closes the rest, stops the probe and the status endpoint. Idempotent.
   */
  close(): Promise<void>;
  /** Closes every connection now, then as {@link RunningBalancer.close}. */
  destroy(): Promise<void>;
}

/** `/stats`: the pool's snapshot and, per backend, its probe figures. */
export type BalancerStats = ReturnType<UpstreamPool['stats']> & {
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

/** Formats `host:port`, brackets around IPv6. */
export function formatAddress(address: HostPort): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** A TLS file, read now so a bad path stops the start with exit 2. */
function readTlsFile(io: BalancerIo, flag: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return io.readFile(path);
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    throw new ConfigError(`${flag} ${path}: cannot read it (${typeof code === 'string' ? code : String(err)})`);
  }
}

/** Builds the probe's check from the config, reading and checking the TLS files. */
export function probeCheck(config: BalancerConfig, io: BalancerIo): NonNullable<HealthProbeOptions['check']> {
  const { check } = config;
  if (check.type === 'tcp') return { type: 'tcp' };
  if (check.type === 'http') return { type: 'http', path: check.path };
  const ca = readTlsFile(io, '--ca', config.ca);
  const cert = readTlsFile(io, '--cert', config.cert);
  const key = readTlsFile(io, '--key', config.key);
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
  return check.type === 'tls' ? { type: 'tls', ...tls } : { type: 'https', path: check.path, ...tls };
}

/** The pool's options: the same in the single process and in every worker. */
export function poolOptions(config: Pick<BalancerConfig, 'backends' | 'strategy' | 'connectTimeout' | 'retries' | 'queueTimeout' | 'drainTimeout'>): UpstreamPoolOptions {
  return {
    backends: config.backends.map((b) => ({ host: b.host, port: b.port, id: b.id })),
    balancer: config.strategy,
    // Nothing is sent to a backend before its first check passes.
    initialState: 'probe',
    connectTimeout: config.connectTimeout,
    retries: config.retries,
    queue: { timeout: config.queueTimeout },
    closeTimeout: config.drainTimeout,
  };
}

/** The probe's options; it is started by hand once attached. */
export function probeOptions(config: BalancerConfig, check: NonNullable<HealthProbeOptions['check']>): HealthProbeOptions {
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
  let pool: UpstreamPool;
  let probe: HealthProbe;
  try {
    pool = new UpstreamPool(poolOptions(config));
    probe = new HealthProbe(probeOptions(config, check));
  } catch (err) {
    // The parser should have caught it; if the library disagrees, it is still a config error.
    if (err instanceof FailoverProxyError && err.code === 'INVALID_ARGUMENT') throw new ConfigError(err.message);
    throw err;
  }

  const probeStats = new ProbeStats();
  probeStats.attach(probe);
  const log = new EventLog(pool, probe, { write: io.log });
  const stats = (): BalancerStats => ({ ...pool.stats(), probe: probeSummary(config, probeStats) });

  const checkName = stats().probe.check;
  log.info(
    `balancing ${config.backends.length} backend${config.backends.length === 1 ? '' : 's'} (${config.backends.map((b) => b.id).join(', ')}) ` +
      `with ${config.strategy}; check ${checkName} every ${config.interval} ms, timeout ${config.timeout} ms, rise ${config.rise}, fall ${config.fall}`,
  );
  if (config.insecure) log.info(`warning: --insecure: the ${checkName} check does not verify the backends' certificates`);

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
  let status: StatusServer | undefined;
  let address: HostPort;
  try {
    address = await listen(server, config.listen);
    if (config.status !== undefined) {
      status = await startStatusServer(config.status, { stats, metrics: () => renderMetrics(pool.stats(), probeStats.snapshot()) });
    }
  } catch (err) {
    server.close();
    log.close();
    probeStats.detach();
    await probe.stop();
    await pool.destroy();
    throw err;
  }
  // Accept errors (EMFILE) must not kill the balancer; the pool reports its own.
  server.on('error', (err) => log.info(`listener error: ${err.message}`));

  log.info(
    upCount === 0
      ? `warning: no backend passed its first check; clients wait up to ${config.queueTimeout} ms for one`
      : `first checks: ${upCount} of ${first.length} backends up`,
  );

  let closing: Promise<void> | undefined;
  const shutdown = async (force: boolean): Promise<void> => {
    const open = pool.stats().active;
    log.info(
      force
        ? `closing ${open} connection${open === 1 ? '' : 's'} now`
        : `shutting down: not accepting; ${open} connection${open === 1 ? '' : 's'} open, ${config.drainTimeout} ms to finish`,
    );
    server.close();
    if (force) await pool.destroy();
    else await pool.close({ timeout: config.drainTimeout });
    await probe.stop();
    probeStats.detach();
    await status?.close();
    const closedAtDeadline = pool.stats().teardowns['pool-closed'] ?? 0;
    log.close();
    log.info(`stopped${closedAtDeadline > 0 ? ` (${closedAtDeadline} connection${closedAtDeadline === 1 ? '' : 's'} closed at the deadline)` : ''}`);
  };

  return {
    address,
    statusAddress: status?.address,
    pool,
    probe,
    stats,
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
