/**
 * Multi-core: the reference balancer with `--workers 2` against HAProxy and
 * nginx at one thread/worker per CPU (HAProxy's default `nbthread`, nginx's
 * `worker_processes auto` of the stock config), and the balancer in one
 * process, in the same run:
 *
 * - connection rate: short exchanges (64 B echoed, server closes) at
 *   concurrency 100, 20,000 per contender (1,000 with BENCH_QUICK=1);
 * - aggregate bulk throughput: 4 downloads at once, 1 GiB in all (64 MiB quick);
 * - memory: RSS of the whole process tree at start and per idle connection
 *   (5,000 connections; 500 quick).
 *
 * `--workers 2` runs twice: as it is (every worker accepts on the shared
 * socket, `SCHED_NONE`) and with `NODE_CLUSTER_SCHED_POLICY=rr` (Node's
 * default on Linux: the primary accepts and hands connections to workers
 * round-robin). The CPU per connection and the split of connections between
 * the workers, read from the balancer's `/stats`, show why the balancer
 * chooses SCHED_NONE.
 *
 * ```sh
 * npm run bench -- multi-core
 * ```
 *
 * @module
 */
import { request } from 'node:http';
import { BENCH_WORKERS, contenderLabels, startBackends, startContender, type Contender, type ContenderName } from './lib/contenders.js';
import { roundsFor, type BenchContext } from './lib/context.js';
import { closeAll, download, exchanges, openIdle } from './lib/loadgen.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor } from './lib/peers.js';
import { proxiedConnectionCap, sleep } from './lib/proc.js';
import { alternate, median, percentiles, ratio } from './lib/stats.js';
import type { BenchReport, Cell } from './lib/table.js';

const CONCURRENCY = 100;
const STREAMS = 4;

/** Connections each worker of a balancer took since it started, from `/stats`. */
function workerTotals(c: Contender): Promise<number[] | undefined> {
  if (c.statusPort === undefined) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port: c.statusPort, path: '/stats', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          const doc = JSON.parse(body) as { total: number; workers?: { total?: number }[] };
          resolve(doc.workers?.map((w) => w.total ?? 0) ?? [doc.total]);
        } catch {
          resolve(undefined);
        }
      });
    })
      .on('error', () => resolve(undefined))
      .end();
  });
}

/** `51/49 %`: each worker's share of the connections it took. */
function split(totals: readonly number[] | undefined, before: readonly number[] | undefined): string | undefined {
  if (totals === undefined || totals.length < 2) return undefined;
  const deltas = totals.map((n, i) => n - (before?.[i] ?? 0));
  const sum = deltas.reduce((a, b) => a + b, 0);
  return sum === 0 ? undefined : `${deltas.map((d) => Math.round((d / sum) * 100)).join('/')} %`;
}

