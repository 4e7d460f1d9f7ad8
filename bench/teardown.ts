/**
 * Teardown: `pool.markDown(id)` on a backend holding 1,000 and 10,000 idle
 * pinned connections, while another backend holds 50 that must survive,
 * side by side for the two teardown modes: `sliced` (the default: members out
 * of the registry and silent when the call returns, sockets closed in slices
 * of 5 ms per loop turn) and `sync` (every socket closed inside the call, as
 * in 0.1). Beside them, the floor: the same number of pairs of two bare
 * `net.Socket`s (no library), reset in the same 5 ms slices: what closing the
 * sockets costs in Node by itself.
 *
 * The pool runs in its own process (bench/lib/node-proxy.ts, `markdown`
 * command), which times the call itself, the time until every destroyed
 * socket has emitted 'close', the longest event-loop stall around it (a
 * 1 ms interval timer), the longest turn's CPU and V8's longest GC pause in
 * the same window. The bench then checks from the client side that every
 * connection of the other backend still echoes.
 *
 * A process holds two descriptors per proxied connection; when the hard
 * `ulimit -n` is too low for 10,000 (it takes CAP_SYS_RESOURCE to raise it),
 * the largest size that fits is measured and the 10,000 figure is
 * extrapolated linearly, and the table says so.
 *
 * ```sh
 * npm run bench -- teardown
 * ```
 *
 * @module
 */
import type { Socket } from 'node:net';
import { startBackends, startNodeProxy } from './lib/contenders.js';
import { roundsFor, type BenchContext } from './lib/context.js';
import { closeAll, openIdle, pingAll } from './lib/loadgen.js';
import { isMain, runStandalone } from './lib/main.js';
import { fileLimit, proxiedConnectionCap, sleep } from './lib/proc.js';
import { max, median } from './lib/stats.js';
import type { Chart } from './lib/svg-chart.js';
import type { BenchReport, Cell, Goal } from './lib/table.js';

const OTHERS = 50;

/** `floor`: two bare sockets per pair, reset in the pool's slices (bench/lib/node-proxy.ts `sockets --track`). */
type TeardownMode = 'sliced' | 'sync' | 'floor';
/** BENCH_TEARDOWN_MODES=sliced,floor skips the sync mode (50 s at 9,900 on a loaded machine). */
const MODES: readonly TeardownMode[] = (process.env['BENCH_TEARDOWN_MODES'] ?? 'sliced,sync,floor').split(',').map((m) => {
  if (m !== 'sliced' && m !== 'sync' && m !== 'floor') throw new TypeError(`Expected \`BENCH_TEARDOWN_MODES\` to list sliced, sync and/or floor, got \`${m}\``);
  return m;
});

interface TeardownResult {
  readonly tornDown: number;
  readonly syncMs: number;
  readonly userMs: number;
  readonly systemMs: number;
  readonly allClosedMs: number;
  readonly maxLoopDelayMs: number;
  /** monitorEventLoopDelay (1 ms resolution) over the same stretch: its max and p99, less the 1 ms. */
  readonly eldMaxMs: number;
  readonly eldP99Ms: number;
  /** The most CPU time of the pool's thread between two ticks of a 1 ms timer: the longest turn's own work. */
  readonly maxTurnCpuMs: number;
  readonly baselineLoopDelayMs: number;
  /** V8's collections in the same stretch, and the longest one's pause. */
  readonly gcCount: number;
  readonly maxGcMs: number;
  /** The pool's modes only. */
  readonly leftInRegistry?: number;
  readonly othersBefore?: number;
  readonly othersAfter?: number;
}

