/**
 * Bulk throughput, TCP passthrough: one client downloads N bytes (2 GB; 64 MB
 * with BENCH_QUICK=1; BENCH_THROUGHPUT_BYTES to choose) from a loopback
 * server, directly and through each proxy, in alternating rounds.
 *
 * Reports the median MB/s (10^6 bytes per second) of the rounds, its ratio to
 * direct and to HAProxy within this run, and the proxy's CPU seconds per GB
 * moved (and its kernel share), which is the per-byte cost independent of how
 * the two cores were shared. The reference balancer runs as a user runs it:
 * built (`node dist/apiserver-balancer.js`, after `npm run build`) and
 * through tsx.
 *
 * ```sh
 * npm run bench -- throughput
 * tsx bench/throughput.ts
 * ```
 *
 * @module
 */
import { builtCliProblem, ourContenders, startBackends, startContender, contenderLabels, type Contender, type ContenderName } from './lib/contenders.js';
import { roundsFor, type BenchContext } from './lib/context.js';
import { download } from './lib/loadgen.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor } from './lib/peers.js';
import { alternate, median, ratio } from './lib/stats.js';
import type { Chart } from './lib/svg-chart.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

interface Round {
  readonly mbps: number;
  readonly cpuPerGb: number;
  readonly systemPerGb: number;
  readonly faultsPerGb: number;
}

