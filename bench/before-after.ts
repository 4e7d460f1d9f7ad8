/**
 * Before and after, in one run: the bulk download of the throughput bench
 * (or, with `connections`, the short exchanges of the connection-rate bench)
 * through `UpstreamPool` (bench/lib/node-proxy.ts, through tsx) and the
 * reference balancer (built, and through tsx) of another checkout of this
 * repository and of this one, with HAProxy and nginx, in alternating rounds.
 * Not part of `npm run bench`: it needs the other tree, installed and built.
 *
 * ```sh
 * git worktree add /tmp/before c0cffb5 && (cd /tmp/before && npm ci && npm run build)
 * npm run build && npx tsx bench/before-after.ts /tmp/before [connections]
 * ```
 *
 * BENCH_ROUNDS (default 5), BENCH_THROUGHPUT_BYTES (default 2 GiB) and
 * BENCH_EXCHANGES (exchanges per round with `connections`, default 5,000) apply.
 *
 * @module
 */
import { resolve } from 'node:path';
import { startBackends, startContender, type Contender } from './lib/contenders.js';
import { benchContext, roundsFor } from './lib/context.js';
import { download, exchanges } from './lib/loadgen.js';
import { peersFor, type Upstream } from './lib/peers.js';
import { cpuSeconds, minorFaults, repoRoot, startChild, systemSeconds } from './lib/proc.js';
import { alternate, median, ratio } from './lib/stats.js';
import { renderReport, type Cell, type Column } from './lib/table.js';

interface Proxy {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  /** Whether to count the whole process tree (nginx's master and worker). */
  readonly tree: boolean;
  stop(): Promise<void>;
}

async function nodeProxy(label: string, cwd: string, args: readonly string[]): Promise<Proxy> {
  const child = startChild(process.execPath, args, { cwd });
  const m = await child.waitForLine(/^listening (.+):(\d+)$/, 60_000);
  return { label, host: m[1]!, port: Number(m[2]), pid: child.pid, tree: false, stop: () => child.stop() };
}

function fromContender(label: string, c: Contender): Proxy {
  return { label, host: c.host, port: c.port, pid: c.pid!, tree: true, stop: () => c.stop() };
}

/**
 * What is measured: the backend it needs, how to warm a proxy up, one
 * round through a proxy, and the report's table.
 */
interface Workload<R> {
  readonly title: string;
  readonly backend: 'source' | 'echo-close';
  readonly settings: Readonly<Record<string, string | number>>;
  /** Start the built balancer through tsx as well (the bulk download's third row per tree). */
  readonly balancerThroughTsx: boolean;
  /** The two-socket floor beside them (this tree's). */
  readonly floor: boolean;
  warm(p: Proxy): Promise<void>;
  round(p: Proxy): Promise<R>;
  /** One line of progress for a round. */
  describe(r: R): string;
  readonly tableTitle: string;
  readonly columns: readonly Column[];
  rows(results: ReadonlyMap<string, readonly R[]>): Cell[][];
  readonly note: string;
}

/** Starts both trees' proxies, the floor and the peers, runs alternating rounds, prints the table. */
async function compare<R>(before: string, rounds: number, w: Workload<R>): Promise<void> {
  const started = Date.now();
  const ctx = benchContext();
  const backends = await startBackends([`${w.backend}@127.0.0.1:0`]);
  const upstream: Upstream = backends.get(w.backend);
  const target = `${upstream.host}:${upstream.port}`;
  const cli = ['--listen', '127.0.0.1:0', '--backend', target, '--check', 'tcp'];
  const proxies: Proxy[] = [];
  try {
    for (const [tag, root] of [
      ['before', resolve(before)],
      ['after', repoRoot],
    ] as const) {
      proxies.push(await nodeProxy(`UpstreamPool (tsx), ${tag}`, root, ['--expose-gc', '--import', 'tsx', 'bench/lib/node-proxy.ts', '--mode', 'pool', '--backend', target]));
      proxies.push(await nodeProxy(`apiserver-balancer, built, ${tag}`, root, ['dist/apiserver-balancer.js', ...cli]));
      if (w.balancerThroughTsx) proxies.push(await nodeProxy(`apiserver-balancer through tsx, ${tag}`, root, ['--import', 'tsx', 'examples/apiserver-balancer.ts', ...cli]));
    }
    if (w.floor) proxies.push(await nodeProxy('two Node sockets (floor)', repoRoot, ['--expose-gc', '--import', 'tsx', 'bench/lib/node-proxy.ts', '--mode', 'sockets', '--backend', target]));
    const { run: peers } = peersFor(ctx);
    for (const peer of peers) proxies.push(fromContender(peer === 'haproxy' ? 'HAProxy mode tcp' : 'nginx stream', await startContender(ctx, peer, upstream)));
    for (const p of proxies) await w.warm(p);

    const byLabel = new Map(proxies.map((p) => [p.label, p]));
    const results = await alternate([...byLabel.keys()], rounds, async (label, round) => {
      const r = await w.round(byLabel.get(label)!);
      ctx.log(`before-after round ${round + 1}/${rounds} ${label}: ${w.describe(r)}`);
      return r;
    });
    process.stdout.write(
      `${renderReport({
        name: 'before-after',
        title: w.title,
        settings: { before: resolve(before), ...w.settings, rounds },
        tables: [{ title: w.tableTitle, columns: [...w.columns], rows: w.rows(results) }],
        goals: [],
        notes: [w.note],
        durationMs: Date.now() - started,
      })}\n`,
    );
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await backends.stop();
  }
}

