/**
 * The reference apiserver balancer in one process, as a function of its
 * validated config: an {@link UpstreamPool} fed by a TCP listener (TLS
 * passthrough), a {@link HealthProbe} that marks backends down and up, the
 * log, and the status endpoint. Built only from the public API; what it is
 * built from is setup.ts, and how it stops is shutdown.ts.
 *
 * @module
 */
import { createServer } from 'node:net';
import { HealthProbe, UpstreamPool, type Rebalancer } from '../index.js';
import { formatAddress, type HostPort } from './address.js';
import { handleAdminRequest } from './admin-api.js';
import { ClientCap, clientShare, descriptorLimit } from './client-cap.js';
import type { BalancerConfig } from './config.js';
import { createBalancerDiscovery } from './discovery.js';
import { EventLog } from './event-log.js';
import { renderMetrics } from './metrics.js';
import { ProbeStats } from './probe-stats.js';
import { ProcessStats } from './process-stats.js';
import { RebalanceLog } from './rebalance-log.js';
import { RecentEvents } from './recent-events.js';
import type { ReloadSummary } from './reload.js';
import { reloadConfig } from './reload-config.js';
import {
  accessLogFor,
  asConfigError,
  buildInfo,
  listen,
  poolOptions,
  probeCheck,
  probeOptions,
  probeSummary,
  readToken,
  rebalancerFor,
  statusOptions,
  type BalancerIo,
  type BalancerStats,
} from './setup.js';
import { Shutdown, announceConnections, stoppedLine } from './shutdown.js';
import { startStatusServer, type StatusServer } from './status-server.js';
import { VerdictCounts } from './verdict-counts.js';

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
  const { pool, probe, rebalancer } = asConfigError(() => {
    const p = new UpstreamPool(poolOptions(config));
    return { pool: p, probe: new HealthProbe(probeOptions(config, check)), rebalancer: rebalancerFor(p, config) };
  });

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

  // What each step of the shared shutdown sequence is here (shutdown.ts).
  /** No moves during a drain: they would close connections the drain lets finish. */
  const stopMoving = (): void => {
    rebalanceLog?.close();
    rebalancer?.close();
  };
  /** Everything but the listener, the pool and discovery: also what a failed start undoes. */
  const release = async (): Promise<void> => {
    await probe.stop();
    probeStats.detach();
    await status?.close();
    events.close();
    proc.close();
    verdicts.close();
    await access?.close();
    log.close();
  };
  const shutdown = new Shutdown(
    {
      announce: (force, timeout) => announceConnections(pool.stats().active, force, timeout),
      async stopAccepting() {
        server.close();
        await discovery.close();
        stopMoving();
      },
      drain: (force, timeout) => (force ? pool.destroy() : pool.close({ timeout })),
      cutShort: () => pool.destroy(),
      release,
      finish: () => ({ line: stoppedLine(pool.stats().teardowns['pool-closed'] ?? 0) }),
    },
    { log: (line) => log.info(line), drainTimeout: () => drainTimeout },
  );

  // Ready while it accepts clients and can place them: a supervisor (keepalived,
  // a kubelet) moves traffic away from a balancer with nothing up or draining.
  const ready = (): boolean => !shutdown.started && pool.backends().some((b) => pool.status(b.id)?.state === 'up');
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
    // Nothing was accepted and discovery never started: undo the rest, quietly.
    server.close();
    stopMoving();
    await pool.destroy();
    await release();
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

  return {
    address,
    statusAddress: status?.address,
    pool,
    probe,
    events,
    rebalancer,
    stats,
    reload,
    close: () => shutdown.close(),
    destroy: () => shutdown.destroy(),
  };
}
