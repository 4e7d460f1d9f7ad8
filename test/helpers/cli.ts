/**
 * The reference balancer as a child process: spawned, its `status` and
 * `listening` lines awaited, killed after the test (with every worker it
 * reported, for `--workers`). {@link modes} and {@link startMode} run one
 * test body in one process and with `--workers 2`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** The program from source, run through tsx. */
export const cliEntry = join(root, 'examples/apiserver-balancer.ts');
/** The built program, as the package ships it. */
export const cliDist = join(root, 'dist/apiserver-balancer.js');

export interface RunningCli {
  readonly child: ChildProcess;
  /** Every stdout line so far. */
  readonly lines: string[];
  /** The client port (`listening` line). */
  readonly listen: number;
  /** The status port (`status` line), 0 without `--status`. */
  readonly status: number;
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** Worker pids seen in the log (`worker N (pid P)`), killed after the test if still running; add any others to kill. */
  readonly pids: Set<number>;
  stderr(): string;
}

/**
 * Starts the balancer with `args` and resolves once it prints `listening`;
 * rejects with its stderr and output when it exits first. `program` is
 * {@link cliEntry} (through tsx) or {@link cliDist} (node alone); `nofile`
 * lowers its descriptor limit (needs prlimit, from util-linux).
 */
export async function startCli(t: TestContext, args: readonly string[], program = cliEntry, options: { readonly nofile?: number } = {}): Promise<RunningCli> {
  const nodeArgs = program.endsWith('.ts') ? ['--import', 'tsx', program, ...args] : [program, ...args];
  // `nofile`: run under that descriptor limit (prlimit execs node: same pid).
  const child =
    options.nofile === undefined
      ? spawn(process.execPath, nodeArgs, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('prlimit', [`--nofile=${options.nofile}:${options.nofile}`, process.execPath, ...nodeArgs], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const pids = new Set<number>();
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // Workers exit when their primary's channel closes. In case one does not:
    // by pid, and only while that pid still runs this program (pids are reused).
    for (const pid of pids) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(program)) process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const ports = await new Promise<{ listen: number; status: number }>((resolve, reject) => {
    let status = 0;
    child.once('exit', () => reject(new Error(`exited early: ${stderr}\n${lines.join('\n')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const pid = / worker \d+ \(pid (\d+)\)/.exec(line)?.[1];
      if (pid !== undefined) pids.add(Number(pid));
      if (line.startsWith('status ')) status = Number(line.split(':').at(-1));
      if (line.startsWith('listening ')) resolve({ listen: Number(line.split(':').at(-1)), status });
    });
  });
  return { child, lines, exited, pids, ...ports, stderr: () => stderr };
}

/** The two ways the balancer runs: one process, and a primary with workers. */
export const modes = ['single', 'workers'] as const;
export type Mode = (typeof modes)[number];

/** The balancer in `mode`: the same flags, plus `--workers 2` for the multi-core mode. */
export function startMode(t: TestContext, mode: Mode, args: readonly string[], program = cliEntry): Promise<RunningCli> {
  return startCli(t, mode === 'workers' ? [...args, '--workers', '2'] : args, program);
}
