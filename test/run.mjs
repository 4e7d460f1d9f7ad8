#!/usr/bin/env node
// Runs every test/**/*.test.ts with node:test through tsx (the files are
// collected here, so the order and the exclusions are ours, not a glob's).
//   node test/run.mjs                 all tests
//   node test/run.mjs test/faults     one folder (or file)
//   node test/run.mjs --library       the library tests only (see below)
//
// The library tests are every test file except the program tests listed in
// PROGRAM_TESTS: those start the reference balancer (the bin, its workers, its
// admin API and status page), run the examples or benches as programs, drive
// a browser, or need root for network namespaces. What is left exercises the
// package through its API (src/, and dist/ for test/package/*, which needs
// `npm run build` first) on loopback sockets only. CI runs the whole suite on
// one Node line and the library tests on the others (.ci/run).
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function collect(path, out) {
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path).sort()) {
      if (name === 'node_modules' || name === 'fixtures') continue;
      collect(join(path, name), out);
    }
  } else if (path.endsWith('.test.ts')) {
    out.push(relative(root, path));
  }
  return out;
}

/** The program tests (paths from the repository root); a file missing here fails the run, so the list cannot rot. */
const PROGRAM_TESTS = [
  'test/admin-api.test.ts',
  'test/balancer-cli.test.ts',
  'test/balancer-leaving.test.ts',
  'test/bench-charts.test.ts',
  'test/bench-smoke.test.ts',
  'test/cli-modes.test.ts',
  'test/demo.test.ts',
  'test/deploy.test.ts',
  'test/e2e/partition.test.ts',
  'test/event-log-teardowns.test.ts',
  'test/examples.test.ts',
  'test/faults/cpu-contention.test.ts',
  'test/faults/fd-exhaustion-cli.test.ts',
  'test/faults/hostile-clients.test.ts',
  'test/faults/status-slow-clients.test.ts',
  'test/operator-signals.test.ts',
  'test/security-admin-fuzz.test.ts',
  'test/security-reload-fuzz.test.ts',
  'test/security.test.ts',
  'test/shutdown-cli.test.ts',
  'test/soak-cli.test.ts',
  'test/status-page.test.ts',
  'test/workers-admin.test.ts',
  'test/workers-primary.test.ts',
  'test/workers.test.ts',
];

const args = process.argv.slice(2);
const library = args.includes('--library');
const targets = args.filter((a) => a !== '--library');
let files = (targets.length ? targets : ['test']).flatMap((t) => collect(join(root, t), []));
if (library) {
  const all = new Set(collect(join(root, 'test'), []));
  const stale = PROGRAM_TESTS.filter((f) => !all.has(f));
  if (stale.length > 0) {
    console.error(`run: PROGRAM_TESTS names files that do not exist: ${stale.join(', ')}`);
    process.exit(1);
  }
  files = files.filter((f) => !PROGRAM_TESTS.includes(f));
}
if (files.length === 0) {
  console.error('run: no test files found');
  process.exit(1);
}

// A file gets 5 minutes; the long forms (SOAK=1, FUZZ=1) an hour.
const long = process.env.SOAK === '1' || process.env.FUZZ === '1';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', `--test-timeout=${long ? 3_600_000 : 300_000}`, ...files],
  { cwd: root, stdio: 'inherit' },
);
child.on('exit', (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
