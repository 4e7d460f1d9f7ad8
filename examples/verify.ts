/**
 * `failover-proxy-verify`: the silent-partition scenario as a tool anyone can
 * point at their own balancer (nginx, HAProxy, this package's balancer, any
 * command). See docs/verify.md and `--help`.
 *
 * ```sh
 * npx failover-proxy-verify --quick \
 *   --balancer 'npx failover-proxy-apiserver --listen {listen} {backends:--backend HOST:PORT} --ca {ca}'
 * ```
 *
 * Three processes' worth of structure, all this one program:
 * - the supervisor (what the user runs): makes the run directory, starts the
 *   scenario as the leader of its own process group (inside a fresh network
 *   namespace with `unshare -n` in netns mode), relays SIGINT/SIGTERM, and on
 *   every way out kills every process group the run started (their ids are in
 *   the run directory's `groups` file) and removes the directory;
 * - the scenario (`__scenario`, see verify/scenario.ts);
 * - a backend (`__backend`), one process per backend so a blackhole can
 *   freeze one with SIGSTOP.
 *
 * Shipped next to the balancer's program (examples/apiserver-balancer.ts):
 * both are programs built on the library rather than part of its API, both
 * are bundled by tsup into dist/ as bins, and this one reuses the scenario
 * pieces in examples/support/ that the tests and benches use.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiserverBackend } from './support/apiserver-backend.js';
import { netnsMissing } from './support/nft-cut.js';
import { packageVersion } from '../src/cli/program-info.js';
import { parseVerifyArgs, verifyUsage, VerifyUsageError, type VerifyOptions } from './verify/options.js';
import { GROUPS_FILE, killAllGroups } from './verify/processes.js';
import { formatTable, type VerifyResult } from './verify/report.js';
import { runScenario } from './verify/scenario.js';
import { checkTemplate } from './verify/template.js';

const name = 'failover-proxy-verify';
const RESULT_PREFIX = 'VERIFY_RESULT ';

function log(line: string): void {
  process.stderr.write(`[verify ${new Date().toISOString().slice(11, 23)}] ${line}\n`);
}

/** `[node, ...its flags, this script]`: how to run this program again (built or through tsx). */
function selfCommand(): string[] {
  return [process.execPath, ...process.execArgv, process.argv[1]!];
}

