/**
 * The processes of a verify run. Each one leads its own process group
 * (`detached`), so a balancer that forks workers (nginx, `--workers`) is
 * stopped whole by one signal to the group; each group id is written to the
 * run directory's `groups` file before anything else happens, so the
 * supervising process can kill every group even if this one dies first.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The file in the run directory listing every process group started. */
export const GROUPS_FILE = 'groups';

/** A started process group, with its recent output. */
export interface Started {
  readonly label: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** The last lines it printed (stdout and stderr, up to 200). */
  readonly lines: string[];
  /** Resolves with the first output line matching `pattern`; rejects if it exits first or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Signals the whole group; ignores a group already gone. */
  signal(signal: NodeJS.Signals): void;
  /** SIGCONT + SIGTERM to the group, SIGKILL after `graceMs`; resolves once the leader exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** `true` once the leader exited. */
  readonly exited: boolean;
}

const started = new Set<Started>();

/** Every group still running, SIGKILLed at once (for exit paths; synchronous). */
export function killAllGroups(): void {
  for (const s of started) {
    s.signal('SIGCONT');
    s.signal('SIGKILL');
  }
}

/**
 * Starts `command` as the leader of a new process group, records the group
 * in `<dir>/groups` and announces it on stderr through `log`.
 */
export function startGroup(label: string, command: string, args: readonly string[], dir: string, log: (line: string) => void, mirror = false): Started {
  const child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  if (child.pid === undefined) throw new Error(`could not start ${label} (${command})`);
  const pid = child.pid;
  appendFileSync(join(dir, GROUPS_FILE), `${pid}\n`);
  log(`started ${label} (process group ${pid})`);
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const onLine = (line: string): void => {
    lines.push(line);
    if (lines.length > 200) lines.shift();
    if (mirror) process.stderr.write(`[${label}] ${line}\n`);
    for (const l of listeners) l(line);
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  let exited = false;
  const exitPromise = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  child.once('error', () => undefined);
  let stopping: Promise<void> | undefined;
  const s: Started = {
    label,
    child,
    pid,
    lines,
    get exited() {
      return exited;
    },
    signal(signal) {
      try {
        process.kill(-pid, signal);
      } catch {
        // The group is gone.
      }
    },
    waitForLine(pattern, timeoutMs) {
      for (const line of lines) {
        const m = pattern.exec(line);
        if (m) return Promise.resolve(m);
      }
      return new Promise((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
        };
        const check = (line: string): void => {
          const m = pattern.exec(line);
          if (m) {
            done();
            resolve(m);
          }
        };
        const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
          done();
          reject(new Error(`${label} exited (${code ?? sig}) before printing ${pattern}: ${lines.slice(-5).join(' | ')}`));
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${label}: no line matching ${pattern} within ${timeoutMs} ms`));
        }, timeoutMs);
        listeners.add(check);
        child.once('exit', onExit);
      });
    },
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (!exited) {
          s.signal('SIGCONT');
          s.signal('SIGTERM');
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([exitPromise, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
          clearTimeout(timer);
        }
        // The leader may be gone while others of its group are not (nginx's workers, a shell's child).
        s.signal('SIGKILL');
        await exitPromise;
        started.delete(s);
      })();
      return stopping;
    },
  };
  started.add(s);
  return s;
}
