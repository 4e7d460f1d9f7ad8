/**
 * The contenders of the TCP passthrough benches, started the same way and
 * measured through the same handle: no proxy at all (`direct`), the library
 * (`pinned`, `pool`), the peers (`haproxy`, `nginx`) and the `naive` pipe.
 * Also the backend-server child they all forward to.
 *
 * @module
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { startPeer, type Upstream } from './peers.js';
import { cpuSeconds, minorFaults, nodeTs, repoRoot, rssBytes, startChild, systemSeconds, type Child } from './proc.js';

/** Every contender of the TCP benches. */
export type ContenderName =
  | 'direct'
  | 'pinned'
  | 'pool'
  | 'haproxy'
  | 'nginx'
  | 'naive'
  | 'sockets'
  | 'balancer'
  | 'balancer-dist'
  | 'balancer-workers'
  | 'balancer-workers-rr'
  | 'haproxy-mt'
  | 'nginx-mt';

/** Workers of the `balancer-workers` contenders (`--workers 2`: the bench machines have two cores). */
export const BENCH_WORKERS = 2;

/** The contenders that are this library (labelled in bold in charts). */
export const ourContenders: ReadonlySet<ContenderName> = new Set<ContenderName>(['pinned', 'pool', 'balancer', 'balancer-dist', 'balancer-workers', 'balancer-workers-rr']);

/** The built balancer CLI, relative to the repository root. */
export const BUILT_CLI = 'dist/apiserver-balancer.js';

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Why the built CLI cannot be measured (not built, or older than the sources
 * it is built from), or `undefined` when it can. The bench never builds: a
 * stale build would measure other code than the rest of the run.
 */
export function builtCliProblem(): string | undefined {
  const path = join(repoRoot, BUILT_CLI);
  if (!existsSync(path)) return `${BUILT_CLI} missing: run npm run build first`;
  const built = statSync(path).mtimeMs;
  if (built < Math.max(newestSource(join(repoRoot, 'src')), newestSource(join(repoRoot, 'examples')))) return `${BUILT_CLI} is older than src/ or examples/: run npm run build`;
  return undefined;
}

/** How each contender is labelled in tables. */
export const contenderLabels: Readonly<Record<ContenderName, string>> = Object.freeze({
  direct: 'direct (no proxy)',
  pinned: 'PinnedConnection',
  pool: 'UpstreamPool',
  haproxy: 'HAProxy mode tcp',
  nginx: 'nginx stream',
  naive: 'naive pipe',
  sockets: 'two Node sockets, no library (floor)',
  balancer: 'apiserver-balancer through tsx',
  'balancer-dist': 'apiserver-balancer, built (node dist/)',
  'balancer-workers': `apiserver-balancer --workers ${BENCH_WORKERS}`,
  'balancer-workers-rr': `apiserver-balancer --workers ${BENCH_WORKERS}, SCHED_RR`,
  'haproxy-mt': 'HAProxy mode tcp, default nbthread',
  'nginx-mt': 'nginx stream, worker_processes auto',
});

/** A contender ready to take connections on `host:port`. */
export interface Contender {
  readonly name: ContenderName;
  readonly host: string;
  readonly port: number;
  /** The proxy's pid (none for `direct`). */
  readonly pid: number | undefined;
  /** CPU seconds used by the proxy so far (0 for `direct`). */
  cpuSeconds(): number;
  /** The system (kernel) part of {@link cpuSeconds}. */
  systemSeconds(): number;
  /** Minor page faults of the proxy so far (0 for `direct`). */
  minorFaults(): number;
  /** RSS of the proxy (for nginx, master + worker). */
  rss(): number;
  /** The Node proxy's command channel (see node-proxy.ts, and mem-probe.mjs for the balancer); `undefined` for peers and `direct`. */
  readonly control: Child | undefined;
  /** The reference balancer's `/stats` port (the `balancer*` contenders). */
  readonly statusPort: number | undefined;
  stop(): Promise<void>;
}

