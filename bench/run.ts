/**
 * Runs every bench, or the ones named, and prints their tables:
 *
 * ```sh
 * npm run bench                          # all, about 10 minutes
 * npm run bench -- throughput teardown   # some
 * BENCH_QUICK=1 npm run bench            # smallest sizes, one round: a smoke run
 * BENCH_JSON=out.json npm run bench      # also write the reports as JSON
 * BENCH_CHARTS=DIR npm run bench         # charts into DIR (none: no charts)
 * ```
 *
 * Each bench also hands back bar charts of its figures, written as SVG into
 * docs/bench/ (BENCH_CHARTS to choose, `none` for none); a quick run writes
 * none unless BENCH_CHARTS says where, so smoke runs never replace the
 * charts of a full one.
 *
 * Environment: see bench/lib/context.ts (BENCH_QUICK, BENCH_ROUNDS,
 * BENCH_PEERS, BENCH_CPU_PROF, BENCH_VERBOSE). Nothing is installed: peers
 * that are missing are reported as skipped. The whole run is bounded: after
 * 15 minutes it stops, kills every child it started and exits non-zero.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cpus, loadavg, release } from 'node:os';
import { benchContext, type BenchContext } from './lib/context.js';
import { detectHaproxy, detectNginx } from './lib/peers.js';
import { fileLimit, repoRoot } from './lib/proc.js';
import { renderChart } from './lib/svg-chart.js';
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

const SUITE_LIMIT_MS = 15 * 60 * 1000;

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

/** Where charts go: BENCH_CHARTS, else docs/bench/ for a full run; `undefined` for none. */
function chartDir(ctx: BenchContext): string | undefined {
  const env = process.env['BENCH_CHARTS'];
  if (env === 'none') return undefined;
  if (env !== undefined && env !== '') return resolve(env);
  return ctx.quick ? undefined : join(repoRoot, 'docs', 'bench');
}

function machine(): string {
  const cpu = cpus();
  return `Node ${process.version}, ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}`;
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
  const charts = chartDir(ctx);
  const written: string[] = [];
  let failed = 0;
  for (const name of names) {
    ctx.log(`starting ${name}`);
    try {
      const loadBefore = loadavg()[0]!;
      const report = await benches[name]!(ctx);
      reports.push(report);
      process.stdout.write(`${renderReport(report)}\n`);
      if (charts !== undefined && report.charts !== undefined && report.charts.length > 0) {
        mkdirSync(charts, { recursive: true });
        const footer = `${machine()}; ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; load average ${loadBefore.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`;
        for (const chart of report.charts) {
          const file = join(charts, `${chart.file}.svg`);
          writeFileSync(file, renderChart(chart, footer));
          written.push(file);
        }
      }
    } catch (err) {
      failed++;
      process.stdout.write(`### ${name}\n\nFAILED: ${err instanceof Error ? err.message : String(err)}\n\n`);
    }
  }
  process.stdout.write(`Load average at end: ${load()}\n`);
  if (written.length > 0) process.stdout.write(`Charts: ${written.map((f) => f.replace(repoRoot, '')).join(', ')}\n`);
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
