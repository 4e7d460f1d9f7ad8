/**
 * Probe cost: the CPU a {@link HealthProbe} uses checking 1,000 local HTTPS
 * backends (`GET /readyz`, fixture CA, every second; 100 with BENCH_QUICK=1),
 * and the event-loop delay it causes, measured by the probing process itself
 * over a 10 s window after a warm-up: once as configured by default (the
 * connection kept between checks) and once with `reuseConnection: false` (a
 * connection and a resumed TLS handshake per check). HAProxy checking the
 * same backends (`option httpchk GET /readyz`, `check-ssl verify none`,
 * `inter 1000`) is measured alongside, by its process's CPU time, when
 * installed. The backends' own process CPU is shown too: it tells how much
 * TLS work each prober makes the other side do.
 *
 * ```sh
 * npm run bench -- probe-cost
 * ```
 *
 * @module
 */
import { roundsFor, type BenchContext } from './lib/context.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor, startPeer } from './lib/peers.js';
import { cpuSeconds, nodeTs, sleep, startChild } from './lib/proc.js';
import { alternate, median } from './lib/stats.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

interface ProbeResult {
  readonly cpuPct: number;
  readonly userPct: number;
  readonly systemPct: number;
  readonly checksPerSecond: number;
  /** New connections per second (each a TLS handshake); none once every kept connection is open. */
  readonly dialsPerSecond: number;
  /** This thread's CPU between two 1 ms ticks, p99: the loop delay's p99 with a core to itself. */
  readonly turnCpuP99Ms: number;
  readonly failures: number;
  readonly failureCodes: Record<string, number>;
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  readonly slowestCheckMs: number;
  readonly targetsCpuPct: number;
}

type Prober = 'probe' | 'probe-fresh' | 'haproxy';