/** Starts a Node proxy child in `mode` in front of `upstreams`. */
export async function startNodeProxy(
  ctx: BenchContext,
  mode: 'pool' | 'pinned' | 'naive' | 'sockets',
  upstreams: readonly Upstream[],
  extraArgs: readonly string[] = [],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Child> {
  const flags = ['--expose-gc'];
  // One directory per mode: the main thread and tsx's loader thread each write a profile.
  if (ctx.cpuProfDir !== undefined) flags.push('--cpu-prof', `--cpu-prof-dir=${join(ctx.cpuProfDir, mode)}`);
  const [cmd, args] = nodeTs('bench/lib/node-proxy.ts', ['--mode', mode, ...upstreams.flatMap((u) => ['--backend', `${u.host}:${u.port}`]), ...extraArgs], flags);
  const child = startChild(cmd, args, { env });
  try {
    await child.waitForLine(/^listening /);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

/** Options of {@link startContender}. */
export interface ContenderOptions {
  /**
   * For the `balancer*` contenders: preload bench/lib/mem-probe.mjs (with
   * `--expose-gc`) so the bench can ask for memory figures after a GC, as it
   * asks the other Node proxies. Off by default: the balancer runs as a user runs it.
   */
  readonly memProbe?: boolean | undefined;
}

/**
 * Starts one contender in front of `upstream`. Peers must have been checked
 * with `peersFor()` first, and `balancer-dist` with {@link builtCliProblem}:
 * this throws if one cannot start.
 */
export async function startContender(ctx: BenchContext, name: ContenderName, upstream: Upstream, maxconn?: number, options: ContenderOptions = {}): Promise<Contender> {
  if (name === 'direct') {
    return {
      name,
      host: upstream.host,
      port: upstream.port,
      pid: undefined,
      control: undefined,
      statusPort: undefined,
      cpuSeconds: () => 0,
      systemSeconds: () => 0,
      minorFaults: () => 0,
      rss: () => 0,
      stop: () => Promise.resolve(),
    };
  }
  if (name === 'haproxy' || name === 'nginx' || name === 'haproxy-mt' || name === 'nginx-mt') {
    const multi = name.endsWith('-mt');
    const peer = await startPeer(multi ? (name === 'haproxy-mt' ? 'haproxy' : 'nginx') : (name as 'haproxy' | 'nginx'), { upstreams: [upstream], maxconn, threads: multi ? 'auto' : 1 });
    return {
      name,
      host: peer.host,
      port: peer.port,
      pid: peer.pid,
      control: undefined,
      statusPort: undefined,
      cpuSeconds: () => peer.cpuSeconds(),
      systemSeconds: () => peer.systemSeconds(),
      minorFaults: () => peer.minorFaults(),
      rss: () => peer.rss(),
      stop: () => peer.stop(),
    };
  }
  if (name === 'balancer' || name === 'balancer-dist' || name === 'balancer-workers' || name === 'balancer-workers-rr') {
    return startBalancerCli(ctx, name, upstream, options.memProbe === true);
  }
  const child = await startNodeProxy(ctx, name, [upstream]);
  const m = await child.waitForLine(/^listening (.+):(\d+)$/);
  return {
    name,
    host: m[1]!,
    port: Number(m[2]),
    pid: child.pid,
    control: child,
    statusPort: undefined,
    cpuSeconds: () => cpuSeconds(child.pid),
    systemSeconds: () => systemSeconds(child.pid),
    minorFaults: () => minorFaults(child.pid),
    rss: () => rssBytes(child.pid),
    stop: () => child.stop(),
  };
}

/**
 * The reference balancer's CLI (examples/apiserver-balancer.ts) in front of
 * `upstream`, with a TCP check, `/stats` on a loopback port, and for
 * `balancer-workers*` `--workers 2` (`-rr`: with Node's round robin, the
 * primary accepting and handing out connections, instead of every worker
 * accepting). CPU, faults and RSS are of the whole
 * process tree (primary and workers).
 *
 * As a user runs it: through tsx (`node --import tsx examples/apiserver-balancer.ts`,
 * as its docs show with `npx tsx`), or built (`balancer-dist`: `node
 * dist/apiserver-balancer.js`, the package's `bin`).
 */
async function startBalancerCli(
  ctx: BenchContext,
  name: 'balancer' | 'balancer-dist' | 'balancer-workers' | 'balancer-workers-rr',
  upstream: Upstream,
  memProbe: boolean,
): Promise<Contender> {
  const args = ['--listen', '127.0.0.1:0', '--backend', `${upstream.host}:${upstream.port}`, '--check', 'tcp', '--status', '127.0.0.1:0', '--drain-timeout', '0'];
  if (name !== 'balancer' && name !== 'balancer-dist') args.push('--workers', String(BENCH_WORKERS));
  const env = name === 'balancer-workers-rr' ? { ...process.env, NODE_CLUSTER_SCHED_POLICY: 'rr' } : process.env;
  const flags = memProbe ? ['--expose-gc', '--import', './bench/lib/mem-probe.mjs'] : [];
  if (ctx.cpuProfDir !== undefined) flags.push('--cpu-prof', `--cpu-prof-dir=${join(ctx.cpuProfDir, name)}`);
  const [cmd, argv] = name === 'balancer-dist' ? [process.execPath, [...flags, BUILT_CLI, ...args]] : nodeTs('examples/apiserver-balancer.ts', args, flags);
  const child = startChild(cmd, argv, { env });
  let m: RegExpMatchArray;
  let status: RegExpMatchArray;
  try {
    m = await child.waitForLine(/^listening (.+):(\d+)$/, 60_000);
    status = await child.waitForLine(/^status (.+):(\d+)$/);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return {
    name,
    host: m[1]!,
    port: Number(m[2]),
    pid: child.pid,
    control: memProbe ? child : undefined,
    statusPort: Number(status[2]),
    cpuSeconds: () => cpuSeconds(child.pid, true),
    systemSeconds: () => systemSeconds(child.pid, true),
    minorFaults: () => minorFaults(child.pid, true),
    rss: () => rssBytes(child.pid, true),
    stop: () => child.stop(5000),
  };
}

/** The backend-server child and the address of each listener, by mode. */
export interface Backends {
  readonly child: Child;
  readonly listeners: ReadonlyMap<string, Upstream[]>;
  /** The first listener of `mode`. */
  get(mode: string, index?: number): Upstream;
  stop(): Promise<void>;
}

/**
 * Starts the backend-server child with the given listeners, e.g.
 * `['source@127.0.0.1:0', 'echo@127.0.0.1:0']`.
 */
export async function startBackends(serves: readonly string[]): Promise<Backends> {
  const [cmd, args] = nodeTs('bench/lib/backend-server.ts', serves.flatMap((s) => ['--serve', s]));
  const child = startChild(cmd, args);
  const listeners = new Map<string, Upstream[]>();
  try {
    await child.waitForLine(/^ready$/);
  } catch (err) {
    await child.stop();
    throw err;
  }
  // Every "listening MODE HOST:PORT" line came before "ready".
  for (const line of child.lines()) {
    const m = /^listening (\S+) (.+):(\d+)$/.exec(line);
    if (!m) continue;
    const list = listeners.get(m[1]!) ?? [];
    list.push({ host: m[2]!, port: Number(m[3]) });
    listeners.set(m[1]!, list);
  }
  return {
    child,
    listeners,
    get(mode, index = 0) {
      const u = listeners.get(mode)?.[index];
      if (u === undefined) throw new Error(`no ${mode} listener #${index}`);
      return u;
    },
    stop: () => child.stop(),
  };
}
