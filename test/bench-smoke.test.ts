// The benchmark scripts still run: one bench, in its quickest mode, through
// bench/run.ts as `npm run bench` runs it. Asserts that it completes and
// prints a table, never a speed (figures belong in docs/benchmarks.md).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

test('npm run bench -- throughput completes with BENCH_QUICK=1 and prints its table', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', 'throughput'], {
    cwd: root,
    env: { ...process.env, BENCH_QUICK: '1', BENCH_VERBOSE: '0' },
    // Its own process group, so the bench and every child it started can be killed together.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid!;
  const killGroup = (): void => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  t.after(killGroup);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // A safety net against a hung run, not a speed bound.
  const timer = setTimeout(killGroup, 120_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);

  assert.equal(code, 0, `bench exited ${String(code)}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  assert.match(stdout, /^### Bulk throughput/m);
  assert.match(stdout, /^\| path +\| +MB\/s \|/m, 'a table header');
  assert.match(stdout, /^\|-+\|-+:\|/m, 'a Markdown table rule');
  for (const row of ['direct (no proxy)', 'PinnedConnection', 'UpstreamPool', 'naive pipe']) {
    assert.match(stdout, new RegExp(`^\\| ${row.replace(/[()]/g, '\\$&')} +\\| +[\\d,]+ +\\|`, 'm'), `a row for ${row}`);
  }
  // HAProxy and nginx either ran or say why not.
  assert.match(stdout, /^\| HAProxy mode tcp/m);
  assert.match(stdout, /^\| nginx stream/m);
});