/** A positive integer from the environment, else `fallback`. */
function envCount(name: string, fallback: number): number {
  const n = Number(process.env[name] ?? '');
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

const treesNote = "Each tree runs its own src/ (through tsx) and its own dist/; the load generator, backends and /proc counters are this tree's.";

/** The bulk download of the throughput bench. */
function throughput(rounds: number): Workload<{ mbps: number; cpu: number; sys: number; faults: number }> {
  const bytes = envCount('BENCH_THROUGHPUT_BYTES', 2 * 2 ** 30);
  return {
    title: 'Bulk throughput, before and after, one run',
    backend: 'source',
    settings: { bytes },
    balancerThroughTsx: true,
    floor: false,
    warm: async (p) => void (await download(p.host, p.port, Math.min(bytes, 64 * 2 ** 20))),
    async round(p) {
      const cpu0 = cpuSeconds(p.pid, p.tree);
      const sys0 = systemSeconds(p.pid, p.tree);
      const faults0 = minorFaults(p.pid, p.tree);
      const { ms } = await download(p.host, p.port, bytes);
      const gb = bytes / 1e9;
      return { mbps: bytes / 1e6 / (ms / 1000), cpu: (cpuSeconds(p.pid, p.tree) - cpu0) / gb, sys: (systemSeconds(p.pid, p.tree) - sys0) / gb, faults: (minorFaults(p.pid, p.tree) - faults0) / gb };
    },
    describe: (r) => `${r.mbps.toFixed(0)} MB/s`,
    tableTitle: `Download of ${(bytes / 1e6).toFixed(0)} MB, median of ${rounds} alternating round(s)`,
    columns: [
      { title: 'path' },
      { title: 'MB/s', digits: 0 },
      { title: 'range' },
      { title: '× HAProxy', digits: 2, unit: '×' },
      { title: '× nginx', digits: 2, unit: '×' },
      { title: 'CPU s/GB', digits: 2 },
      { title: 'of which kernel', digits: 2 },
      { title: 'page faults/GB', digits: 0 },
    ],
    rows(results) {
      const med = (label: string): number => median(results.get(label)?.map((r) => r.mbps) ?? []);
      return [...results].map(([label, rs]) => [
        label,
        med(label),
        `${Math.min(...rs.map((r) => r.mbps)).toFixed(0)}–${Math.max(...rs.map((r) => r.mbps)).toFixed(0)}`,
        ratio(med(label), med('HAProxy mode tcp')),
        ratio(med(label), med('nginx stream')),
        median(rs.map((r) => r.cpu)),
        median(rs.map((r) => r.sys)),
        median(rs.map((r) => r.faults)),
      ]);
    },
    note: treesNote,
  };
}

/** The short exchanges of the connection-rate bench. */
function connections(rounds: number): Workload<{ rate: number; cpuPerK: number; errors: number }> {
  const perRound = envCount('BENCH_EXCHANGES', 5000);
  const concurrency = 50;
  return {
    title: 'Connection rate, before and after, one run',
    backend: 'echo-close',
    settings: { exchangesPerRound: perRound, concurrency },
    balancerThroughTsx: false,
    floor: true,
    warm: async (p) => void (await exchanges(p.host, p.port, 500, concurrency)),
    async round(p) {
      const cpu0 = cpuSeconds(p.pid, p.tree);
      const r = await exchanges(p.host, p.port, perRound, concurrency);
      return { rate: (r.completed / r.ms) * 1000, cpuPerK: ((cpuSeconds(p.pid, p.tree) - cpu0) / r.completed) * 1e6, errors: r.errors };
    },
    describe: (r) => `${r.rate.toFixed(0)}/s, ${r.cpuPerK.toFixed(0)} ms/1k`,
    tableTitle: `${perRound.toLocaleString('en-US')} exchanges per round at concurrency ${concurrency}, median of ${rounds} alternating round(s)`,
    columns: [
      { title: 'path' },
      { title: 'conn/s', digits: 0 },
      { title: 'range' },
      { title: '× HAProxy', digits: 2, unit: '×' },
      { title: 'proxy CPU ms/1k', digits: 0 },
      { title: 'errors', digits: 0 },
    ],
    rows(results) {
      const med = (label: string): number => median(results.get(label)?.map((r) => r.rate) ?? []);
      return [...results].map(([label, rs]) => [
        label,
        med(label),
        `${Math.min(...rs.map((r) => r.rate)).toFixed(0)}–${Math.max(...rs.map((r) => r.rate)).toFixed(0)}`,
        ratio(med(label), med('HAProxy mode tcp')),
        median(rs.map((r) => r.cpuPerK)),
        rs.reduce((n, r) => n + r.errors, 0),
      ]);
    },
    note: `${treesNote} The floor is this tree's two bare sockets.`,
  };
}

const [before, mode] = process.argv.slice(2);
if (before === undefined || (mode !== undefined && mode !== 'connections')) {
  process.stderr.write('usage: npx tsx bench/before-after.ts <checkout of the code before> [connections]\n');
  process.exit(2);
}
const rounds = roundsFor(benchContext(), 5);
(mode === 'connections' ? compare(before, rounds, connections(rounds)) : compare(before, rounds, throughput(rounds))).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
