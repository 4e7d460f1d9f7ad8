/**
 * The contenders of the TCP passthrough benches, started the same way and
 * measured through the same handle: no proxy at all (`direct`), the library
 * (`pinned`, `pool`), the peers (`haproxy`, `nginx`) and the `naive` pipe.
 * Also the backend-server child they all forward to.
 *
 * @module
 */
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { startPeer, type Upstream } from './peers.js';
import { cpuSeconds, minorFaults, nodeTs, rssBytes, startChild, type Child } from './proc.js';

/** Every contender of the TCP benches. */
export type ContenderName =
  | 'direct'
  | 'pinned'
  | 'pool'
  | 'pool-toppad'
  | 'haproxy'
  | 'nginx'
  | 'naive'
  | 'balancer'
  | 'balancer-workers'
  | 'balancer-workers-rr'
  | 'haproxy-mt'
  | 'nginx-mt';

/** Workers of the `balancer-workers` contenders (`--workers 2`: the bench machines have two cores). */
export const BENCH_WORKERS = 2;

/**
 * glibc keeps this much freed memory at the top of the heap instead of
 * returning it to the kernel. Node reads each chunk into a new 64 KiB buffer
 * that is freed only at the next GC; with the default (128 KiB) glibc trims
 * the heap after those frees and the next reads fault fresh pages in, one
 * fault per 4 KiB read.
 */
export const TOP_PAD = 64 * 2 ** 20;

/** How each contender is labelled in tables. */
export const contenderLabels: Readonly<Record<ContenderName, string>> = Object.freeze({
  direct: 'direct (no proxy)',
  pinned: 'PinnedConnection',
  pool: 'UpstreamPool',
  'pool-toppad': 'UpstreamPool, MALLOC_TOP_PAD_=64 MiB',
  haproxy: 'HAProxy mode tcp',
  nginx: 'nginx stream',
  naive: 'naive pipe',
  balancer: 'apiserver-balancer (one process)',
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
  /** Minor page faults of the proxy so far (0 for `direct`). */
  minorFaults(): number;
  /** RSS of the proxy (for nginx, master + worker). */
  rss(): number;
  /** The Node proxy's command channel (see node-proxy.ts); `undefined` for peers and `direct`. */
  readonly control: Child | undefined;
  /** The reference balancer's `/stats` port (the `balancer*` contenders). */
  readonly statusPort: number | undefined;
  stop(): Promise<void>;
}

/** Starts a Node proxy child in `mode` in front of `upstreams`. */
export async function startNodeProxy(
  ctx: BenchContext,
  mode: 'pool' | 'pinned' | 'naive',
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

/**
 * Starts one contender in front of `upstream`. Peers must have been checked
 * with `peersFor()` first: this throws if one cannot start.
 */
export async function startContender(ctx: BenchContext, name: ContenderName, upstream: Upstream, maxconn?: number): Promise<Contender> {
  if (name === 'direct') {
    return { name, host: upstream.host, port: upstream.port, pid: undefined, control: undefined, statusPort: undefined, cpuSeconds: () => 0, minorFaults: () => 0, rss: () => 0, stop: () => Promise.resolve() };
  }
  if (name === 'haproxy' || name === 'nginx' || name === 'haproxy-mt' || name === 'nginx-mt') {
    const multi = name.endsWith('-mt');
    const peer = await startPeer(multi ? (name === 'haproxy-mt' ? 'haproxy' : 'nginx') : (name as 'haproxy' | 'nginx'), { upstreams: [upstream], maxconn, threads: multi ? 'auto' : 1 });
    return { name, host: peer.host, port: peer.port, pid: peer.pid, control: undefined, statusPort: undefined, cpuSeconds: () => peer.cpuSeconds(), minorFaults: () => peer.minorFaults(), rss: () => peer.rss(), stop: () => peer.stop() };
  }
  if (name === 'balancer' || name === 'balancer-workers' || name === 'balancer-workers-rr') {
    return startBalancerCli(name, upstream);
  }
  const child =
    name === 'pool-toppad'
      ? await startNodeProxy(ctx, 'pool', [upstream], [], { ...process.env, MALLOC_TOP_PAD_: String(TOP_PAD) })
      : await startNodeProxy(ctx, name, [upstream]);
  const m = await child.waitForLine(/^listening (.+):(\d+)$/);
  return {
    name,
    host: m[1]!,
    port: Number(m[2]),
    pid: child.pid,
    control: child,
    statusPort: undefined,
    cpuSeconds: () => cpuSeconds(child.pid),
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
 */
async function startBalancerCli(name: 'balancer' | 'balancer-workers' | 'balancer-workers-rr', upstream: Upstream): Promise<Contender> {
  const args = ['--listen', '127.0.0.1:0', '--backend', `${upstream.host}:${upstream.port}`, '--check', 'tcp', '--status', '127.0.0.1:0', '--drain-timeout', '0'];
  if (name !== 'balancer') args.push('--workers', String(BENCH_WORKERS));
  const env = name === 'balancer-workers-rr' ? { ...process.env, NODE_CLUSTER_SCHED_POLICY: 'rr' } : process.env;
  const [cmd, argv] = nodeTs('examples/apiserver-balancer.ts', args);
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
    control: undefined,
    statusPort: Number(status[2]),
    cpuSeconds: () => cpuSeconds(child.pid, true),
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
