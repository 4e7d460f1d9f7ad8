/**
 * Building blocks for the fault matrix, the invariant run and the soak: a
 * seeded PRNG, backends run as child processes (so SIGKILL and SIGSTOP reach
 * the server itself), and a recorder of every connection a pool opens and
 * closes. Nothing here asserts on wall-clock speed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApiserverBackend } from '../../examples/support/apiserver-backend.js';
import { loadCerts } from '../../examples/support/certs.js';
import { WatchFleet } from '../../examples/support/watch-client.js';
import { HealthProbe, UpstreamPool, type ConnectionClosedInfo, type PinnedConnection, type PoolMember } from '../../src/index.js';
import { frontend, HOST } from './net.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
const backendScript = fileURLToPath(new URL('../../examples/support/apiserver-backend.ts', import.meta.url));

/**
 * xorshift32: small, fast, and the same sequence for the same seed on every
 * machine, so a failing run is reproduced with `SEED=<n>`.
 */
export class Prng {
  #state: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed === 0 ? 0x9e3779b9 : this.seed;
  }

  /** A float in [0, 1). */
  next(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state / 2 ** 32;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty array');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** `true` with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** `n` pseudo-random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
}

/** The seed of a randomized test: `SEED=<n>` when given (to reproduce a failure), else a fresh one. */
export function seedFromEnv(fallback?: number): number {
  const given = process.env['SEED'];
  if (given !== undefined && given !== '') {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`SEED must be an integer from 0 to 4294967295, got ${given}`);
    return n;
  }
  return fallback ?? Math.floor(Math.random() * 0xffffffff);
}

/** An apiserver-like backend in its own process. */
export interface ChildBackend {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  /** Resolves when the process has exited (with its signal, if killed). */
  readonly exited: Promise<NodeJS.Signals | number | null>;
  /** Sends a signal to the server process itself (not a wrapper). */
  signal(sig: NodeJS.Signals): void;
}

/**
 * Starts `examples/support/apiserver-backend.ts` as `node --import tsx ...`,
 * so the pid is the server's own and SIGSTOP freezes it. On the way out it is
 * continued (a stopped process ignores SIGTERM) and killed, by pid.
 */
