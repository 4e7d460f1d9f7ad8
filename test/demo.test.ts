// `npm run demo` is the README's first command: it must finish on its own,
// exit 0, and end with a summary that says no stream was lost.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

test('npm run demo: the cut backend\'s streams are torn down and recovered, none lost; after the heal they are spread again; exit 0', { timeout: 60_000 }, async (t) => {
  // What `npm run demo` runs (tsx examples/demo.ts), without npm in between.
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  t.diagnostic(stdout.trimEnd().split('\n').at(-1) ?? '');
  assert.equal(code, 0, `exit code\n${stdout}\n${stderr}`);
  const summary = stdout.split('\n').find((line) => line.startsWith('summary: '));
  assert.ok(summary !== undefined, `a summary line\n${stdout}`);
  assert.match(summary, /streams lost: 0$/);
  assert.match(summary, /^summary: \d+ of 30 streams were on the cut backend/);
  assert.match(summary, /worst \d+\.\d\d s/);
  // The timeline shows the cut and the balancer's teardown.
  assert.match(stdout, /b3 cut: /);
  assert.match(stdout, /balancer \| backend b3 up -> down \(probe-failed.*\), \d+ connections? torn down/);
  // Then the return: up again, warming up, and the streams moved back.
  assert.match(stdout, /balancer \| backend b3 down -> up \(probe-passed\)/);
  assert.match(stdout, /b3 slow start: weight \d+% of its share/);
  assert.match(stdout, /balancer \| rebalancing: b1 \d+, b2 \d+, b3 \d+/);
  assert.match(stdout, /balancer \| rebalanced: \d+ connections? moved \(from .*\) in [\d.]+ s; now b1 \d+, b2 \d+, b3 \d+/);
  assert.match(stdout, /^return: b3 up [\d.]+ s after the heal; rebalanced: .*; spread restored: b1 (9|10|11), b2 (9|10|11), b3 (9|10|11)$/m);
  // Every timeline line accounts for every stream exactly once: flowing per backend, stalled, reconnecting.
  const pictures = stdout.split('\n').filter((line) => /^\+\s*[\d.]+s {2}(balancer|pipe proxy) +b1 /.test(line));
  assert.ok(pictures.length >= 4, `timeline lines\n${stdout}`);
  for (const line of pictures) {
    const m = /b1 +(\d+) +b2 +(\d+) +b3 +(\d+) +stalled +(\d+)(?: \(on [^)]*\))?(?: +reconnecting (\d+))?$/.exec(line);
    assert.ok(m, `a timeline line of the expected shape: ${line}`);
    const sum = m.slice(1).reduce((n, x) => n + Number(x ?? 0), 0);
    assert.equal(sum, 30, `the parts of a timeline line add up to 30: ${line}`);
  }
  assert.equal(stderr.replace(/^npm warn.*\n/gm, ''), '', 'nothing on stderr');
});
