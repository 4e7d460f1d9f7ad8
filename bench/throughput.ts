/**
 * Bulk throughput, TCP passthrough: one client downloads N bytes (2 GB; 64 MB
 * with BENCH_QUICK=1; BENCH_THROUGHPUT_BYTES to choose) from a loopback
 * server, directly and through each proxy, in alternating rounds.
 *
 * Reports the median MB/s (10^6 bytes per second) of the rounds, its ratio to
 * direct within this run, and the proxy's CPU seconds per GB moved, which is
 * the per-byte cost independent of how the two cores were shared.
 *
 * ```sh
 * npm run bench -- throughput
 * tsx bench/throughput.ts
 * ```
 *
 * @module
 */
import { startBackends, startContender, contenderLabels, type Contender, type ContenderName } from './lib/contenders.js';
import { roundsFor, type BenchContext } from './lib/context.js';
import { download } from './lib/loadgen.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor } from './lib/peers.js';
import { alternate, median, ratio } from './lib/stats.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

interface Round {
  readonly mbps: number;
  readonly cpuPerGb: number;
  readonly faultsPerGb: number;
}

/** Runs the throughput bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const envBytes = Number(process.env['BENCH_THROUGHPUT_BYTES'] ?? '');
  const bytes = Number.isInteger(envBytes) && envBytes > 0 ? envBytes : ctx.quick ? 64 * 2 ** 20 : 2 * 2 ** 30;
  const rounds = roundsFor(ctx, 3);
  const { run: peers, skipped } = peersFor(ctx);
  const names: ContenderName[] = ['direct', 'pinned', 'pool', 'pool-toppad', ...peers, 'naive'];

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
      const faults0 = c.minorFaults();
      const { ms } = await download(c.host, c.port, bytes);
      const cpu = c.cpuSeconds() - cpu0;
      const faults = c.minorFaults() - faults0;
      const mbps = bytes / 1e6 / (ms / 1000);
      ctx.log(`throughput round ${round + 1}/${rounds} ${name}: ${mbps.toFixed(0)} MB/s, proxy CPU ${cpu.toFixed(2)} s`);
      return { mbps, cpuPerGb: name === 'direct' ? NaN : cpu / (bytes / 1e9), faultsPerGb: name === 'direct' ? NaN : faults / (bytes / 1e9) };
    });

    const med = (name: ContenderName): number => median(results.get(name)?.map((r) => r.mbps) ?? []);
    const direct = med('direct');
    const rows: Cell[][] = names.map((name) => {
      const rs = results.get(name)!;
      const mbps = rs.map((r) => r.mbps);
      return [
        contenderLabels[name],
        med(name),
        `${Math.min(...mbps).toFixed(0)}–${Math.max(...mbps).toFixed(0)}`,
        ratio(med(name), direct),
        median(rs.map((r) => r.cpuPerGb)),
        median(rs.map((r) => r.faultsPerGb)),
      ];
    });
    for (const [name, reason] of skipped) rows.push([`${contenderLabels[name]} (${reason})`]);

    const goals: Goal[] = [];
    const peerBest = Math.max(...peers.map(med));
    for (const ours of ['pool', 'pinned'] as const) {
      const v = med(ours);
      if (peers.length === 0) {
        goals.push({ goal: `${contenderLabels[ours]} ≥ HAProxy and nginx`, met: undefined, detail: 'no peer installed' });
      } else {
        goals.push({
          goal: `${contenderLabels[ours]} ≥ ${peers.map((p) => contenderLabels[p]).join(' and ')}`,
          met: v >= peerBest,
          detail: `${v.toFixed(0)} vs ${peers.map((p) => `${p} ${med(p).toFixed(0)}`).join(', ')} MB/s`,
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
            { title: 'proxy CPU s/GB', digits: 2 },
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
        'UpstreamPool, MALLOC_TOP_PAD_=64 MiB: the same proxy with glibc told to keep 64 MiB of freed heap; without it, the 64 KiB read buffers Node frees at each GC are returned to the kernel and faulted back in (about 200,000 page faults per GB).',
        'proxy page faults/GB: minor page faults of the proxy process per 10^9 bytes (from /proc/PID/stat).',
      ],
      durationMs: Date.now() - started,
    };
  } finally {
    await Promise.all([...contenders.values()].map((c) => c.stop()));
    await backends.stop();
  }
}

if (isMain(import.meta.url)) runStandalone(run);
