/**
 * Settings shared by every bench, read once from the environment:
 *
 * - `BENCH_QUICK=1`: smallest sizes and one round, for a smoke run (seconds).
 * - `BENCH_ROUNDS=N`: rounds per contender (default: each bench's own).
 * - `BENCH_PEERS=haproxy,nginx` or `none`: which installed peers to run
 *   (default: every installed one). Missing peers are always reported as skipped.
 * - `BENCH_CPU_PROF=DIR`: start the Node proxy children with `--cpu-prof` into DIR.
 * - `BENCH_VERBOSE=1`: progress lines on stderr.
 *
 * @module
 */
import { isAbsolute, resolve } from 'node:path';

/** What a bench is run with. */
export interface BenchContext {
  readonly quick: boolean;
  /** `BENCH_ROUNDS`, when set. */
  readonly rounds: number | undefined;
  /** Peers allowed to run (installed or not). */
  readonly peers: ReadonlySet<'haproxy' | 'nginx'>;
  /** Absolute directory for `--cpu-prof` output of Node proxy children, when profiling. */
  readonly cpuProfDir: string | undefined;
  /** Progress on stderr (always for warnings; with `BENCH_VERBOSE=1` for steps). */
  log(message: string): void;
  warn(message: string): void;
}

function flag(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value !== 'false';
}

/** Reads the environment. */
export function benchContext(env: NodeJS.ProcessEnv = process.env): BenchContext {
  const roundsText = env['BENCH_ROUNDS'];
  let rounds: number | undefined;
  if (roundsText !== undefined && roundsText !== '') {
    rounds = Number(roundsText);
    if (!Number.isInteger(rounds) || rounds < 1) throw new TypeError(`Expected \`BENCH_ROUNDS\` to be an integer >= 1, got \`${roundsText}\``);
  }
  const peersText = env['BENCH_PEERS'];
  const peers = new Set<'haproxy' | 'nginx'>();
  if (peersText === undefined || peersText === '' || peersText === 'all') {
    peers.add('haproxy');
    peers.add('nginx');
  } else if (peersText !== 'none') {
    for (const p of peersText.split(',')) {
      if (p !== 'haproxy' && p !== 'nginx') throw new TypeError(`Expected \`BENCH_PEERS\` to list haproxy and/or nginx (or none), got \`${peersText}\``);
      peers.add(p);
    }
  }
  const prof = env['BENCH_CPU_PROF'];
  const verbose = flag(env['BENCH_VERBOSE']);
  const started = Date.now();
  const stamp = (): string => `${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s`;
  return {
    quick: flag(env['BENCH_QUICK']),
    rounds,
    peers,
    cpuProfDir: prof === undefined || prof === '' ? undefined : isAbsolute(prof) ? prof : resolve(prof),
    log(message) {
      if (verbose) process.stderr.write(`[bench ${stamp()}] ${message}\n`);
    },
    warn(message) {
      process.stderr.write(`[bench ${stamp()}] ${message}\n`);
    },
  };
}

/** The rounds a bench runs: `BENCH_ROUNDS`, else 1 when quick, else `full`. */
export function roundsFor(ctx: BenchContext, full: number): number {
  return ctx.rounds ?? (ctx.quick ? 1 : full);
}
