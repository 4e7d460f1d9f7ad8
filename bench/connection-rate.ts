/**
 * Connection rate: short connect–send–receive–close exchanges (64 bytes echoed
 * by a server that then closes) at concurrency 50, 20,000 per contender
 * (1,000 with BENCH_QUICK=1), split into alternating rounds.
 *
 * Reports connections per second (median of the rounds) and the latency of
 * one exchange (connect() to the reply's FIN; p50/p99 over all rounds), and
 * what each proxy adds to direct's latency.
 *
 * ```sh
 * npm run bench -- connection-rate
 * ```
 *
 * @module
 */
import { builtCliProblem, ourContenders, startBackends, startContender, contenderLabels, type Contender, type ContenderName } from './lib/contenders.js';
import type { BenchContext } from './lib/context.js';
import { exchanges, type ExchangeResult } from './lib/loadgen.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor } from './lib/peers.js';
import { alternate, median, percentiles, ratio } from './lib/stats.js';
import type { Chart } from './lib/svg-chart.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

const CONCURRENCY = 50;

/** Runs the connection-rate bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const total = ctx.quick ? 1000 : 20_000;
  const rounds = ctx.rounds ?? (ctx.quick ? 1 : 4);
  const perRound = Math.ceil(total / rounds);
  const { run: peers, skipped } = peersFor(ctx);
  const cliProblem = builtCliProblem();
  const names: ContenderName[] = ['direct', 'pool', 'pinned', ...(cliProblem === undefined ? (['balancer-dist'] as const) : []), 'balancer', ...peers, 'naive', 'sockets'];

  // One listener per contender: each has its own 4-tuples and TIME_WAIT entries.
  const backends = await startBackends(names.map(() => 'echo-close@127.0.0.1:0'));
  const contenders = new Map<ContenderName, Contender>();
  try {
    for (const [i, name] of names.entries()) contenders.set(name, await startContender(ctx, name, backends.get('echo-close', i)));
    for (const c of contenders.values()) await exchanges(c.host, c.port, 500, CONCURRENCY);

    const results = await alternate(names, rounds, async (name, round): Promise<ExchangeResult & { cpu: number }> => {
      const c = contenders.get(name)!;
      const cpu0 = c.cpuSeconds();
      const r = await exchanges(c.host, c.port, perRound, CONCURRENCY);
      const cpu = c.cpuSeconds() - cpu0;
      ctx.log(`connection-rate round ${round + 1}/${rounds} ${name}: ${((r.completed / r.ms) * 1000).toFixed(0)}/s, ${r.errors} errors`);
      return { ...r, cpu };
    });

    const summary = new Map<ContenderName, { rate: number; p50: number; p99: number; errors: number; cpuPerK: number; range: readonly [number, number] }>();
    for (const name of names) {
      const rs = results.get(name)!;
      const all = new Float64Array(rs.reduce((n, r) => n + r.latencies.length, 0));
      let off = 0;
      for (const r of rs) {
        all.set(r.latencies, off);
        off += r.latencies.length;
      }
      const [p50, p99] = percentiles(all, [50, 99]);
      const completed = rs.reduce((n, r) => n + r.completed, 0);
      const rates = rs.map((r) => (r.completed / r.ms) * 1000);
      summary.set(name, {
        rate: median(rates),
        range: [Math.min(...rates), Math.max(...rates)],
        p50: p50!,
        p99: p99!,
        errors: rs.reduce((n, r) => n + r.errors, 0),
        cpuPerK: name === 'direct' ? NaN : (rs.reduce((n, r) => n + r.cpu, 0) / completed) * 1000 * 1000,
      });
    }
    const direct = summary.get('direct')!;
    const haproxy = summary.get('haproxy');
    const rows: Cell[][] = names.map((name) => {
      const s = summary.get(name)!;
      return [
        contenderLabels[name],
        s.rate,
        ratio(s.rate, direct.rate),
        haproxy ? ratio(s.rate, haproxy.rate) : undefined,
        s.p50,
        s.p99,
        name === 'direct' ? undefined : s.p50 - direct.p50,
        name === 'direct' ? undefined : s.p99 - direct.p99,
        s.cpuPerK,
        s.errors,
      ];
    });
    for (const [name, reason] of skipped) rows.push([`${contenderLabels[name]} (${reason})`]);
    if (cliProblem !== undefined) rows.push([`${contenderLabels['balancer-dist']} (${cliProblem})`]);

    const goals: Goal[] = [];
    const pool = summary.get('pool')!;
    // The floor: two sockets forwarding to each other and nothing else. When
    // even it is under the target, no library on net.Socket can meet it.
    const floor = summary.get('sockets')!;
    for (const [label, s] of [['UpstreamPool', pool], ['two Node sockets, no library (floor)', floor]] as const) {
      const goal = `${label} ≥ 0.8× HAProxy connections/s`;
      goals.push(
        haproxy
          ? { goal, met: s.rate >= 0.8 * haproxy.rate, detail: `${ratio(s.rate, haproxy.rate).toFixed(2)}× (${s.rate.toFixed(0)} vs ${haproxy.rate.toFixed(0)}/s)` }
          : { goal, met: undefined, detail: skipped.get('haproxy') ?? 'HAProxy not run' },
      );
    }
    const cli = summary.get('balancer-dist');
    goals.push(
      cli
        ? { goal: 'the built CLI within 5% of UpstreamPool in-process', met: cli.rate >= 0.95 * pool.rate, detail: `${ratio(cli.rate, pool.rate).toFixed(2)}× (${cli.rate.toFixed(0)} vs ${pool.rate.toFixed(0)}/s)` }
        : { goal: 'the built CLI within 5% of UpstreamPool in-process', met: undefined, detail: cliProblem ?? 'not run' },
    );

    const proxies = names.filter((n) => n !== 'direct');
    const charts: Chart[] = [
      {
        file: 'connection-rate',
        title: `Connection rate: connect, 64 B echoed, server closes (concurrency ${CONCURRENCY})`,
        unit: 'connections/s',
        better: 'higher',
        series: [{ name: 'median connections/s' }],
        rows: proxies.map((n) => ({ label: contenderLabels[n], values: [summary.get(n)!.rate], ranges: [summary.get(n)!.range], ours: ourContenders.has(n) })),
        notes: [`Median of ${rounds} alternating rounds of ${perRound.toLocaleString('en-US')} exchanges, whiskers from the slowest to the fastest round; direct (no proxy): ${direct.rate.toFixed(0)}/s.`],
      },
      {
        file: 'connection-cpu',
        title: 'CPU per 1,000 proxied connections',
        unit: 'CPU ms per 1,000 connections',
        better: 'lower',
        series: [{ name: 'proxy CPU ms/1k' }],
        rows: proxies.map((n) => ({ label: contenderLabels[n], values: [summary.get(n)!.cpuPerK], ours: ourContenders.has(n) })),
        notes: ['User + system CPU of the proxy process (from /proc/PID/stat) over every round, per 1,000 exchanges.'],
      },
    ];

    return {
      name: 'connection-rate',
      title: 'Connection rate (connect, 64 B echoed, server closes)',
      settings: { exchangesPerContender: perRound * rounds, concurrency: CONCURRENCY, rounds, peers: peers.join('+') || 'none' },
      tables: [
        {
          title: `${(perRound * rounds).toLocaleString('en-US')} exchanges per path at concurrency ${CONCURRENCY}, ${rounds} alternating round(s)`,
          columns: [
            { title: 'path' },
            { title: 'conn/s', digits: 0 },
            { title: '× direct', digits: 2, unit: '×' },
            { title: '× HAProxy', digits: 2, unit: '×' },
            { title: 'p50 ms', digits: 2 },
            { title: 'p99 ms', digits: 2 },
            { title: '+p50 ms', digits: 2 },
            { title: '+p99 ms', digits: 2 },
            { title: 'proxy CPU ms/1k', digits: 0 },
            { title: 'errors', digits: 0 },
          ],
          rows,
        },
      ],
      goals,
      notes: [
        'conn/s: median over rounds; latency percentiles pooled over every exchange of every round; +p50/+p99: added to direct.',
        'proxy CPU ms/1k: CPU milliseconds the proxy process spent per 1,000 exchanges.',
        'The load generator is one Node process; direct is bounded by it and by the echo server, so ratios to HAProxy are the figure to read.',
        'apiserver-balancer: examples/apiserver-balancer.ts with a TCP check every second and a /stats listener, built (node dist/apiserver-balancer.js) and through tsx; UpstreamPool is a pool with default options in bench/lib/node-proxy.ts, through tsx.',
      ],
      durationMs: Date.now() - started,
      charts,
    };
  } finally {
    await Promise.all([...contenders.values()].map((c) => c.stop()));
    await backends.stop();
  }
}

if (isMain(import.meta.url)) runStandalone(run);
