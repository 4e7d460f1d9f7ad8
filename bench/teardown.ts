/**
 * Teardown: `pool.markDown(id)` on a backend holding 1,000 and 10,000 idle
 * pinned connections, while another backend holds 50 that must survive.
 *
 * The pool runs in its own process (bench/lib/node-proxy.ts, `markdown`
 * command), which times the call itself, the time until every destroyed
 * socket has emitted 'close', and the longest event-loop stall around it (a
 * 1 ms interval timer). The bench then checks from the client side that every
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
import type { BenchReport, Cell, Goal } from './lib/table.js';

const OTHERS = 50;

interface MarkDownResult {
  readonly tornDown: number;
  readonly syncMs: number;
  readonly userMs: number;
  readonly systemMs: number;
  readonly allClosedMs: number;
  readonly maxLoopDelayMs: number;
  readonly baselineLoopDelayMs: number;
  readonly othersBefore: number;
  readonly othersAfter: number;
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
  // `last`: new connections go to the most recently added backend that is up.
  const pool = await startNodeProxy(ctx, 'pool', [other], ['--balancer', 'last']);
  const [, host, port] = (await pool.waitForLine(/^listening (.+):(\d+)$/)) as unknown as [string, string, string];
  const results = new Map<number, MarkDownResult[]>();
  const survivors = new Map<number, number[]>();
  let others: Socket[] = [];
  try {
    others = await openIdle(host, Number(port), OTHERS);
    await pool.request(`add ${victimId}`, 'added');
    for (let round = 0; round < rounds; round++) {
      for (const n of sizes) {
        const clients = await openIdle(host, Number(port), n, 200);
        const stats = JSON.parse(await pool.request('stats', 'stats')) as { active: number };
        if (stats.active !== n + OTHERS) throw new Error(`expected ${n + OTHERS} pinned connections, the pool has ${stats.active}`);
        const r = JSON.parse(await pool.request(`markdown ${victimId}`, 'markdown')) as MarkDownResult & { error?: string };
        if (r.error !== undefined) throw new Error(r.error);
        const alive = await pingAll(others);
        ctx.log(`teardown round ${round + 1}/${rounds} n=${n}: markDown ${r.syncMs.toFixed(1)} ms, all closed ${r.allClosedMs.toFixed(1)} ms, max loop delay ${r.maxLoopDelayMs.toFixed(1)} ms, others ${alive}/${OTHERS}`);
        (results.get(n) ?? results.set(n, []).get(n)!).push(r);
        (survivors.get(n) ?? survivors.set(n, []).get(n)!).push(alive);
        closeAll(clients);
        await sleep(200);
      }
    }
  } finally {
    closeAll(others);
    await pool.stop();
    await backends.stop();
  }

  const rows: Cell[][] = [];
  const summary = new Map<number, { sync: number; closed: number; delay: number }>();
  for (const n of sizes) {
    const rs = results.get(n)!;
    const sync = median(rs.map((r) => r.syncMs));
    const closed = median(rs.map((r) => r.allClosedMs));
    const delay = median(rs.map((r) => r.maxLoopDelayMs));
    summary.set(n, { sync, closed, delay });
    const okOthers = rs.every((r) => r.othersAfter === r.othersBefore) && survivors.get(n)!.every((a) => a === OTHERS);
    rows.push([
      n.toLocaleString('en-US'),
      median(rs.map((r) => r.tornDown)),
      sync,
      max(rs.map((r) => r.syncMs)),
      (sync / n) * 1000,
      median(rs.map((r) => r.userMs + r.systemMs)),
      median(rs.map((r) => (r.systemMs / (r.userMs + r.systemMs)) * 100)),
      closed,
      delay,
      median(rs.map((r) => r.baselineLoopDelayMs)),
      okOthers ? `${OTHERS}/${OTHERS} open, echoing` : `LOST (${survivors.get(n)!.join(', ')})`,
    ]);
  }
  const largest = sizes[sizes.length - 1]!;
  const big = summary.get(largest)!;
  let at10k = big.sync;
  if (largest !== 10_000 && !ctx.quick) {
    at10k = (big.sync / largest) * 10_000;
    rows.push(['10,000 (extrapolated)', undefined, at10k, undefined, (big.sync / largest) * 1000, undefined, undefined, (big.closed / largest) * 10_000, (big.delay / largest) * 10_000, undefined, '']);
  }
  const goals: Goal[] = ctx.quick
    ? []
    : [{ goal: 'markDown of 10,000 pinned connections returns in ≤ 50 ms', met: at10k <= 50, detail: `${at10k.toFixed(1)} ms${largest !== 10_000 ? ` (extrapolated from ${largest.toLocaleString('en-US')})` : ''}` }];

  return {
    name: 'teardown',
    title: 'Teardown: markDown of a backend holding N pinned connections',
    settings: { sizes: sizes.join('+'), rounds, otherBackendConnections: OTHERS },
    tables: [
      {
        title: `markDown, median of ${rounds} round(s)`,
        columns: [
          { title: 'connections' },
          { title: 'torn down', digits: 0 },
          { title: 'markDown ms', digits: 1 },
          { title: 'max ms', digits: 1 },
          { title: 'µs/conn', digits: 1 },
          { title: 'CPU ms', digits: 1 },
          { title: 'kernel %', digits: 0 },
          { title: 'all closed ms', digits: 1 },
          { title: 'max loop delay ms', digits: 1 },
          { title: 'idle loop delay ms', digits: 1 },
          { title: 'other backend' },
        ],
        rows,
      },
    ],
    goals,
    notes: [
      'markDown ms: the synchronous call (every connection destroyed and out of the registry when it returns); all closed ms: until every destroyed socket emitted "close" (libuv closes handles on the next loop turn).',
      'max loop delay: the longest gap seen by a 1 ms interval timer in the pool process from the call until 200 ms after the last close; idle loop delay: the same over the 200 ms before it.',
      'CPU ms: user + system CPU time of the call (process.cpuUsage around it), which a loaded machine inflates less than wall time; kernel %: the system share of it.',
      'Clients are reset (resetOnTeardown, the default).',
      ...notes,
    ],
    durationMs: Date.now() - started,
  };
}

if (isMain(import.meta.url)) runStandalone(run);
