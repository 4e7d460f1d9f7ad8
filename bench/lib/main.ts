/**
 * Lets every `bench/<name>.ts` run on its own (`tsx bench/throughput.ts`) as
 * well as from `bench/run.ts`.
 *
 * @module
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchContext, type BenchContext } from './context.js';
import { renderReport, type BenchReport } from './table.js';

/** Whether the module at `url` is the program being run. */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(url);
}

/** Runs one bench, prints its report, and exits (which also kills any child left). */
export function runStandalone(run: (ctx: BenchContext) => Promise<BenchReport>): void {
  const ctx = benchContext();
  run(ctx).then(
    (report) => {
      process.stdout.write(`${renderReport(report)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** Formats bytes as MB (10^6) with one decimal. */
export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
