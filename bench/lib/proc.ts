/**
 * Child processes of a bench: spawned and tracked by pid, waited for by the
 * line they print when ready, stopped by pid (SIGTERM, then SIGKILL), and
 * measured through /proc (CPU seconds, RSS). Every child this module starts
 * is killed when the bench process exits, whatever way it exits.
 *
 * @module
 */
import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (bench/lib/../..). */
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

const live = new Set<ChildProcess>();
/** Children that lead their own process group: killed with every process they started. */
const groups = new WeakSet<ChildProcess>();

function kill(child: ChildProcess, pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(groups.has(child) ? -pid : pid, signal);
  } catch {
    /* already gone */
  }
}
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL by pid, nothing else.
  process.on('exit', () => {
    for (const child of live) {
      if (child.pid !== undefined && (groups.has(child) || (child.exitCode === null && child.signalCode === null))) kill(child, child.pid, 'SIGKILL');
    }
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => process.exit(130));
  }
}

/** A started child, with what it printed. */
export interface Child {
  readonly pid: number;
  readonly process: ChildProcess;
  /** Everything written to stderr so far (for error messages). */
  stderr(): string;
  /** The last stdout lines (up to 1,000). */
  lines(): readonly string[];
  /** Resolves with the first stdout line matching `pattern`; rejects if the child exits first or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Writes one line to the child's stdin. */
  send(line: string): void;
  /** Sends a line and resolves with the next stdout line that starts with `reply` (a small request/response channel). */
  request(line: string, reply: string, timeoutMs?: number): Promise<string>;
  /** SIGTERM by pid, SIGKILL after `graceMs`; resolves once it exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves when the child exits. */
  readonly exited: Promise<void>;
}

/**
 * Spawns `command` with pipes on stdin/stdout/stderr and tracks it. With
 * `detached: true` it leads a new process group, and stopping it (or this
 * process exiting) signals the whole group by its pid.
 *
 * @example
 * ```ts
 * const child = startChild('haproxy', ['-db', '-f', cfg]);
 * await child.stop();
 * ```
 */