/** Runs the multi-core bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const { run: peers, skipped } = peersFor(ctx);
  const peerNames: ContenderName[] = peers.map((p) => (p === 'haproxy' ? 'haproxy-mt' : 'nginx-mt'));
  // The peers with one thread/worker too: how much a second one buys each of them in the same run.
  const proxies: ContenderName[] = ['balancer', 'balancer-workers', 'balancer-workers-rr', ...peerNames, ...peers];
  const skippedRows: Cell[][] = [...skipped].map(([name, reason]) => [`${contenderLabels[name]} (${reason})`]);
  const haproxyName: ContenderName | undefined = peers.includes('haproxy') ? 'haproxy-mt' : undefined;

  // ------------------------------------------------------- connection rate
  const total = ctx.quick ? 1000 : 20_000;
  const rateRounds = roundsFor(ctx, 4);
  const perRound = Math.ceil(total / rateRounds);
  const rateNames: ContenderName[] = ['direct', ...proxies];
  const rateRows: Cell[][] = [];
  {
    const backends = await startBackends(rateNames.map(() => 'echo-close@127.0.0.1:0'));
    const contenders = new Map<ContenderName, Contender>();
    try {
      for (const [i, name] of rateNames.entries()) contenders.set(name, await startContender(ctx, name, backends.get('echo-close', i)));
      for (const c of contenders.values()) await exchanges(c.host, c.port, 500, CONCURRENCY);
      const before = new Map<ContenderName, number[] | undefined>();
      for (const [name, c] of contenders) before.set(name, await workerTotals(c));
      const results = await alternate(rateNames, rateRounds, async (name, round) => {
        const c = contenders.get(name)!;
        const cpu0 = c.cpuSeconds();
        const r = await exchanges(c.host, c.port, perRound, CONCURRENCY);
        const cpu = c.cpuSeconds() - cpu0;
        ctx.log(`multi-core rate round ${round + 1}/${rateRounds} ${name}: ${((r.completed / r.ms) * 1000).toFixed(0)}/s, ${r.errors} errors`);
        return { ...r, cpu };
      });
      const rate = (name: ContenderName): number => median(results.get(name)!.map((r) => (r.completed / r.ms) * 1000));
      const haproxyRate = haproxyName === undefined ? NaN : rate(haproxyName);
      for (const name of rateNames) {
        const rs = results.get(name)!;
        const all = new Float64Array(rs.reduce((n, r) => n + r.latencies.length, 0));
        let off = 0;
        for (const r of rs) {
          all.set(r.latencies, off);
          off += r.latencies.length;
        }
        const [p50, p99] = percentiles(all, [50, 99]);
        const completed = rs.reduce((n, r) => n + r.completed, 0);
        rateRows.push([
          contenderLabels[name],
          rate(name),
          ratio(rate(name), rate('balancer')),
          ratio(rate(name), haproxyRate),
          p50,
          p99,
          name === 'direct' ? NaN : (rs.reduce((n, r) => n + r.cpu, 0) / completed) * 1e6,
          split(await workerTotals(contenders.get(name)!), before.get(name)),
          rs.reduce((n, r) => n + r.errors, 0),
        ]);
      }
    } finally {
      await Promise.all([...contenders.values()].map((c) => c.stop()));
      await backends.stop();
    }
  }

  // ------------------------------------------------------------ throughput
  const envBytes = Number(process.env['BENCH_THROUGHPUT_BYTES'] ?? '');
  const bytes = Number.isInteger(envBytes) && envBytes > 0 ? envBytes : ctx.quick ? 64 * 2 ** 20 : 2 ** 30;
  const perStream = Math.floor(bytes / STREAMS);
  const tpRounds = roundsFor(ctx, 3);
  const tpNames: ContenderName[] = ['direct', ...proxies];
  const tpRows: Cell[][] = [];
  {
    const backends = await startBackends(['source@127.0.0.1:0']);
    const source = backends.get('source');
    const contenders = new Map<ContenderName, Contender>();
    try {
      for (const name of tpNames) contenders.set(name, await startContender(ctx, name, source));
      for (const c of contenders.values()) await Promise.all(Array.from({ length: STREAMS }, () => download(c.host, c.port, Math.min(perStream, 16 * 2 ** 20))));
      const results = await alternate(tpNames, tpRounds, async (name, round) => {
        const c = contenders.get(name)!;
        const cpu0 = c.cpuSeconds();
        const t0 = performance.now();
        await Promise.all(Array.from({ length: STREAMS }, () => download(c.host, c.port, perStream)));
        const ms = performance.now() - t0;
        const cpu = c.cpuSeconds() - cpu0;
        const mbps = (perStream * STREAMS) / 1e6 / (ms / 1000);
        ctx.log(`multi-core throughput round ${round + 1}/${tpRounds} ${name}: ${mbps.toFixed(0)} MB/s`);
        return { mbps, cpuPerGb: name === 'direct' ? NaN : cpu / ((perStream * STREAMS) / 1e9) };
      });
      const med = (name: ContenderName): number => median(results.get(name)!.map((r) => r.mbps));
      const haproxyMbps = haproxyName === undefined ? NaN : med(haproxyName);
      for (const name of tpNames) {
        const mbps = results.get(name)!.map((r) => r.mbps);
        tpRows.push([
          contenderLabels[name],
          med(name),
          `${Math.min(...mbps).toFixed(0)}–${Math.max(...mbps).toFixed(0)}`,
          ratio(med(name), med('direct')),
          ratio(med(name), med('balancer')),
          ratio(med(name), haproxyMbps),
          median(results.get(name)!.map((r) => r.cpuPerGb)),
        ]);
      }
    } finally {
      await Promise.all([...contenders.values()].map((c) => c.stop()));
      await backends.stop();
    }
  }

  // ---------------------------------------------------------------- memory
  const n = ctx.quick ? 500 : proxiedConnectionCap(5000);
  const memRounds = roundsFor(ctx, 2);
  const memNames: ContenderName[] = ['balancer', 'balancer-workers', 'balancer-workers-rr', ...peerNames];
  const memRows: Cell[][] = [];
  {
    const backends = await startBackends(['echo@127.0.0.1:0']);
    const echo = backends.get('echo');
    try {
      const results = await alternate(memNames, memRounds, async (name) => {
        const c = await startContender(ctx, name, echo, n + 50);
        try {
          closeAll(await openIdle(c.host, c.port, 200, 100));
          await sleep(500);
          const base = c.rss();
          const before = await workerTotals(c);
          // A burst of long-lived connections, as when every watch of a failed apiserver reconnects.
          const clients = await openIdle(c.host, c.port, n, 200);
          await sleep(1000);
          const loaded = c.rss();
          const spread = split(await workerTotals(c), before);
          closeAll(clients);
          return { base, perConn: (loaded - base) / n, loaded, spread };
        } finally {
          await c.stop();
          await sleep(300);
        }
      });
      const med = (name: ContenderName, pick: (r: { base: number; perConn: number; loaded: number }) => number): number => median(results.get(name)!.map(pick));
      const spreads = (name: ContenderName): string | undefined => {
        const all = results.get(name)!.flatMap((r) => r.spread ?? []);
        return all.length === 0 ? undefined : all.join(', ');
      };
      const haproxyLoaded = haproxyName === undefined ? NaN : med(haproxyName, (r) => r.loaded);
      for (const name of memNames) {
        memRows.push([
          contenderLabels[name],
          med(name, (r) => r.base) / 1e6,
          med(name, (r) => r.perConn),
          med(name, (r) => r.loaded) / 1e6,
          ratio(med(name, (r) => r.loaded), haproxyLoaded),
          spreads(name),
        ]);
      }
    } finally {
      await backends.stop();
    }
  }

  return {
    name: 'multi-core',
    title: `Multi-core: apiserver-balancer --workers ${BENCH_WORKERS} against HAProxy and nginx with one thread/worker per CPU`,
    settings: { workers: BENCH_WORKERS, concurrency: CONCURRENCY, exchanges: perRound * rateRounds, streams: STREAMS, bytes: perStream * STREAMS, idle: n, peers: peers.join('+') || 'none' },
    tables: [
      {
        title: `Connection rate: ${(perRound * rateRounds).toLocaleString('en-US')} exchanges per path at concurrency ${CONCURRENCY}, ${rateRounds} alternating round(s)`,
        columns: [
          { title: 'path' },
          { title: 'conn/s', digits: 0 },
          { title: '× one process', digits: 2, unit: '×' },
          { title: '× HAProxy', digits: 2, unit: '×' },
          { title: 'p50 ms', digits: 2 },
          { title: 'p99 ms', digits: 2 },
          { title: 'proxy CPU ms/1k', digits: 0 },
          { title: 'split by worker' },
          { title: 'errors', digits: 0 },
        ],
        rows: [...rateRows, ...skippedRows],
      },
      {
        title: `Aggregate throughput: ${STREAMS} downloads at once, ${((perStream * STREAMS) / 1e6).toFixed(0)} MB in all, median of ${tpRounds} alternating round(s)`,
        columns: [
          { title: 'path' },
          { title: 'MB/s', digits: 0 },
          { title: 'range MB/s' },
          { title: '× direct', digits: 2, unit: '×' },
          { title: '× one process', digits: 2, unit: '×' },
          { title: '× HAProxy', digits: 2, unit: '×' },
          { title: 'proxy CPU s/GB', digits: 2 },
        ],
        rows: [...tpRows, ...skippedRows],
      },
      {
        title: `Memory: ${n.toLocaleString('en-US')} idle connections, RSS of the whole process tree, median of ${memRounds} round(s)`,
        columns: [
          { title: 'proxy' },
          { title: 'RSS idle, MB', digits: 1 },
          { title: 'RSS B/conn', digits: 0 },
          { title: 'RSS at N, MB', digits: 1 },
          { title: '× HAProxy at N', digits: 2, unit: '×' },
          { title: 'split by worker' },
        ],
        rows: [...memRows, ...skippedRows],
      },
    ],
    goals: [],
    notes: [
      `apiserver-balancer: the CLI (examples/apiserver-balancer.ts --check tcp --status) in front of one backend; --workers ${BENCH_WORKERS}: a primary and ${BENCH_WORKERS} workers, measured as one process tree (CPU, RSS).`,
      '--workers 2: every worker accepts on the shared socket (SCHED_NONE, the balancer\'s choice); SCHED_RR: NODE_CLUSTER_SCHED_POLICY=rr, the primary accepts and hands connections out round-robin (Node\'s default on Linux).',
      'split by worker: the share of the measured connections each worker took, from the balancer\'s /stats.',
      'HAProxy without nbthread runs one thread per CPU; nginx with worker_processes auto one worker per CPU (master + workers counted). HAProxy nbthread 1 and nginx worker_processes 1 are there to show what the second thread or worker buys each of them here.',
      'Memory: RSS of the whole tree without forced GCs (the CLI has no control channel); the balancer runs from source through tsx, whose loader adds about 30 MB to each Node process (3 × 60 MB idle with the built dist/apiserver-balancer.js).',
      'The load generator and the servers share the same cores with every proxy: ratios within this run are the figures to read, not absolute rates.',
    ],
    durationMs: Date.now() - started,
  };
}

if (isMain(import.meta.url)) runStandalone(run);