/** Runs the throughput bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const envBytes = Number(process.env['BENCH_THROUGHPUT_BYTES'] ?? '');
  const bytes = Number.isInteger(envBytes) && envBytes > 0 ? envBytes : ctx.quick ? 64 * 2 ** 20 : 2 * 2 ** 30;
  const rounds = roundsFor(ctx, 3);
  const { run: peers, skipped } = peersFor(ctx);
  const cliProblem = builtCliProblem();
  const names: ContenderName[] = ['direct', 'pinned', 'pool', ...(cliProblem === undefined ? (['balancer-dist'] as const) : []), 'balancer', ...peers, 'naive'];

  const backends = await startBackends(['source@127.0.0.1:0']);
  const source = backends.get('source');
  const contenders = new Map<ContenderName, Contender>();
  try {
    for (const name of names) contenders.set(name, await startContender(ctx, name, source));
    // Warm-up (JIT, socket buffers), not counted.
    for (const c of contenders.values()) await download(c.host, c.port, Math.min(bytes, 64 * 2 ** 20));

    const results = await alternate(names, rounds, async (name, round): Promise<Round> => {
      const c = contenders.get(name)!;
      const cpu0 = c.cpuSeconds();
      const sys0 = c.systemSeconds();
      const faults0 = c.minorFaults();
      const { ms } = await download(c.host, c.port, bytes);
      const cpu = c.cpuSeconds() - cpu0;
      const sys = c.systemSeconds() - sys0;
      const faults = c.minorFaults() - faults0;
      const mbps = bytes / 1e6 / (ms / 1000);
      ctx.log(`throughput round ${round + 1}/${rounds} ${name}: ${mbps.toFixed(0)} MB/s, proxy CPU ${cpu.toFixed(2)} s`);
      const gb = bytes / 1e9;
      return name === 'direct' ? { mbps, cpuPerGb: NaN, systemPerGb: NaN, faultsPerGb: NaN } : { mbps, cpuPerGb: cpu / gb, systemPerGb: sys / gb, faultsPerGb: faults / gb };
    });

    const med = (name: ContenderName): number => median(results.get(name)?.map((r) => r.mbps) ?? []);
    const cpuMed = (name: ContenderName): number => median(results.get(name)?.map((r) => r.cpuPerGb) ?? []);
    const direct = med('direct');
    const haproxy = peers.includes('haproxy') ? med('haproxy') : NaN;
    const rows: Cell[][] = names.map((name) => {
      const rs = results.get(name)!;
      const mbps = rs.map((r) => r.mbps);
      return [
        contenderLabels[name],
        med(name),
        `${Math.min(...mbps).toFixed(0)}–${Math.max(...mbps).toFixed(0)}`,
        ratio(med(name), direct),
        ratio(med(name), haproxy),
        cpuMed(name),
        median(rs.map((r) => r.systemPerGb)),
        median(rs.map((r) => r.faultsPerGb)),
      ];
    });
    for (const [name, reason] of skipped) rows.push([`${contenderLabels[name]} (${reason})`]);
    if (cliProblem !== undefined) rows.push([`${contenderLabels['balancer-dist']} (${cliProblem})`]);

    const goals: Goal[] = [];
    for (const ours of ['pool', 'pinned'] as const) {
      const v = med(ours);
      if (peers.length === 0) {
        goals.push({ goal: `${contenderLabels[ours]} ≥ 1.1× HAProxy and nginx`, met: undefined, detail: 'no peer installed' });
      } else {
        goals.push({
          goal: `${contenderLabels[ours]} ≥ 1.1× ${peers.map((p) => contenderLabels[p]).join(' and ')}`,
          met: peers.every((p) => v >= 1.1 * med(p)),
          detail: `${v.toFixed(0)} MB/s: ${peers.map((p) => `${ratio(v, med(p)).toFixed(2)}× ${p} (${med(p).toFixed(0)})`).join(', ')}`,
        });
        goals.push({
          goal: `${contenderLabels[ours]}: CPU per GB no higher than ${peers.map((p) => contenderLabels[p]).join('\'s and ')}'s`,
          met: peers.every((p) => cpuMed(ours) <= cpuMed(p)),
          detail: `${cpuMed(ours).toFixed(2)} s/GB vs ${peers.map((p) => `${p} ${cpuMed(p).toFixed(2)}`).join(', ')}`,
        });
      }
      // "Clearly": 10% ahead at the median, and every round of ours above every round of the naive pipe.
      const naive = med('naive');
      const oursMin = Math.min(...results.get(ours)!.map((r) => r.mbps));
      const naiveMax = Math.max(...results.get('naive')!.map((r) => r.mbps));
      goals.push({
        goal: `${contenderLabels[ours]} clearly ahead of the naive pipe (≥ 1.10× at the median, ranges apart)`,
        met: ratio(v, naive) >= 1.1 && oursMin > naiveMax,
        detail: `${ratio(v, naive).toFixed(2)}× naive; slowest round ${oursMin.toFixed(0)} vs naive's fastest ${naiveMax.toFixed(0)} MB/s`,
      });
    }
    if (cliProblem === undefined) {
      const r = ratio(med('balancer-dist'), med('pool'));
      goals.push({ goal: 'the built CLI within 5% of UpstreamPool in-process', met: r >= 0.95, detail: `${r.toFixed(2)}× (${med('balancer-dist').toFixed(0)} vs ${med('pool').toFixed(0)} MB/s)` });
    } else goals.push({ goal: 'the built CLI within 5% of UpstreamPool in-process', met: undefined, detail: cliProblem });

    const proxies = names.filter((n) => n !== 'direct');
    const range = (name: ContenderName, pick: (r: Round) => number): readonly [number, number] => {
      const v = results.get(name)!.map(pick);
      return [Math.min(...v), Math.max(...v)];
    };
    const charts: Chart[] = [
      {
        file: 'throughput',
        title: `Bulk throughput: one ${(bytes / 2 ** 30).toFixed(bytes >= 2 ** 30 ? 0 : 2)} GiB download through each proxy`,
        unit: 'MB/s',
        better: 'higher',
        series: [{ name: 'median MB/s' }],
        rows: proxies.map((n) => ({ label: contenderLabels[n], values: [med(n)], ranges: [range(n, (r) => r.mbps)], ours: ourContenders.has(n) })),
        notes: [`Median of ${rounds} alternating rounds, whiskers from the slowest to the fastest round; direct (no proxy): ${direct.toFixed(0)} MB/s.`, 'One thread each; client, proxy and server share the machine\'s cores.'],
      },
      {
        file: 'throughput-cpu',
        title: 'CPU per GB moved, bulk download',
        unit: 'CPU s/GB',
        digits: 2,
        better: 'lower',
        series: [{ name: 'proxy CPU s/GB' }, { name: 'of which kernel' }],
        rows: proxies.map((n) => ({
          label: contenderLabels[n],
          values: [cpuMed(n), median(results.get(n)!.map((r) => r.systemPerGb))],
          ranges: [range(n, (r) => r.cpuPerGb), undefined],
          ours: ourContenders.has(n),
        })),
        notes: [`User + system CPU of the proxy process per 10^9 bytes (from /proc/PID/stat), median of ${rounds} rounds.`],
      },
    ];

    return {
      name: 'throughput',
      title: 'Bulk throughput (TCP passthrough, one download)',
      settings: { bytes, rounds, peers: peers.join('+') || 'none' },
      tables: [
        {
          title: `Download of ${(bytes / 1e6).toFixed(0)} MB, median of ${rounds} alternating round(s)`,
          columns: [
            { title: 'path' },
            { title: 'MB/s', digits: 0 },
            { title: 'range MB/s' },
            { title: '× direct', digits: 2, unit: '×' },
            { title: '× HAProxy', digits: 2, unit: '×' },
            { title: 'proxy CPU s/GB', digits: 2 },
            { title: 'of which kernel', digits: 2 },
            { title: 'proxy page faults/GB', digits: 0 },
          ],
          rows,
        },
      ],
      goals,
      notes: [
        'Client, proxy and server are three processes on the same cores; a proxy at 0.5× direct is sharing the CPU, not necessarily slow.',
        'proxy CPU s/GB: user+system CPU of the proxy process per 10^9 bytes moved (from /proc/PID/stat), the per-byte cost.',
        'HAProxy and nginx run with one thread/worker and default buffers (HAProxy tune.bufsize 16 kB without splicing, nginx proxy_buffer_size 16 kB).',
        'proxy page faults/GB: minor page faults of the proxy process per 10^9 bytes (from /proc/PID/stat).',
        'UpstreamPool and PinnedConnection run in bench/lib/node-proxy.ts through tsx; apiserver-balancer is examples/apiserver-balancer.ts with a TCP check and a /stats listener, built (node dist/apiserver-balancer.js) and through tsx.',
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