/** Runs the probe-cost bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const count = ctx.quick ? 100 : 1000;
  const interval = 1000;
  const warmupMs = ctx.quick ? 2000 : 3000;
  const windowMs = ctx.quick ? 3000 : 10_000;
  const rounds = roundsFor(ctx, 2);
  const { run: peers, skipped } = peersFor(ctx);
  const probers: Prober[] = peers.includes('haproxy') ? ['probe', 'probe-fresh', 'haproxy'] : ['probe', 'probe-fresh'];

  const [cmd, args] = nodeTs('bench/lib/probe-targets.ts', ['--count', String(count)]);
  const targets = startChild(cmd, args);
  try {
    const portsLine = await targets.waitForLine(/^ports (.*)$/, 60_000);
    await targets.waitForLine(/^ready$/, 60_000);
    const ports = portsLine[1]!.split(',').map(Number);

    const results = await alternate(probers, rounds, async (prober, round): Promise<ProbeResult> => {
      let r: ProbeResult;
      if (prober !== 'haproxy') {
        const [c, a] = nodeTs('bench/lib/probe-host.ts', [
          '--ports', ports.join(','),
          '--interval', String(interval),
          '--warmup', String(warmupMs),
          '--window', String(windowMs),
          '--reuse', String(prober === 'probe'),
        ]);
        const host = startChild(c, a);
        let t0 = 0;
        const warm = sleep(warmupMs + 500).then(() => (t0 = cpuSeconds(targets.pid)));
        const line = await host.waitForLine(/^probe-result (.*)$/, warmupMs + windowMs + 30_000);
        await warm;
        const targetsCpu = cpuSeconds(targets.pid) - t0;
        await host.stop();
        const p = JSON.parse(line[1]!) as Omit<ProbeResult, 'targetsCpuPct'>;
        r = { ...p, targetsCpuPct: (targetsCpu / (windowMs / 1000)) * 100 };
      } else {
        const peer = await startPeer('haproxy', {
          upstreams: ports.map((port) => ({ host: '127.0.0.1', port })),
          maxconn: 2000,
          haproxyBackendLines: ['option httpchk GET /readyz', 'timeout check 1000ms'],
          haproxyServerOptions: `check check-ssl verify none inter ${interval} fall 3 rise 2`,
        });
        try {
          await sleep(warmupMs);
          const p0 = peer.cpuSeconds();
          const t0 = cpuSeconds(targets.pid);
          await sleep(windowMs);
          const cpu = peer.cpuSeconds() - p0;
          const targetsCpu = cpuSeconds(targets.pid) - t0;
          const pct = (cpu / (windowMs / 1000)) * 100;
          r = {
            cpuPct: pct,
            userPct: NaN,
            systemPct: NaN,
            checksPerSecond: NaN,
            dialsPerSecond: NaN,
            turnCpuP99Ms: NaN,
            failures: NaN,
            failureCodes: {},
            loopDelayP99Ms: NaN,
            loopDelayMaxMs: NaN,
            slowestCheckMs: NaN,
            targetsCpuPct: (targetsCpu / (windowMs / 1000)) * 100,
          };
        } finally {
          await peer.stop();
        }
      }
      ctx.log(`probe-cost round ${round + 1}/${rounds} ${prober}: ${r.cpuPct.toFixed(1)}% CPU, ${r.checksPerSecond.toFixed(0)} checks/s, loop delay max ${r.loopDelayMaxMs.toFixed(1)} ms`);
      await sleep(500);
      return r;
    });

    const med = (p: Prober, f: (r: ProbeResult) => number): number => median(results.get(p)!.map(f));
    const maxOf = (p: Prober, f: (r: ProbeResult) => number): number => Math.max(...results.get(p)!.map(f));
    const probeRow = (p: Prober, title: string): Cell[] => [
      title,
      count,
      med(p, (r) => r.checksPerSecond),
      med(p, (r) => r.dialsPerSecond),
      med(p, (r) => r.failures),
      med(p, (r) => r.cpuPct),
      med(p, (r) => r.userPct),
      med(p, (r) => r.systemPct),
      med(p, (r) => r.loopDelayP99Ms),
      maxOf(p, (r) => r.loopDelayMaxMs),
      med(p, (r) => r.turnCpuP99Ms),
      med(p, (r) => r.targetsCpuPct),
    ];
    const rows: Cell[][] = [
      probeRow('probe', 'HealthProbe (https /readyz, connection kept)'),
      probeRow('probe-fresh', 'HealthProbe (reuseConnection: false)'),
    ];
    if (probers.includes('haproxy')) {
      rows.push(['HAProxy (httpchk, check-ssl verify none)', count, undefined, undefined, undefined, med('haproxy', (r) => r.cpuPct), undefined, undefined, undefined, undefined, undefined, med('haproxy', (r) => r.targetsCpuPct)]);
    } else {
      rows.push([`HAProxy (${skipped.get('haproxy') ?? 'skipped'})`]);
    }
    const failureCodes: Record<string, number> = {};
    for (const p of ['probe', 'probe-fresh'] as const) {
      for (const r of results.get(p)!) for (const [k, v] of Object.entries(r.failureCodes)) failureCodes[`${p} ${k}`] = (failureCodes[`${p} ${k}`] ?? 0) + v;
    }

    const cpu = med('probe', (r) => r.cpuPct);
    const p99 = med('probe', (r) => r.loopDelayP99Ms);
    const delay = maxOf('probe', (r) => r.loopDelayMaxMs);
    const goals: Goal[] = ctx.quick
      ? []
      : [
          { goal: 'HealthProbe on 1,000 HTTPS backends every second: under 10% of one core', met: cpu < 10, detail: `${cpu.toFixed(1)}%` },
          ...(probers.includes('haproxy')
            ? [{ goal: "HealthProbe's CPU no more than HAProxy's in the same run", met: cpu <= med('haproxy', (r) => r.cpuPct), detail: `${cpu.toFixed(1)}% vs ${med('haproxy', (r) => r.cpuPct).toFixed(1)}%` }]
            : []),
          { goal: 'event-loop delay p99 at most 5 ms', met: p99 <= 5, detail: `median p99 ${p99.toFixed(1)} ms over ${rounds} window(s)` },
          { goal: 'no event-loop delay above 20 ms', met: delay <= 20, detail: `max ${delay.toFixed(1)} ms over ${rounds} window(s) of ${windowMs / 1000} s` },
        ];
    return {
      name: 'probe-cost',
      title: 'Probe cost: HTTPS checks of many backends',
      settings: { backends: count, interval, timeout: 1000, windowMs, rounds },
      tables: [
        {
          title: `${count.toLocaleString('en-US')} HTTPS backends checked every ${interval} ms, ${windowMs / 1000} s window, median of ${rounds} round(s)`,
          columns: [
            { title: 'prober' },
            { title: 'backends', digits: 0 },
            { title: 'checks/s', digits: 0 },
            { title: 'new conns/s', digits: 0 },
            { title: 'failed', digits: 0 },
            { title: 'CPU % of a core', digits: 1 },
            { title: 'user %', digits: 1 },
            { title: 'sys %', digits: 1 },
            { title: 'loop delay p99 ms', digits: 1 },
            { title: 'loop delay max ms', digits: 1 },
            { title: 'turn CPU p99 ms', digits: 2 },
            { title: "backends' CPU %", digits: 1 },
          ],
          rows,
        },
      ],
      goals,
      notes: [
        'CPU %: CPU seconds per second of the probing process (100% = one core). Loop delay: monitorEventLoopDelay (10 ms resolution) in the probing process; max is the largest over every round.',
        "turn CPU p99: the probing thread's CPU time between two ticks of a 1 ms timer, 99th percentile: the loop delay it would see with a core to itself. new conns/s: TLS handshakes; above 0 the window still saw the first round (or kept connections that expired).",
        "backends' CPU %: the process serving all the backends, during the same window: the TLS handshakes each prober makes the servers do.",
        'connection kept: each check is a request on the connection the last check left open (the default); reuseConnection: false: a new connection and a resumed TLS handshake per check.',
        ...(Object.keys(failureCodes).length > 0 ? [`Failed checks by layer (all rounds): ${JSON.stringify(failureCodes)}`] : []),
      ],
      durationMs: Date.now() - started,
    };
  } finally {
    await targets.stop(10_000);
  }
}

if (isMain(import.meta.url)) runStandalone(run);
