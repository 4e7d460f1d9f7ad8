/**
 * Runs every bench, or the ones named, and prints their tables:
 *
 * ```sh
 * npm run bench                          # all, about 8 minutes
 * npm run bench -- throughput teardown   # some
 * BENCH_QUICK=1 npm run bench            # smallest sizes, one round: a smoke run
 * BENCH_JSON=out.json npm run bench      # also write the reports as JSON
 * ```
 *
 * Environment: see bench/lib/context.ts (BENCH_QUICK, BENCH_ROUNDS,
 * BENCH_PEERS, BENCH_CPU_PROF, BENCH_VERBOSE). Nothing is installed: peers
 * that are missing are reported as skipped. The whole run is bounded: after
 * 10 minutes it stops, kills every child it started and exits non-zero.
 *
 * @module
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { benchContext, type BenchContext } from './lib/context.js';
import { detectHaproxy, detectNginx } from './lib/peers.js';
import { fileLimit } from './lib/proc.js';
import { renderReport, type BenchReport } from './lib/table.js';
import * as connectionRate from './connection-rate.js';
import * as failover from './failover.js';
import * as memory from './memory.js';
import * as multiCore from './multi-core.js';
import * as probeCost from './probe-cost.js';
import * as teardown from './teardown.js';
import * as throughput from './throughput.js';

/** Every bench, in the order the issue lists them. */
export const benches: Readonly<Record<string, (ctx: BenchContext) => Promise<BenchReport>>> = Object.freeze({
  failover: failover.run,
  throughput: throughput.run,
  'connection-rate': connectionRate.run,
  teardown: teardown.run,
  memory: memory.run,
  'probe-cost': probeCost.run,
  'multi-core': multiCore.run,
});

const SUITE_LIMIT_MS = 10 * 60 * 1000;

function load(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

function environment(ctx: BenchContext): string {
  const cpu = cpus();
  const peers = [detectHaproxy(), detectNginx()].map((p) => (p.available ? (p.version ?? p.name) : `${p.name}: ${p.reason ?? 'unavailable'}`));
  const { hard } = fileLimit();
  return [
    `# failover-proxy benchmarks, ${new Date().toISOString()}`,
    '',
    `Node ${process.version}, ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Linux ${release()}, ulimit -n ${hard}${ctx.quick ? ', BENCH_QUICK=1' : ''}`,
    `Peers: ${peers.join('; ')}`,
    `Load average at start: ${load()}`,
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const ctx = benchContext();
  const unknown = argv.filter((name) => !(name in benches));
  if (unknown.length > 0) {
    process.stderr.write(`Unknown bench: ${unknown.join(', ')}. Known: ${Object.keys(benches).join(', ')}\n`);
    return 2;
  }
  const names = argv.length > 0 ? argv : Object.keys(benches);
  const limit = setTimeout(() => {
    process.stderr.write(`bench: the suite exceeded ${SUITE_LIMIT_MS / 60_000} minutes; stopping\n`);
    // The exit hook of lib/proc.ts kills every child by pid.
    process.exit(3);
  }, SUITE_LIMIT_MS);
  limit.unref();
  process.stdout.write(`${environment(ctx)}\n`);
  const reports: BenchReport[] = [];
  let failed = 0;
  for (const name of names) {
    ctx.log(`starting ${name}`);
    try {
      const report = await benches[name]!(ctx);
      reports.push(report);
      process.stdout.write(`${renderReport(report)}\n`);
    } catch (err) {
      failed++;
      process.stdout.write(`### ${name}\n\nFAILED: ${err instanceof Error ? err.message : String(err)}\n\n`);
    }
  }
  process.stdout.write(`Load average at end: ${load()}\n`);
  const json = process.env['BENCH_JSON'];
  if (json !== undefined && json !== '') writeFileSync(json, `${JSON.stringify({ at: new Date().toISOString(), node: process.version, reports }, null, 2)}\n`);
  clearTimeout(limit);
  return failed > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