export function startChild(command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  installExitHook();
  const proc = spawn(command, args, { cwd: repoRoot, ...options, stdio: ['pipe', 'pipe', 'pipe'] });
  if (proc.pid === undefined) {
    // spawn failures (ENOENT) are reported on 'error' right after.
    throw new Error(`could not start ${command}`);
  }
  const pid = proc.pid;
  live.add(proc);
  if (options.detached === true) groups.add(proc);
  let stderr = '';
  let stdoutBuf = '';
  const lines: string[] = [];
  const waiters = new Set<(line: string | undefined) => void>();
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d: string) => {
    if (stderr.length < 64 * 1024) stderr += d;
    if (process.env['BENCH_CHILD_STDERR'] === '1') process.stderr.write(`[${pid}] ${d}`);
  });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d: string) => {
    stdoutBuf += d;
    let nl: number;
    while ((nl = stdoutBuf.indexOf('\n')) !== -1) {
      const line = stdoutBuf.slice(0, nl);
      stdoutBuf = stdoutBuf.slice(nl + 1);
      lines.push(line);
      if (lines.length > 1000) lines.shift();
      for (const w of [...waiters]) w(line);
    }
  });
  proc.stdin.on('error', () => {});
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', () => {
      // A group leader's children may outlive it: they are killed with the group.
      if (groups.has(proc)) kill(proc, pid, 'SIGKILL');
      live.delete(proc);
      for (const w of [...waiters]) w(undefined);
      resolve();
    });
    proc.once('error', () => {
      live.delete(proc);
      for (const w of [...waiters]) w(undefined);
      resolve();
    });
  });
  let stopping: Promise<void> | undefined;

  const nextLine = (match: (line: string) => RegExpMatchArray | null, timeoutMs: number, what: string, fromBacklog: boolean): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      if (fromBacklog) {
        for (const line of lines) {
          const m = match(line);
          if (m) {
            resolve(m);
            return;
          }
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`${command} (pid ${pid}): no ${what} within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
      }, timeoutMs);
      const waiter = (line: string | undefined): void => {
        if (line === undefined) {
          clearTimeout(timer);
          waiters.delete(waiter);
          reject(new Error(`${command} (pid ${pid}) exited (${proc.exitCode ?? proc.signalCode ?? '?'}) before ${what}; stderr: ${stderr.slice(-2000)}`));
          return;
        }
        const m = match(line);
        if (m) {
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(m);
        }
      };
      waiters.add(waiter);
    });

  return {
    pid,
    process: proc,
    exited,
    stderr: () => stderr,
    lines: () => lines,
    waitForLine: (pattern, timeoutMs = 15_000) => nextLine((l) => pattern.exec(l), timeoutMs, `line matching ${String(pattern)}`, true),
    send(line) {
      proc.stdin.write(`${line}\n`);
    },
    async request(line, reply, timeoutMs = 60_000) {
      const p = nextLine((l) => (l.startsWith(reply) ? [l] as unknown as RegExpMatchArray : null), timeoutMs, `reply ${reply} to ${line}`, false);
      proc.stdin.write(`${line}\n`);
      const m = await p;
      return m[0].slice(reply.length).trim();
    },
    stop(graceMs = 3000) {
      stopping ??= (async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        kill(proc, pid, 'SIGTERM');
        const timer = setTimeout(() => kill(proc, pid, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

/** The command line to run a TypeScript file of this repo with Node and tsx. */
export function nodeTs(file: string, args: readonly string[], nodeFlags: readonly string[] = []): [string, string[]] {
  return [process.execPath, [...nodeFlags, '--import', 'tsx', file, ...args]];
}

/** A port free on `host` right now (bound and released; the race is harmless on loopback). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

let clockTicks: number | undefined;

/** Clock ticks per second, for /proc/PID/stat. */
function ticks(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** The pids of `pid` and all its descendants (threads excluded). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const task of tasks) {
      try {
        const children = readFileSync(`/proc/${p}/task/${task}/children`, 'utf8').trim();
        if (children !== '') for (const c of children.split(/\s+/)) out.push(Number(c));
      } catch {
        /* exited */
      }
    }
  }
  return out;
}

/** User + system CPU seconds used so far by `pid` (all its threads), or by its whole tree. */
export function cpuSeconds(pid: number, tree = false): number {
  return cpuTimes(pid, tree, true);
}

/** System (kernel) CPU seconds used so far by `pid`, or by its whole tree: the syscalls' share of {@link cpuSeconds}. */
export function systemSeconds(pid: number, tree = false): number {
  return cpuTimes(pid, tree, false);
}

function cpuTimes(pid: number, tree: boolean, user: boolean): number {
  let total = 0;
  for (const p of tree ? processTree(pid) : [pid]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after the parenthesised command: state is field 3; utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += ((user ? Number(fields[11]) : 0) + Number(fields[12])) / ticks();
    } catch {
      /* exited */
    }
  }
  return total;
}

/** Minor page faults of `pid` (all its threads) so far, or of its whole tree. */
export function minorFaults(pid: number, tree = false): number {
  let total = 0;
  for (const p of tree ? processTree(pid) : [pid]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // minflt is field 10.
      total += Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
    } catch {
      /* exited */
    }
  }
  return total;
}

/** Resident set size in bytes of `pid`, or of its whole tree. */
export function rssBytes(pid: number, tree = false): number {
  let total = 0;
  for (const p of tree ? processTree(pid) : [pid]) {
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
      if (m) total += Number(m[1]) * 1024;
    } catch {
      /* exited */
    }
  }
  return total;
}

/** The soft and hard `RLIMIT_NOFILE` of this process. */
export function fileLimit(): { soft: number; hard: number } {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const parse = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
  return { soft: parse(m?.[1]), hard: parse(m?.[2]) };
}

/** Waits `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * How many proxied connections one process can hold under the hard
 * `RLIMIT_NOFILE` (two descriptors each, `reserve` kept for everything
 * else), rounded down to a hundred, capped at `wanted`. Node raises its soft
 * limit to the hard one at startup; only CAP_SYS_RESOURCE could go beyond.
 */
export function proxiedConnectionCap(wanted: number, reserve = 150): number {
  const { hard } = fileLimit();
  if (!Number.isFinite(hard)) return wanted;
  return Math.min(wanted, Math.floor((hard - reserve) / 2 / 100) * 100);
}