export async function spawnBackend(t: TestContext, name: string, options: { plain?: boolean; watchIntervalMs?: number } = {}): Promise<ChildBackend> {
  const args = ['--import', 'tsx', backendScript, '--name', name, '--listen', '127.0.0.1:0', '--watch-interval-ms', String(options.watchIntervalMs ?? 50)];
  if (options.plain === true) args.push('--plain');
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn backend ${name}`);
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, sig) => resolve(sig ?? code)));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  t.after(async () => {
    if (!alive()) return;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    await exited;
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    const onExit = (): void => reject(new Error(`backend ${name} exited before listening: ${stderr}`));
    child.once('exit', onExit);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = /^listening 127\.0\.0\.1:(\d+)$/.exec(line);
      if (match) {
        child.off('exit', onExit);
        resolve(Number(match[1]));
      }
    });
  });
  return {
    child,
    pid,
    host: '127.0.0.1',
    port,
    exited,
    signal(sig) {
      if (alive()) process.kill(pid, sig);
    },
  };
}

/** Waits for a child to exit, bounded; kills it (by pid) if it does not. */
export async function exitOf(child: ChildProcess, bound = 20_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const timer = setTimeout(() => child.kill('SIGKILL'), bound);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

/** What a {@link ConnectionLedger} knows about one connection. */
export interface LedgerEntry {
  readonly conn: PinnedConnection;
  readonly backend: string;
  /** `closed` events seen on the connection itself. */
  ownClosed: number;
  /** `connectionClosed` events the pool emitted for it. */
  poolClosed: number;
  info: ConnectionClosedInfo | undefined;
}

/**
 * Records every connection a pool opens and every close it reports, from
 * both the connection's own `closed` event and the pool's, so a test can
 * check each fired exactly once and carried a reason.
 */
export class ConnectionLedger {
  readonly entries = new Map<PoolMember, LedgerEntry>();
  readonly reasons = new Map<string, number>();
  readonly #pool: UpstreamPool;

  constructor(pool: UpstreamPool) {
    this.#pool = pool;
    pool.on('connectionOpened', this.#onOpened);
    pool.on('connectionClosed', this.#onClosed);
  }

  readonly #onOpened = (conn: PoolMember): void => {
    const entry: LedgerEntry = { conn: conn as PinnedConnection, backend: conn.backend?.id ?? '?', ownClosed: 0, poolClosed: 0, info: undefined };
    this.entries.set(conn, entry);
    conn.on('closed', (info) => {
      entry.ownClosed++;
      entry.info = info;
    });
  };

  readonly #onClosed = (conn: PoolMember, info: ConnectionClosedInfo): void => {
    const entry = this.entries.get(conn);
    if (entry === undefined) throw new Error(`connectionClosed for a connection never opened (${info.reason})`);
    entry.poolClosed++;
    this.reasons.set(info.reason, (this.reasons.get(info.reason) ?? 0) + 1);
  };

  /** Connections not closed yet. */
  open(backend?: string): LedgerEntry[] {
    return [...this.entries.values()].filter((e) => !e.conn.closed && (backend === undefined || e.backend === backend));
  }

  /** Closed connections, optionally of one backend. */
  closed(backend?: string): LedgerEntry[] {
    return [...this.entries.values()].filter((e) => e.conn.closed && (backend === undefined || e.backend === backend));
  }

  /** Problems found, empty when every close fired exactly once with a reason. */
  problems(): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) {
      const id = `connection ${e.conn.id} (${e.backend})`;
      if (e.conn.closed) {
        if (e.ownClosed !== 1) out.push(`${id}: closed fired ${e.ownClosed} times`);
        if (e.poolClosed !== 1) out.push(`${id}: connectionClosed fired ${e.poolClosed} times`);
        if (typeof e.info?.reason !== 'string' || e.info.reason === '') out.push(`${id}: closed without a reason`);
      } else if (e.ownClosed !== 0 || e.poolClosed !== 0) {
        out.push(`${id}: open but closed fired ${e.ownClosed}/${e.poolClosed} times`);
      }
    }
    return out;
  }

  detach(): void {
    this.#pool.off('connectionOpened', this.#onOpened);
    this.#pool.off('connectionClosed', this.#onClosed);
  }
}

/** A `t.diagnostic` that also goes to the figures file when `RELIABILITY_FIGURES` names one. */
export function figure(t: TestContext, text: string): void {
  t.diagnostic(text);
  const file = process.env['RELIABILITY_FIGURES'];
  if (file !== undefined && file !== '') {
    // Appended synchronously, one line at a time: several test files may write to it.
    appendFileSync(file, `${t.name}: ${text}\n`);
  }
}

/**
 * The process-fault scenario shared by the SIGKILL and SIGSTOP tests: a
 * backend in its own process (the victim) and one in this process (the
 * survivor), round-robin through a pool with an HTTPS `/readyz` probe, and 10
 * watches of which at least 3 are on the victim.
 */
export async function victimScenario(t: TestContext, probeTiming: { interval: number; timeout: number }) {
  const { ca } = loadCerts();
  const victim = await spawnBackend(t, 'victim');
  const survivor = await ApiserverBackend.start({ name: 'b2', host: HOST, watchIntervalMs: 50 });
  t.after(() => survivor.close());

  const pool = new UpstreamPool({
    backends: [
      { host: victim.host, port: victim.port, id: 'victim' },
      { ...survivor.address, id: 'b2' },
    ],
    balancer: 'round-robin',
  });
  t.after(() => pool.destroy());
  const ledger = new ConnectionLedger(pool);
  const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', ca }, ...probeTiming, rise: 2, fall: 2 });
  probe.attach(pool);
  t.after(() => probe.stop());
  const port = await frontend(t, pool);

  const fleet = new WatchFleet({ host: HOST, port, size: 10, tls: { ca }, backoffMs: 20 });
  t.after(() => fleet.stop());
  await fleet.waitFor((f) => f.connectedCount === 10 && (f.byBackend()['victim'] ?? 0) >= 3, 20_000);
  return { victim, survivor, pool, ledger, probe, fleet };
}