/** Runs the teardown bench. */
export async function run(ctx: BenchContext): Promise<BenchReport> {
  const started = Date.now();
  const rounds = roundsFor(ctx, 3);
  const cap = proxiedConnectionCap(10_000, 100 + 2 * OTHERS);
  const sizes = ctx.quick ? [1000] : [...new Set([1000, cap])];
  const notes: string[] = [];
  if (cap < 10_000 && !ctx.quick) {
    notes.push(
      `The hard file-descriptor limit here is ${fileLimit().hard} and cannot be raised without CAP_SYS_RESOURCE; a proxy holds two per connection, so ${cap.toLocaleString('en-US')} is the largest size measured and the 10,000 row is extrapolated linearly from it.`,
    );
  }

  const backends = await startBackends(['echo@127.0.0.1:0', 'echo@127.0.0.1:0']);
  const other = backends.get('echo', 0);
  const victim = backends.get('echo', 1);
  const victimId = `${victim.host}:${victim.port}`;
  const results = new Map<string, TeardownResult[]>();
  const survivors = new Map<string, number[]>();
  const key = (mode: TeardownMode, n: number): string => `${mode}:${n}`;
  // One proxy per mode, alternating within each round, so drift hits both alike.
  const proxies: { mode: TeardownMode; child: Awaited<ReturnType<typeof startNodeProxy>>; host: string; port: number; others: Socket[] }[] = [];
  try {
    for (const mode of MODES) {
      // The floor proxies straight to the victim; a pool starts with the
      // other backend only, so that `last` steers its 50 there, then gets the
      // victim, where every later connection goes.
      const child =
        mode === 'floor'
          ? await startNodeProxy(ctx, 'sockets', [victim], ['--track'])
          : await startNodeProxy(ctx, 'pool', [other], ['--balancer', 'last', '--teardown', mode]);
      const [, host, port] = (await child.waitForLine(/^listening (.+):(\d+)$/)) as unknown as [string, string, string];
      const proxy = { mode, child, host, port: Number(port), others: [] as Socket[] };
      proxies.push(proxy);
      if (mode === 'floor') continue;
      proxy.others = await openIdle(host, Number(port), OTHERS);
      await child.request(`add ${victimId}`, 'added');
    }
    for (let round = 0; round < rounds; round++) {
      for (const n of sizes) {
        for (const proxy of proxies) {
          const clients = await openIdle(proxy.host, proxy.port, n, 200);
          const floor = proxy.mode === 'floor';
          const expected = floor ? n : n + OTHERS;
          const stats = JSON.parse(await proxy.child.request('stats', 'stats')) as { active: number };
          if (stats.active !== expected) throw new Error(`expected ${expected} proxied connections in ${proxy.mode}, it has ${stats.active}`);
          const r = JSON.parse(await (floor ? proxy.child.request('teardown', 'teardown') : proxy.child.request(`markdown ${victimId}`, 'markdown'))) as TeardownResult & { error?: string };
          if (r.error !== undefined) throw new Error(r.error);
          const alive = await pingAll(proxy.others);
          ctx.log(`teardown ${proxy.mode} round ${round + 1}/${rounds} n=${n}: call ${r.syncMs.toFixed(1)} ms, all closed ${r.allClosedMs.toFixed(1)} ms, max loop delay ${r.maxLoopDelayMs.toFixed(1)} ms (histogram max ${r.eldMaxMs.toFixed(1)}, p99 ${r.eldP99Ms.toFixed(1)}), longest turn ${r.maxTurnCpuMs.toFixed(1)} ms of CPU, ${r.gcCount} GCs, longest ${r.maxGcMs.toFixed(1)} ms${floor ? '' : `, others ${alive}/${OTHERS}`}`);
          const k = key(proxy.mode, n);
          (results.get(k) ?? results.set(k, []).get(k)!).push(r);
          (survivors.get(k) ?? survivors.set(k, []).get(k)!).push(alive);
          closeAll(clients);
          await sleep(200);
        }
      }
    }
  } finally {
    for (const proxy of proxies) {
      closeAll(proxy.others);
      await proxy.child.stop();
    }
    await backends.stop();
  }

  const rows: Cell[][] = [];
  const summary = new Map<string, { sync: number; closed: number; delay: number; gc: number }>();
  for (const n of sizes) {
    for (const mode of MODES) {
      const rs = results.get(key(mode, n))!;
      const sync = median(rs.map((r) => r.syncMs));
      const closed = median(rs.map((r) => r.allClosedMs));
      const delay = median(rs.map((r) => r.maxLoopDelayMs));
      const gc = median(rs.map((r) => r.maxGcMs));
      summary.set(key(mode, n), { sync, closed, delay, gc });
      const floor = mode === 'floor';
      const okOthers = rs.every((r) => r.othersAfter === r.othersBefore) && survivors.get(key(mode, n))!.every((a) => a === OTHERS);
      rows.push([
        n.toLocaleString('en-US'),
        floor ? 'floor: two bare sockets, same slices' : mode,
        median(rs.map((r) => r.tornDown)),
        floor ? undefined : max(rs.map((r) => r.leftInRegistry ?? 0)),
        sync,
        max(rs.map((r) => r.syncMs)),
        median(rs.map((r) => r.userMs + r.systemMs)),
        closed,
        delay,
        max(rs.map((r) => r.maxLoopDelayMs)),
        median(rs.map((r) => r.maxTurnCpuMs)),
        gc,
        median(rs.map((r) => r.baselineLoopDelayMs)),
        floor ? '— (none)' : okOthers ? `${OTHERS}/${OTHERS} open, echoing` : `LOST (${survivors.get(key(mode, n))!.join(', ')})`,
      ]);
    }
  }
  const largest = sizes[sizes.length - 1]!;
  const scale = largest === 10_000 || ctx.quick ? 1 : 10_000 / largest;
  const sliced = summary.get(key('sliced', largest)) ?? { sync: NaN, closed: NaN, delay: NaN, gc: NaN };
  const syncMode = summary.get(key('sync', largest)) ?? { sync: NaN, closed: NaN, delay: NaN, gc: NaN };
  const floorMode = summary.get(key('floor', largest));
  if (scale !== 1) {
    for (const mode of MODES) {
      if (mode === 'floor') continue;
      const b = summary.get(key(mode, largest))!;
      rows.push(['10,000 (extrapolated)', mode, undefined, undefined, mode === 'sync' ? b.sync * scale : b.sync, undefined, undefined, b.closed * scale, mode === 'sync' ? b.delay * scale : b.delay, undefined, undefined, undefined, undefined, '']);
    }
  }
  const syncText = (figure: number): string => (summary.has(key('sync', largest)) ? `; sync mode ${figure.toFixed(0)} ms` : '');
  const floorText = floorMode === undefined ? '' : `; the floor (two bare sockets per pair, the same slices, no library) ${floorMode.delay.toFixed(1)} ms, its longest GC pause ${floorMode.gc.toFixed(1)} ms (the pool's ${sliced.gc.toFixed(1)} ms)`;
  const where = scale !== 1 ? ` (measured at ${largest.toLocaleString('en-US')}; the sliced call and loop delay do not grow with N, the close time is extrapolated)` : '';
  const goals: Goal[] = ctx.quick
    ? []
    : [
        { goal: 'markDown of 8,000–10,000 pinned connections returns in ≤ 50 ms (sliced)', met: sliced.sync <= 50, detail: `${sliced.sync.toFixed(1)} ms${where}${syncText(syncMode.sync * scale)}` },
        { goal: 'the event loop never stalls more than 20 ms while they close (sliced)', met: sliced.delay <= 20, detail: `${sliced.delay.toFixed(1)} ms median of the max${syncText(syncMode.delay * scale)}${floorText}` },
        { goal: 'all closed within 1.5 s (sliced)', met: sliced.closed * scale <= 1500, detail: `${(sliced.closed * scale).toFixed(0)} ms${where}` },
      ];

  const charts: Chart[] = [
    {
      file: 'teardown',
      title: 'Teardown: markDown of a backend holding N pinned connections',
      unit: 'ms',
      digits: 1,
      better: 'lower',
      series: [{ name: 'markDown call' }, { name: 'longest event-loop stall' }, { name: 'until every socket closed' }],
      rows: sizes.flatMap((n) =>
        MODES.map((mode) => {
          const x = summary.get(key(mode, n))!;
          return { label: `${mode === 'floor' ? 'floor (bare sockets)' : mode}, ${n.toLocaleString('en-US')} connections`, values: [x.sync, x.delay, x.closed], ours: mode !== 'floor' };
        }),
      ),
      notes: [
        `UpstreamPool in its own process, median of ${rounds} rounds; sliced (the default) takes every member out inside the call and closes the sockets in 5 ms slices; sync closes them all inside the call; the floor resets bare socket pairs in the same slices.`,
      ],
    },
  ];

  return {
    name: 'teardown',
    title: 'Teardown: markDown of a backend holding N pinned connections',
    settings: { sizes: sizes.join('+'), rounds, otherBackendConnections: OTHERS, modes: MODES.join('+') },
    tables: [
      {
        title: `markDown, median of ${rounds} round(s)`,
        columns: [
          { title: 'connections' },
          { title: 'teardown' },
          { title: 'taken out', digits: 0 },
          { title: 'left in registry', digits: 0 },
          { title: 'markDown ms', digits: 1 },
          { title: 'max ms', digits: 1 },
          { title: 'CPU ms in call', digits: 1 },
          { title: 'all closed ms', digits: 1 },
          { title: 'loop stall ms', digits: 1 },
          { title: 'worst stall ms', digits: 1 },
          { title: 'longest turn CPU ms', digits: 1 },
          { title: 'longest GC ms', digits: 1 },
          { title: 'idle loop delay ms', digits: 1 },
          { title: 'other backend' },
        ],
        rows,
      },
    ],
    goals,
    notes: [
      'markDown ms: the call; when it returns every member is out of the registry (left in registry: 0) and forwards nothing. sync closes every socket inside the call; sliced closes up to 256 inside it and the rest in slices of 5 ms of closing per loop turn (libuv then runs their close callbacks in the same turn, which roughly doubles the turn). all closed ms: until every socket emitted "close".',
      'loop stall: the longest gap seen by a 1 ms interval timer in the pool process from the call until 200 ms after the last close (median over rounds; worst: the max); idle loop delay: the same over the 200 ms before it.',
      'CPU ms: user + system CPU time of the call (process.cpuUsage around it), which a loaded machine inflates less than wall time. longest turn CPU: the most CPU time of the process\'s main thread between two ticks of the 1 ms timer, in the same window as the stall. longest GC: the longest of V8\'s collection pauses in that window (PerformanceObserver "gc" entries), median over rounds.',
      'floor: two bare net.Sockets per pair (bench/lib/node-proxy.ts sockets --track), each pair reset with resetAndDestroy() in slices of 5 ms per loop turn as the pool does, nothing else; it has no registry and no other backend.',
      'Clients are reset (resetOnTeardown, the default).',
      ...notes,
    ],
    durationMs: Date.now() - started,
    charts,
  };
}

if (isMain(import.meta.url)) runStandalone(run);
