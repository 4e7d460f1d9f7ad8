/**
 * Memory per idle pinned connection: each proxy is started fresh, warmed up,
 * measured, loaded with N idle connections (10,000, or as many as the
 * file-descriptor limit allows; 1,000 with BENCH_QUICK=1), each proven end to
 * end by one echoed byte, and measured again. Bytes per connection = growth /
 * N. For the Node proxies RSS and V8 heap are read after two forced GCs
 * (`--expose-gc`); for HAProxy and nginx the RSS of the process tree.
 *
 * Node's RSS growth also holds V8's young generation, which grows while
 * thousands of connections are being opened (a nursery sized by the allocation
 * rate, up to 32 MiB) and is handed back only after several idle seconds.
 * It is empty after the forced GCs, its pages still resident; the "without
 * the young generation" column subtracts them, and the young generation's
 * own growth is shown beside it.
 *
 * ```sh
 * npm run bench -- memory
 * ```
 *
 * @module
 */
import { builtCliProblem, ourContenders, startBackends, startContender, contenderLabels, type Contender, type ContenderName } from './lib/contenders.js';
import { roundsFor, type BenchContext } from './lib/context.js';
import { closeAll, openIdle } from './lib/loadgen.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor } from './lib/peers.js';
import { fileLimit, proxiedConnectionCap, sleep } from './lib/proc.js';
import { alternate, median, ratio } from './lib/stats.js';
import type { Chart } from './lib/svg-chart.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

interface Sample {
  readonly rss: number;
  readonly heapUsed: number | undefined;
  readonly external: number | undefined;
  /** Resident bytes of V8's young generation (0 for the peers). */
  readonly young: number;
}

interface Round {
  readonly rssPerConn: number;
  /** RSS growth without the young generation's growth. */
  readonly steadyPerConn: number;
  readonly heapPerConn: number | undefined;
  readonly externalPerConn: number | undefined;
  readonly youngGrowth: number | undefined;
  readonly rssAtN: number;
}

/** The contenders the bench can ask for memory figures after a GC (node-proxy, and the CLI with mem-probe.mjs). */
async function sample(c: Contender): Promise<Sample> {
  if (c.control) {
    const m = JSON.parse(await c.control.request('mem', 'mem')) as { rss: number; heapUsed: number; external: number; young: number };
    return { rss: c.rss(), heapUsed: m.heapUsed, external: m.external, young: m.young };
  }
  return { rss: c.rss(), heapUsed: undefined, external: undefined, young: 0 };
}