/** `__backend NAME HOST:PORT CERT KEY`: one TLS apiserver-like backend until SIGTERM. */
async function serveBackend(argv: readonly string[]): Promise<void> {
  const [backendName, listen, cert, key] = argv;
  const m = /^(.+):(\d+)$/.exec(listen ?? '');
  if (backendName === undefined || m === null || cert === undefined || key === undefined) throw new Error('usage: __backend NAME HOST:PORT CERT KEY');
  const backend = await ApiserverBackend.start({
    name: backendName,
    host: m[1]!,
    port: Number(m[2]),
    tls: { cert: readFileSync(cert), key: readFileSync(key) },
  });
  process.stdout.write(`listening ${backend.host}:${backend.port}\n`);
  // Alive until SIGTERM, even while not listening (the RST fault).
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const stop = (): void => {
    clearInterval(keepAlive);
    backend.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The RST fault: no listener (new connections refused) and every open one
  // reset, from the backend's own kernel, so every sequence number is right;
  // SIGUSR2 heals it.
  process.on('SIGUSR1', () => {
    backend.refuseAndReset().then(
      (n) => process.stdout.write(`reset ${n}\n`),
      (err: unknown) => process.stdout.write(`reset failed: ${String(err)}\n`),
    );
  });
  process.on('SIGUSR2', () => {
    backend.listenAgain().then(
      () => process.stdout.write('listening again\n'),
      (err: unknown) => process.stdout.write(`listen again failed: ${String(err)}\n`),
    );
  });
}

/** `__scenario MODE DIR OPTIONS-JSON`: the scenario, its result as one line on stdout. */
async function scenario(argv: readonly string[]): Promise<void> {
  const [mode, dir, json] = argv;
  if ((mode !== 'netns' && mode !== 'proxy') || dir === undefined || json === undefined) throw new Error('usage: __scenario MODE DIR OPTIONS');
  const options = JSON.parse(json) as VerifyOptions;
  const result: VerifyResult = {
    tool: name,
    version: packageVersion(),
    mode,
    streams: options.streams,
    balancer: options.balancer,
    command: undefined,
    windowMs: options.windowMs,
    settleMs: options.settleMs,
    startedAt: new Date().toISOString(),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    phases: [],
  };
  const print = (): void => {
    process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping every process of the run`);
      killAllGroups();
      result.error = `interrupted by ${signal}`;
      print();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
  process.on('exit', killAllGroups);
  try {
    await runScenario({ options, mode, dir, self: selfCommand(), log }, result);
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  }
  print();
  process.exit(result.error === undefined ? 0 : 1);
}

/** Is any process of group `pgid` still running? A zombie left for a non-reaping init counts as gone: it runs nothing and holds nothing. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
    } catch {
      // Exited meanwhile.
    }
  }
  return false;
}

/** The supervisor: see the module comment. Resolves with the exit code. */
async function supervise(options: VerifyOptions): Promise<number> {
  checkTemplate(options.balancer, options.configTemplate !== undefined);
  if (options.configTemplate !== undefined) {
    if (!existsSync(options.configTemplate)) throw new VerifyUsageError(`--config-template: no file \`${options.configTemplate}\``);
    checkTemplate(readFileSync(options.configTemplate, 'utf8'), true);
  }
  let mode: 'netns' | 'proxy';
  const missing = options.mode === 'proxy' ? 'not asked for' : netnsMissing();
  if (options.mode === 'netns' && missing !== undefined) {
    log(`--mode netns: ${missing}`);
    return 1;
  }
  if (missing === undefined) mode = 'netns';
  else {
    mode = 'proxy';
    if (options.mode === 'auto') log(`no network namespace (${missing}): faults come from a fault proxy in front of each backend`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'failover-proxy-verify-'));
  log(`run directory ${dir}`);
  const [node, ...selfArgs] = selfCommand();
  const innerArgs = [...selfArgs, '__scenario', mode, dir, JSON.stringify(options)];
  const inner = mode === 'netns' ? spawn('unshare', ['-n', '--', node!, ...innerArgs], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(node!, innerArgs, { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  const innerPid = inner.pid;
  const groups = (): number[] => {
    const ids = innerPid === undefined ? [] : [innerPid];
    try {
      for (const line of readFileSync(join(dir, GROUPS_FILE), 'utf8').split('\n')) if (/^\d+$/.test(line)) ids.push(Number(line));
    } catch {
      // No group started yet.
    }
    return ids;
  };
  let cleaned = false;
  const killEverything = (): void => {
    for (const pgid of groups()) {
      for (const signal of ['SIGCONT', 'SIGKILL'] as const) {
        try {
          process.kill(-pgid, signal);
        } catch {
          // Gone.
        }
      }
    }
  };
  const cleanUp = (): void => {
    if (cleaned) return;
    cleaned = true;
    killEverything();
    rmSync(dir, { recursive: true, force: true });
  };
  // Last resort, synchronous: whatever way this process ends, nothing of the run stays.
  process.on('exit', cleanUp);
  log(`started the scenario (process group ${innerPid ?? '?'}, ${mode === 'netns' ? 'private network namespace' : 'fault proxy'})`);
  let interrupted: NodeJS.Signals | undefined;
  let hardKill: NodeJS.Timeout | undefined;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted !== undefined) {
        killEverything();
        return;
      }
      interrupted = signal;
      log(`${signal}: stopping the run`);
      if (innerPid !== undefined) {
        try {
          process.kill(innerPid, signal);
        } catch {
          // Already gone.
        }
      }
      hardKill = setTimeout(killEverything, 5000);
    });
  }
  let resultLine: string | undefined;
  let stdout = '';
  inner.stdout.setEncoding('utf8');
  inner.stdout.on('data', (d: string) => {
    stdout += d;
    for (let nl = stdout.indexOf('\n'); nl !== -1; nl = stdout.indexOf('\n')) {
      const line = stdout.slice(0, nl);
      stdout = stdout.slice(nl + 1);
      if (line.startsWith(RESULT_PREFIX)) resultLine = line.slice(RESULT_PREFIX.length);
    }
  });
  const exitCode = await new Promise<number | null>((resolve) => {
    inner.once('error', (err) => {
      log(`could not start the scenario: ${err.message}`);
      resolve(null);
    });
    inner.once('exit', (code) => resolve(code));
  });
  clearTimeout(hardKill);
  killEverything();
  // Wait (briefly) until every group is really gone, so "done" means done.
  const deadline = Date.now() + 5000;
  while (groups().some(groupAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  cleanUp();
  const result = resultLine === undefined ? undefined : (JSON.parse(resultLine) as VerifyResult);
  if (result !== undefined) process.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : formatTable(result));
  if (interrupted !== undefined) return interrupted === 'SIGINT' ? 130 : 143;
  if (result === undefined) {
    log(`the scenario ended (exit ${exitCode ?? 'unknown'}) without a result`);
    return 1;
  }
  if (result.error !== undefined) {
    log(`error: ${result.error}`);
    return 1;
  }
  if (options.strict && result.phases.some((p) => p.stuck + p.lost > 0)) return 4;
  return exitCode === 0 ? 0 : 1;
}

/** Runs the program with `argv` (without `node` and the script). */
export async function main(argv: readonly string[]): Promise<void> {
  if (argv[0] === '__backend') return serveBackend(argv.slice(1));
  if (argv[0] === '__scenario') return scenario(argv.slice(1));
  try {
    const parsed = parseVerifyArgs(argv);
    if (parsed.kind === 'help') {
      process.stdout.write(verifyUsage(name));
      return;
    }
    if (parsed.kind === 'version') {
      process.stdout.write(`${packageVersion() ?? 'unknown'}\n`);
      return;
    }
    process.exitCode = await supervise(parsed.options);
  } catch (err) {
    if (err instanceof VerifyUsageError) {
      process.stderr.write(`${name}: ${err.message.replace(/[\r\n]+/g, ' ')} [${err.code}]\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
