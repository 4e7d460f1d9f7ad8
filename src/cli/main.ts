/**
 * The program behind the `failover-proxy-apiserver` bin: {@link main} reads
 * the command line, starts the balancer (one process, or a `node:cluster`
 * primary and its workers) and turns signals into its lifecycle. See
 * docs/apiserver-balancer.md.
 *
 * Prints `listening HOST:PORT` once it accepts clients (after `status
 * HOST:PORT` when `--status` is given). A bad flag or config: one line on
 * stderr, exit 2. SIGTERM/SIGINT: stop accepting, drain, exit 0; a second
 * signal closes what is left at once. SIGHUP: re-read `--config` and make the
 * pool match it (an invalid file is logged and changes nothing). SIGUSR1 and
 * SIGUSR2: log the state (never Node's inspector; see process-guards.ts). A
 * closed stdout or stderr (EPIPE) drops log lines and changes nothing else.
 * With `--workers N` the process is a `node:cluster` primary and the same
 * program runs in each worker (see primary.ts and worker.ts); a worker
 * ignores SIGHUP, SIGUSR1 and SIGUSR2 sent to it (the primary reloads and
 * logs the state). Usage and error
 * lines name the command as it was invoked (`process.argv[1]`).
 *
 * @module
 */
import cluster from 'node:cluster';
import type { PoolStats } from '../index.js';
import { formatAddress } from './address.js';
import { startBalancer, type RunningBalancer } from './balancer.js';
import { ConfigError } from './config.js';
import { WorkerStartError, startWorkers } from './primary.js';
import { guardInspector, resilientWriter, sigusr1Disabled } from './process-guards.js';
import { packageVersion, programName } from './program-info.js';
import { ReloadError } from './reload.js';
import { processIo, readSettings } from './setup.js';
import { exitWhenStopped } from './shutdown.js';
import { usage } from './usage.js';
import { runWorker } from './worker.js';

const name = programName(process.argv[1]);

/** One line on stderr, named after the program, then exit with `code`. */
export function die(message: string, code: number): never {
  process.stderr.write(`${name}: ${message.replace(/[\r\n]+/g, ' ')}\n`);
  process.exit(code);
}

/** One line: the state of every backend, for SIGUSR1 and SIGUSR2. */
export function stateLine(stats: Pick<PoolStats, 'active' | 'waiting' | 'allDown' | 'backends'>): string {
  const backends = stats.backends.map((b) => `${b.id} ${b.state}/${b.admin} ${b.active} active`).join(', ');
  return `state: ${stats.active} active, ${stats.waiting} waiting${stats.allDown ? ', all down' : ''}; ${backends}`;
}

/** Runs the balancer with `argv` (without `node` and the script). */
export async function main(argv: readonly string[]): Promise<void> {
  // Whatever reads stdout may go away (`| head`, a log shipper): lose lines, not the process.
  const out = resilientWriter(process.stdout);
  resilientWriter(process.stderr);
  const log = (line: string): void => out(`${line}\n`);
  // A worker of `--workers N`: the primary sends it its settings.
  if (cluster.isWorker) {
    if (!sigusr1Disabled()) guardInspector();
    process.on('SIGUSR1', () => {});
    process.on('SIGUSR2', () => {});
    // Node's default for SIGHUP ends the process, and a terminal's hangup (or
    // `pkill -HUP` by the program's name) reaches the workers too: the reload
    // is the primary's, which sends it on to every worker.
    process.on('SIGHUP', () => {});
    runWorker({ log });
    return;
  }
  let parsed;
  try {
    parsed = readSettings(argv);
  } catch (err) {
    if (err instanceof ConfigError) die(err.message, 2);
    throw err;
  }
  if (parsed.kind === 'help') {
    out(usage(name));
    return;
  }
  if (parsed.kind === 'version') {
    const version = packageVersion();
    if (version === undefined) die('cannot tell the version: no package.json of failover-proxy above this program', 1);
    out(`${version}\n`);
    return;
  }
  // SIGUSR1 must never open Node's inspector on this root-run process.
  if (!sigusr1Disabled()) guardInspector();
  // Signals are handled from the start: one that arrives during the first
  // round of checks stops the balancer as soon as it is up, still with exit 0.
  let balancer:
    | (Pick<RunningBalancer, 'address' | 'statusAddress' | 'close' | 'destroy' | 'reload'> & {
        stats(): Pick<PoolStats, 'active' | 'waiting' | 'allDown' | 'backends'> | Promise<Pick<PoolStats, 'active' | 'waiting' | 'allDown' | 'backends'>>;
      })
    | undefined;
  let signals = 0;
  const stop = (): void => {
    if (balancer === undefined) return;
    exitWhenStopped(signals === 1 ? balancer.close() : balancer.destroy(), (message) => die(message, 1));
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    log(`${new Date().toISOString()} ${signal}${signals === 1 ? ' (send it again to close every connection at once)' : ''}`);
    stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGUSR2 (and SIGUSR1 where Node lets a listener have it): the state, in the log.
  const onDump = (signal: NodeJS.Signals): void => {
    if (balancer === undefined) return;
    Promise.resolve(balancer.stats()).then(
      (stats) => log(`${new Date().toISOString()} ${signal} ${stateLine(stats)}`),
      (err: unknown) => log(`${new Date().toISOString()} ${signal} state unavailable: ${err instanceof Error ? err.message : String(err)}`),
    );
  };
  process.on('SIGUSR1', onDump);
  process.on('SIGUSR2', onDump);
  process.on('SIGHUP', () => {
    log(`${new Date().toISOString()} SIGHUP`);
    if (balancer === undefined || signals > 0) return;
    try {
      balancer.reload();
    } catch (err) {
      // Already logged by the balancer, with the reason.
      if (!(err instanceof ReloadError)) log(`${new Date().toISOString()} reload failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  });

  try {
    const io = processIo(argv, log);
    balancer = parsed.config.workers > 1 ? await startWorkers(parsed.config, io) : await startBalancer(parsed.config, io);
  } catch (err) {
    if (err instanceof ConfigError) die(err.message, 2);
    // A Ctrl-C during a --workers start reaches the workers too, and one that
    // dies of it (or drains its empty pool and exits 0) before listening
    // fails the start. The operator asked to stop: a stop, exit 0, as one
    // process does when the signal comes during its first checks.
    if (signals > 0 && err instanceof WorkerStartError && (err.exitCode === 0 || err.signal === 'SIGINT' || err.signal === 'SIGTERM')) {
      log(`${new Date().toISOString()} stopped while starting (${err.message})`);
      process.exit(0);
    }
    die(`cannot start: ${err instanceof Error ? err.message : String(err)}`, 1);
  }
  if (signals > 0) {
    stop();
    return;
  }
  if (balancer.statusAddress !== undefined) out(`status ${formatAddress(balancer.statusAddress)}\n`);
  // Scripts and tests wait for exactly this line.
  out(`listening ${formatAddress(balancer.address)}\n`);
}
