/**
 * Failover after a silent cut, the mission: 3 apiserver-like HTTPS backends,
 * 60 and 300 reflector-like watch streams (60 only with BENCH_QUICK=1;
 * BENCH_FAILOVER_STREAMS=60,300 to choose), one
 * backend cut off with an nftables drop rule, in a private network namespace.
 * For the streams that were on the cut backend: time until each receives an
 * event from a live backend again (p50/p99/max over all rounds), and how
 * many are still stuck at the end of the window.
 *
 * Contenders: the reference balancer (examples/apiserver-balancer.ts,
 * HTTPS /readyz checks), HAProxy with `option httpchk GET /readyz`,
 * `check-ssl verify none` and `on-marked-down shutdown-sessions` at the same
 * interval/timeout/fall/rise, HAProxy without shutdown-sessions, nginx open
 * source (stream, least_conn, 30-minute timeouts, passive checks only), and
 * the naive pipe (round-robin).
 *
 * Needs root, `unshare`, `ip` and `nft`; reports skipped otherwise.
 *
 * ```sh
 * npm run bench -- failover
 * ```
 *
 * @module
 */
import { loadavg } from 'node:os';
import { netnsMissing } from '../examples/support/nft-cut.js';
import { roundsFor, type BenchContext } from './lib/context.js';
import type { FailoverContender, ScenarioInput, Trial } from './lib/failover-scenario.js';
import { isMain, runStandalone } from './lib/main.js';
import { peersFor } from './lib/peers.js';
import { startChild } from './lib/proc.js';
import { percentiles } from './lib/stats.js';
import type { Chart, ChartRow } from './lib/svg-chart.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

const labels: Readonly<Record<FailoverContender, string>> = {
  balancer: 'apiserver-balancer (this library)',
  'balancer-workers2': 'apiserver-balancer, --workers 2',
  haproxy: 'HAProxy, shutdown-sessions',
  'haproxy-noshutdown': 'HAProxy, no shutdown-sessions',
  nginx: 'nginx stream, least_conn',
  naive: 'naive pipe',
  direct: 'reconnect floor: no balancer, straight to the live backends',
};

/** Median CPU seconds of the rounds, proxy / backends / clients. */
function cpuText(trials: readonly Trial[]): string {
  const measured = trials.flatMap((t) => (t.cpu === undefined ? [] : [t.cpu]));
  if (measured.length === 0) return '';
  const med = (pick: (c: NonNullable<Trial['cpu']>) => number): string => {
    const xs = measured.map(pick).sort((a, b) => a - b);
    return xs[Math.floor((xs.length - 1) / 2)]!.toFixed(2);
  };
  return `${med((c) => c.proxy)} / ${med((c) => c.backends)} / ${med((c) => c.clients)}`;
}

