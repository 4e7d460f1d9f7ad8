/**
 * The reference balancer for kube-apiservers: TLS passthrough, active health
 * checks, and every connection pinned to a backend torn down the moment the
 * backend is marked down. See docs/apiserver-balancer.md.
 *
 * ```sh
 * npx tsx examples/apiserver-balancer.ts --listen 0.0.0.0:6443 \
 *   --backend 10.0.0.1:6443 --backend 10.0.0.2:6443 --backend 10.0.0.3:6443 \
 *   --ca /etc/kubernetes/pki/ca.crt --status 127.0.0.1:9090
 * ```
 *
 * The package ships it built as the `failover-proxy-apiserver` bin. Usage
 * and error lines name the command as it was invoked (`process.argv[1]`).
 *
 * Prints `listening HOST:PORT` once it accepts clients (after `status
 * HOST:PORT` when `--status` is given). A bad flag or config: one line on
 * stderr, exit 2. SIGTERM/SIGINT: stop accepting, drain, exit 0; a second
 * signal closes what is left at once. SIGHUP: re-read `--config` and make the
 * pool match it (an invalid file is logged and changes nothing). With
 * `--workers N` the process is a `node:cluster` primary and the same program
 * runs in each worker (see balancer/workers.ts).
 *
 * @module
 */
import cluster from 'node:cluster';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatAddress, startBalancer, type RunningBalancer } from './balancer/balancer.js';
import { ConfigError, parseBalancerArgs, usage, type BalancerConfig } from './balancer/config.js';
import { packageVersion, programName } from './balancer/program-info.js';
import { ReloadError } from './balancer/reload.js';
import { runWorker, startWorkers } from './balancer/workers.js';

const name = programName(process.argv[1]);

function die(message: string, code: number): never {
  process.stderr.write(`${name}: ${message.replace(/[\r\n]+/g, ' ')}\n`);
  process.exit(code);
}

/** Runs the balancer with `argv` (without `node` and the script). */
export async function main(argv: readonly string[]): Promise<void> {
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  // A worker of `--workers N`: the primary sends it its settings.
  if (cluster.isWorker) {
    runWorker({ log });
    return;
  }
  let parsed;
  const parseIo = { readFile: (path: string) => readFileSync(path, 'utf8') };
  try {
    parsed = parseBalancerArgs(argv, parseIo);
  } catch (err) {
    if (err instanceof ConfigError) die(err.message, 2);
    throw err;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(usage(name));
    return;
  }
  if (parsed.kind === 'version') {
    const version = packageVersion();
    if (version === undefined) die('cannot tell the version: no package.json of failover-proxy above this program', 1);
    process.stdout.write(`${version}\n`);
    return;
  }
  // Signals are handled from the start: one that arrives during the first
  // round of checks stops the balancer as soon as it is up, still with exit 0.
  let balancer: Pick<RunningBalancer, 'address' | 'statusAddress' | 'close' | 'destroy' | 'reload'> | undefined;
  let signals = 0;
  const stop = (): void => {
    if (balancer === undefined) return;
    const stopped = signals === 1 ? balancer.close() : balancer.destroy();
    stopped.then(
      () => process.exit(0),
      (err: unknown) => die(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`, 1),
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    log(`${new Date().toISOString()} ${signal}${signals === 1 ? ' (send it again to close every connection at once)' : ''}`);
    stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // A reload re-parses the same command line: flags still win over the file.
  const hasConfig = argv.some((arg) => arg === '--config' || arg.startsWith('--config='));
  const loadConfig = (): BalancerConfig => {
    const again = parseBalancerArgs(argv, parseIo);
    if (again.kind !== 'run') throw new ConfigError('the command line no longer describes a balancer');
    return again.config;
  };
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
    const io = { log, readFile: (path: string) => readFileSync(path), loadConfig: hasConfig ? loadConfig : undefined };
    balancer = parsed.config.workers > 1 ? await startWorkers(parsed.config, io) : await startBalancer(parsed.config, io);
  } catch (err) {
    if (err instanceof ConfigError) die(err.message, 2);
    die(`cannot start: ${err instanceof Error ? err.message : String(err)}`, 1);
  }
  if (signals > 0) {
    stop();
    return;
  }
  if (balancer.statusAddress !== undefined) process.stdout.write(`status ${formatAddress(balancer.statusAddress)}\n`);
  // Scripts and tests wait for exactly this line.
  process.stdout.write(`listening ${formatAddress(balancer.address)}\n`);
}

/** Whether this module is the program (also through npm's `bin` symlink). */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

// Only when run as a program, so the module can be imported without effects.
if (isMain()) {
  main(process.argv.slice(2)).catch((err: unknown) => die(`unexpected error: ${err instanceof Error ? err.message : String(err)}`, 1));
}