/** Runs the memory bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const rounds = roundsFor(ctx, 2);
  // The reference balancer admits (limit − max(64, 5%)) / 2 clients by default
  // (`--max-clients auto`) and resets the rest: measure every contender at a
  // count it takes as a user runs it (9,500 under a limit of 20,000).
  const n = ctx.quick ? 1000 : proxiedConnectionCap(10_000, Math.max(150, Math.ceil(0.05 * fileLimit().hard)));
  const { run: peers, skipped } = peersFor(ctx);
  const cliProblem = builtCliProblem();
  const names: ContenderName[] = ['pool', 'pinned', ...(cliProblem === undefined ? (['balancer-dist'] as const) : []), ...peers, 'naive', 'sockets'];
  const notes: string[] = [];
  if (!ctx.quick && n < 10_000) {
    notes.push(
      `The hard file-descriptor limit here is ${fileLimit().hard} (raising it takes CAP_SYS_RESOURCE), and a proxy holds two per connection, so every proxy was measured at ${n.toLocaleString('en-US')} connections; per-connection figures do not depend on that.`,
    );
  }

  const backends = await startBackends(['echo@127.0.0.1:0']);
  const echo = backends.get('echo');
  try {
    const results = await alternate(names, rounds, async (name, round): Promise<Round> => {
      const c = await startContender(ctx, name, echo, n + 50, { memProbe: true });
      try {
        // Warm-up: code paths compiled, pools and buffers allocated once.
        closeAll(await openIdle(c.host, c.port, 200, 100));
        await sleep(500);
        const before = await sample(c);
        const clients = await openIdle(c.host, c.port, n, 200);
        await sleep(1000);
        const after = await sample(c);
        closeAll(clients);
        const youngGrowth = after.young - before.young;
        const r: Round = {
          rssPerConn: (after.rss - before.rss) / n,
          steadyPerConn: (after.rss - before.rss - youngGrowth) / n,
          youngGrowth: c.control === undefined ? undefined : youngGrowth,
          heapPerConn: after.heapUsed === undefined || before.heapUsed === undefined ? undefined : (after.heapUsed - before.heapUsed) / n,
          externalPerConn: after.external === undefined || before.external === undefined ? undefined : (after.external - before.external) / n,
          rssAtN: after.rss,
        };
        ctx.log(`memory round ${round + 1}/${rounds} ${name}: ${r.rssPerConn.toFixed(0)} B/conn RSS (${r.steadyPerConn.toFixed(0)} without the young generation), heap ${r.heapPerConn?.toFixed(0) ?? '-'} B/conn`);
        return r;
      } finally {
        await c.stop();
        await sleep(300);
      }
    });

    const med = (name: ContenderName, pick: (r: Round) => number | undefined): number => {
      const values = results.get(name)!.map(pick).filter((v): v is number => v !== undefined);
      return values.length === 0 ? NaN : median(values);
    };
    const haproxyRss = peers.includes('haproxy') ? med('haproxy', (r) => r.steadyPerConn) : NaN;
    const rows: Cell[][] = names.map((name) => [
      contenderLabels[name],
      med(name, (r) => r.rssPerConn),
      med(name, (r) => r.steadyPerConn),
      med(name, (r) => r.heapPerConn),
      med(name, (r) => r.externalPerConn),
      med(name, (r) => r.youngGrowth) / 1e6,
      med(name, (r) => r.rssAtN) / 1e6,
      ratio(med(name, (r) => r.steadyPerConn), haproxyRss),
    ]);
    for (const [name, reason] of skipped) rows.push([`${contenderLabels[name]} (${reason})`]);
    if (cliProblem !== undefined) rows.push([`${contenderLabels['balancer-dist']} (${cliProblem})`]);

    const pool = med('pool', (r) => r.steadyPerConn);
    const poolRaw = med('pool', (r) => r.rssPerConn);
    const goals: Goal[] = [
      peers.includes('haproxy')
        ? { goal: 'UpstreamPool ≤ 2× HAProxy bytes per idle connection (without the young generation)', met: pool <= 2 * haproxyRss, detail: `${pool.toFixed(0)} vs ${haproxyRss.toFixed(0)} B (${ratio(pool, haproxyRss).toFixed(2)}×)` }
        : { goal: 'UpstreamPool ≤ 2× HAProxy bytes per idle connection', met: undefined, detail: skipped.get('haproxy') ?? 'HAProxy not run' },
      { goal: 'UpstreamPool ≤ 3,500 B RSS per idle connection, without the young generation', met: pool <= 3500, detail: `${pool.toFixed(0)} B` },
      { goal: 'UpstreamPool ≤ 3,500 B RSS per idle connection, young generation included', met: poolRaw <= 3500, detail: `${poolRaw.toFixed(0)} B` },
    ];
    const charts: Chart[] = [
      {
        file: 'memory',
        title: `Memory per idle proxied connection (${n.toLocaleString('en-US')} connections)`,
        unit: 'bytes per connection',
        better: 'lower',
        series: [{ name: 'RSS without the young generation' }, { name: 'RSS as measured' }, { name: 'V8 heap' }],
        rows: names.map((name) => ({
          label: contenderLabels[name],
          values: [med(name, (r) => r.steadyPerConn), med(name, (r) => r.rssPerConn), med(name, (r) => r.heapPerConn)],
          ours: ourContenders.has(name),
        })),
        notes: [
          `Growth from warm-up to ${n.toLocaleString('en-US')} idle connections, divided by ${n.toLocaleString('en-US')}; median of ${rounds} rounds; Node figures after two forced GCs.`,
          'Young generation: V8\'s nursery, grown while the connections were opened and empty after the GCs; V8 hands it back after some idle seconds.',
        ],
      },
    ];
    return {
      name: 'memory',
      title: 'Memory per idle proxied connection',
      settings: { connections: n, rounds, peers: peers.join('+') || 'none' },
      tables: [
        {
          title: `${n.toLocaleString('en-US')} idle connections, median of ${rounds} round(s)`,
          columns: [
            { title: 'proxy' },
            { title: 'RSS B/conn', digits: 0 },
            { title: 'RSS w/o young gen B/conn', digits: 0 },
            { title: 'V8 heap B/conn', digits: 0 },
            { title: 'external B/conn', digits: 0 },
            { title: 'young gen growth MB', digits: 1 },
            { title: 'RSS at N, MB', digits: 1 },
            { title: '× HAProxy', digits: 2, unit: '×' },
          ],
          rows,
        },
      ],
      goals,
      notes: [
        'B/conn: (value with N idle connections − value after warm-up) / N. One proxied connection is two sockets (client side and upstream side).',
        'Node figures are taken after two forced GCs; RSS also holds V8 heap pages that a GC freed but the allocator kept.',
        'RSS w/o young gen: the RSS growth minus the growth of V8\'s young generation (empty after the GCs, its pages resident until V8 shrinks it after some idle seconds); × HAProxy compares that figure. external: Buffer memory outside the V8 heap, where read buffers live.',
        'apiserver-balancer, built: node dist/apiserver-balancer.js with a TCP check and a /stats listener, preloading bench/lib/mem-probe.mjs (--expose-gc) so that it answers the same memory query.',
        'two Node sockets (floor): each accepted socket and its upstream socket forwarding to each other, no library: what any Node proxy pays per connection.',
        'HAProxy: one process (nbthread 1); nginx: master + one worker, RSS of both.',
        ...notes,
      ],
      durationMs: Date.now() - started,
      charts,
    };
  } finally {
    await backends.stop();
  }
}

if (isMain(import.meta.url)) runStandalone(run);