/** Runs the failover bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const probe = { interval: 1000, timeout: 1000, fall: 2, rise: 2 };
  const boundMs = probe.interval * probe.fall + probe.timeout + 500;
  const sizesText = process.env['BENCH_FAILOVER_STREAMS'];
  const sizes = sizesText ? sizesText.split(',').map(Number) : ctx.quick ? [60] : [60, 300];
  if (sizes.some((n) => !Number.isInteger(n) || n < 3)) throw new TypeError(`Expected \`BENCH_FAILOVER_STREAMS\` to be integers >= 3, got \`${sizesText ?? ''}\``);
  const rounds = roundsFor(ctx, 4);
  // Without an active check that closes sessions, nothing can recover: one round shows it.
  const firstRoundOnly: FailoverContender[] = ['haproxy-noshutdown', 'nginx', 'naive'];
  const windowMs = ctx.quick ? boundMs + 2500 : Math.max(10_000, 2 * boundMs + 3000);
  const { run: peers, skipped } = peersFor(ctx);
  let contenders: FailoverContender[] = ['balancer', 'balancer-workers2'];
  if (peers.includes('haproxy')) contenders.push('haproxy', 'haproxy-noshutdown');
  if (peers.includes('nginx')) contenders.push('nginx');
  contenders.push('naive', 'direct');
  // BENCH_FAILOVER_CONTENDERS=balancer,haproxy,direct to run a subset (3,000 streams take minutes per trial).
  const only = process.env['BENCH_FAILOVER_CONTENDERS'];
  if (only !== undefined && only !== '') {
    const wanted = only.split(',');
    const bad = wanted.filter((w) => !(w in labels));
    if (bad.length > 0) throw new TypeError(`Expected \`BENCH_FAILOVER_CONTENDERS\` to name contenders of ${Object.keys(labels).join(', ')}, got \`${only}\``);
    contenders = contenders.filter((c) => wanted.includes(c));
  }
  const settings = {
    backends: 3,
    streams: sizes.join('+'),
    rounds,
    interval: probe.interval,
    timeout: probe.timeout,
    fall: probe.fall,
    rise: probe.rise,
    connectTimeout: 1000,
    windowMs,
  };
  const title = 'Failover after a silent cut (nftables drop, both ways)';

  const missing = netnsMissing();
  if (missing !== undefined) {
    return {
      name: 'failover',
      title,
      settings,
      tables: [{ title: 'Recovery of the streams on the cut backend', columns: [{ title: 'proxy' }, { title: 'result' }], rows: [['all', `skipped: ${missing}`]] }],
      goals: [{ goal: 'failover goals', met: undefined, detail: `skipped: ${missing}` }],
      notes: [],
      durationMs: Date.now() - started,
    };
  }

  const input: ScenarioInput = { sizes, rounds, contenders, firstRoundOnly, probe, connectTimeout: 1000, windowMs };
  // detached: the scenario leads a process group with everything it starts, killed together.
  const child = startChild('unshare', ['-n', '--', process.execPath, '--import', 'tsx', 'bench/lib/failover-scenario.ts', JSON.stringify(input)], {
    detached: true,
    env: process.env,
  });
  if (process.env['BENCH_VERBOSE'] === '1') child.process.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
  // Opening thousands of TLS streams takes a while on two shared cores.
  const perTrial = windowMs + 8000 + 60 * Math.max(...sizes);
  const trials = sizes.length * contenders.reduce((n, c) => n + (firstRoundOnly.includes(c) ? 1 : rounds), 0);
  const budget = trials * perTrial + 30_000;
  let result: { trials: Trial[]; error?: string };
  try {
    const m = await child.waitForLine(/^FAILOVER_RESULT (.*)$/, budget);
    result = JSON.parse(m[1]!) as { trials: Trial[]; error?: string };
  } finally {
    await child.stop();
  }
  if (result.error !== undefined) throw new Error(`failover scenario failed: ${result.error}; stderr: ${child.stderr().slice(-2000)}`);

  const tables = [];
  const chartRows: ChartRow[] = [];
  const goals: Goal[] = [];
  const notes: string[] = [];
  for (const size of sizes) {
    const rows: Cell[][] = [];
    const p99Of = new Map<FailoverContender, number>();
    const detectOf = new Map<FailoverContender, number>();
    for (const name of contenders) {
      const ts = result.trials.filter((t) => t.contender === name && t.size === size);
      const failed = ts.filter((t) => t.error !== undefined);
      for (const f of failed) notes.push(`${labels[name]}, ${size} streams, round ${f.round + 1}: ${f.error ?? ''}`);
      const ok = ts.filter((t) => t.error === undefined);
      const recovery = ok.flatMap((t) => t.recoveryMs);
      const victims = ok.reduce((n, t) => n + t.victims, 0);
      const stuck = ok.reduce((n, t) => n + t.stuck, 0);
      const [p50, p99] = percentiles(recovery, [50, 99]);
      p99Of.set(name, stuck > 0 ? Infinity : p99!);
      chartRows.push({
        label: `${labels[name]}, ${size} streams`,
        values: stuck > 0 || recovery.length === 0 ? [undefined, undefined] : [p50! / 1000, p99! / 1000],
        note: stuck > 0 ? `${stuck} of ${victims} streams stuck (nothing within ${(windowMs / 1000).toFixed(0)} s)` : 'no figure',
        ours: name === 'balancer',
      });
      const detections = ok.flatMap((t) => (t.downAfterMs === undefined ? [] : [t.downAfterMs])).sort((a, b) => a - b);
      const detect = detections.length > 0 ? detections[Math.floor((detections.length - 1) / 2)]! : undefined;
      if (detect !== undefined) detectOf.set(name, detect);
      rows.push([
        labels[name],
        ok.length,
        `${victims}/${ok.reduce((n, t) => n + t.size, 0)}`,
        recovery.length,
        stuck,
        recovery.length > 0 ? p50! / 1000 : undefined,
        recovery.length > 0 ? p99! / 1000 : undefined,
        recovery.length > 0 ? Math.max(...recovery) / 1000 : undefined,
        detect === undefined ? undefined : detect / 1000,
        detect === undefined || recovery.length === 0 ? undefined : (p99! - detect) / 1000,
        ok.reduce((n, t) => n + (t.listenDrops ?? 0), 0),
        cpuText(ok),
        ok.some((t) => t.clientLoopMaxMs !== undefined) ? Math.max(...ok.map((t) => t.clientLoopMaxMs ?? 0)) / 1000 : undefined,
        ok.length < ts.length ? `${ts.length - ok.length} round(s) failed` : '',
      ]);
    }
    for (const [name, reason] of skipped) rows.push([`${name === 'haproxy' ? 'HAProxy' : 'nginx'} (${reason})`]);
    tables.push({
      title: `${size} watch streams: streams on the cut backend, recovery from the cut to their first event from a live backend`,
      columns: [
        { title: 'proxy' },
        { title: 'rounds', digits: 0 },
        { title: 'on cut / all' },
        { title: 'recovered', digits: 0 },
        { title: 'stuck', digits: 0 },
        { title: 'p50 s', digits: 2 },
        { title: 'p99 s', digits: 2 },
        { title: 'max s', digits: 2 },
        { title: 'down after s', digits: 2 },
        { title: 'p99 − down s', digits: 2 },
        { title: 'SYN drops', digits: 0 },
        { title: 'CPU s: proxy / backends / clients' },
        { title: 'clients longest turn s', digits: 2 },
        { title: 'note' },
      ],
      rows,
    });
    const ours = result.trials.filter((t) => t.contender === 'balancer' && t.size === size && t.error === undefined);
    const ourStuck = ours.reduce((n, t) => n + t.stuck, 0);
    const ourP99 = p99Of.get('balancer')!;
    goals.push({ goal: `${size} streams: 0 stuck`, met: ours.length > 0 && ourStuck === 0, detail: `${ourStuck} stuck over ${ours.length} round(s)` });
    goals.push({
      goal: `${size} streams: p99 ≤ interval × fall + timeout + 0.5 s = ${(boundMs / 1000).toFixed(1)} s`,
      met: ours.length > 0 && ourP99 <= boundMs,
      detail: `p99 ${(ourP99 / 1000).toFixed(2)} s`,
    });
    const floor = p99Of.get('direct');
    for (const name of ['balancer', 'balancer-workers2'] as const) {
      const p99 = p99Of.get(name);
      if (p99 === undefined || floor === undefined || !Number.isFinite(floor)) continue;
      const target = 1.1 * (boundMs + floor);
      goals.push({
        goal: `${size} streams, ${labels[name]}: p99 ≤ (detection bound + reconnect floor p99) × 1.1 = ${(target / 1000).toFixed(2)} s`,
        met: p99 <= target,
        detail: `p99 ${(p99 / 1000).toFixed(2)} s; floor p99 ${(floor / 1000).toFixed(2)} s${detectOf.has(name) ? `; marked down after ${(detectOf.get(name)! / 1000).toFixed(2)} s (median)` : ''}`,
      });
    }
    const hp = p99Of.get('haproxy');
    goals.push(
      hp === undefined
        ? { goal: `${size} streams: p99 no worse than HAProxy's`, met: undefined, detail: skipped.get('haproxy') ?? 'HAProxy not run' }
        : { goal: `${size} streams: p99 no worse than HAProxy's (shutdown-sessions)`, met: ourP99 <= hp, detail: `${(ourP99 / 1000).toFixed(2)} s vs ${(hp / 1000).toFixed(2)} s` },
    );
  }

  const charts: Chart[] = [
    {
      file: 'failover',
      title: 'Failover: recovery of the streams on a silently cut backend',
      unit: 'seconds from the cut to the first event from a live backend',
      digits: 2,
      better: 'lower',
      series: [{ name: 'p50' }, { name: 'p99' }],
      rows: chartRows,
      notes: [
        `Probe: interval ${probe.interval} ms, timeout ${probe.timeout} ms, fall ${probe.fall}, rise ${probe.rise}, for the balancer and HAProxy alike; bound interval × fall + timeout + 0.5 s = ${(boundMs / 1000).toFixed(1)} s.`,
        `Percentiles over every stream on the cut backend in ${rounds} rounds (one for the contenders that cannot recover a stream).`,
      ],
    },
  ];

  return {
    name: 'failover',
    title,
    settings,
    tables,
    goals,
    notes: [
      `Probe settings, the same for the balancer and HAProxy: interval ${probe.interval} ms, timeout ${probe.timeout} ms, fall ${probe.fall}, rise ${probe.rise}; every proxy connects to backends with a ${settings.connectTimeout} ms timeout.`,
      `stuck: streams on the cut backend that received nothing from a live backend within ${(windowMs / 1000).toFixed(1)} s of the cut. A reflector's watch has no read timeout, so without a proxy that closes it, it stays stuck until TCP gives up (keepalive or retransmission timeouts, minutes).`,
      `The balancer and HAProxy with shutdown-sessions run ${rounds} round(s) per size (recovery depends on where in the check cycle the cut falls); the others run one, as nothing in them can recover a stream.`,
      `Watch clients re-watch 50 ms after their stream ends; the backends send an event on every new watch at once and then every ${Math.max(...sizes) >= 1000 ? '1,000' : '200'} ms.`,
      'reconnect floor: no balancer and no cut; a third of the streams open at one instant straight to the two live backends while the rest stream from them, timed from that instant to their first event. down after: median time from the cut to the balancer logging the backend down (detection); p99 − down: what the reconnect storm adds after the teardown. CPU s: CPU seconds from the cut (the floor: from the start of the storm) until the last stream on the cut backend recovered, of the proxy (its whole process tree), the three backends and the process of the watch clients (median over the rounds). clients longest turn: the longest event-loop delay of the process of the watch clients over the same span (the load generator holding a turn: every stream it serves waits that long). SYN drops: connection attempts dropped by a full accept queue (TcpExt ListenDrops in the namespace) during the trials, each a client waiting a second or more for its SYN to be sent again.',
      `Load average at the start: ${loadavg().map((l) => l.toFixed(2)).join(', ')} (1, 5, 15 min; two cores shared with other work).`,
      ...notes,
    ],
    durationMs: Date.now() - started,
    charts,
  };
}

if (isMain(import.meta.url)) runStandalone(run);
