#!/usr/bin/env node
// Runs every test/**/*.test.ts with node:test through tsx. Node 20's runner does
// not expand globs itself, so the files are collected here.
//   node test/run.mjs                 all tests
//   node test/run.mjs test/faults     one folder (or file)
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

const targets = process.argv.slice(2);
const files = (targets.length ? targets : ['test']).flatMap((t) => collect(join(root, t), []));
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
