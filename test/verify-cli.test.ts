// failover-proxy-verify, built (dist/verify.js), run as a user runs it:
// quick mode against this package's balancer through the fault proxy (runs
// everywhere) and in a private network namespace with nftables (root only),
// and the clean-up on every way out: normal end, a balancer that fails,
// SIGINT and SIGTERM. Its option and template parsing are checked in-process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { netnsMissing } from '../examples/support/nft-cut.js';
import { parseVerifyArgs } from '../examples/verify/options.js';
import type { VerifyResult } from '../examples/verify/report.js';
import { renderTemplate } from '../examples/verify/template.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'dist/verify.js');
const built = existsSync(bin) && existsSync(join(root, 'dist/apiserver-balancer.js'));
const skip = !built && 'dist/ is missing (npm test builds it first)';
const netnsSkip = skip || netnsMissing();

/** This package's balancer, checking fast so a quick run has slack on a loaded machine. */
const ours = 'node dist/apiserver-balancer.js --listen {listen} {backends:--backend HOST:PORT} --ca {ca} --interval 300 --timeout 300 --fall 2 --rise 2';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Is any process of group `pgid` still running (zombies waiting for a non-reaping init aside)? */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
    } catch {
      // Exited meanwhile.
    }
  }
  return false;
}

/** Runs the tool; `signalWhen` sends a signal to it once a stderr line matches. */
function runVerify(args: readonly string[], signalWhen?: { line: RegExp; signal: NodeJS.Signals }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`verify did not finish within 200 s: ${stderr.slice(-2000)}`));
    }, 200_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (signalWhen !== undefined && !sent && signalWhen.line.test(stderr)) {
        sent = true;
        child.kill(signalWhen.signal);
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Nothing of the run is left: its directory is gone, and so is every process group it announced. */
function assertCleanedUp(run: Run): void {
  const dir = /run directory (\S+)/.exec(run.stderr)?.[1];
  assert.ok(dir !== undefined, `no run directory announced: ${run.stderr.slice(-1000)}`);
  assert.equal(existsSync(dir), false, `${dir} left behind`);
  const groups = Array.from(run.stderr.matchAll(/process group (\d+)/g), (m) => Number(m[1]));
  assert.ok(groups.length >= 1, 'no process group announced');
  assert.deepEqual(groups.filter(groupAlive), [], 'process groups still running');
}

function assertRecovered(result: VerifyResult): void {
  assert.equal(result.error, undefined);
  assert.deepEqual(
    result.phases.map((p) => p.fault),
    ['cut', 'rst', 'blackhole'],
  );
  for (const p of result.phases) {
    assert.ok(p.victims > 0, `${p.fault}: no stream on the faulted backend`);
    assert.equal(p.stuck, 0, `${p.fault}: stuck`);
    assert.equal(p.lost, 0, `${p.fault}: lost`);
    assert.equal(p.recovered, p.victims, `${p.fault}: recovered`);
    assert.ok(p.recoveryMs.max !== null && p.recoveryMs.p50 !== null && p.recoveryMs.p50 <= p.recoveryMs.max);
    assert.equal(Object.values(p.heal.spread).reduce((a, b) => a + b, 0) <= p.streams, true);
  }
}

test('options: defaults, quick mode, and bad input refused with ERR_VERIFY_USAGE', () => {
  const parsed = parseVerifyArgs(['--balancer', 'x {listen}', '--quick', '--faults', 'blackhole,cut']);
  assert.equal(parsed.kind, 'run');
  if (parsed.kind !== 'run') return;
  assert.equal(parsed.options.streams, 30);
  // Always in the canonical order.
  assert.deepEqual(parsed.options.faults, ['cut', 'blackhole']);
  assert.equal(parsed.options.mode, 'auto');
  for (const bad of [[], ['--balancer'], ['--balancer', 'x', '--streams', '2'], ['--balancer', 'x', '--faults', 'cut,nope'], ['--balancer', 'x', '--mode', 'vm'], ['--balancer', 'x', '--bogus']]) {
    assert.throws(() => parseVerifyArgs(bad), { code: 'ERR_VERIFY_USAGE' }, JSON.stringify(bad));
  }
});

test('templates: backends repeated with NAME, HOST and PORT; other braces left alone; unknown placeholders refused', () => {
  const values = {
    listen: { host: '127.0.0.1', port: 6443 },
    backends: [
      { name: 'b1', host: '127.0.0.2', port: 6443 },
      { name: 'b2', host: '127.0.0.3', port: 7443 },
    ],
    ca: '/run/ca.crt',
    dir: '/run',
    config: '/run/haproxy.cfg',
  };
  assert.equal(renderTemplate('lb --listen {listen} {backends:--backend HOST:PORT} --ca {ca}', values, ' '), 'lb --listen 127.0.0.1:6443 --backend 127.0.0.2:6443 --backend 127.0.0.3:7443 --ca /run/ca.crt');
  assert.equal(renderTemplate('stream { upstream u { {backends:server HOST:PORT;} } listen {listen.port}; }', values, '\n'), 'stream { upstream u { server 127.0.0.2:6443;\nserver 127.0.0.3:7443; } listen 6443; }');
  assert.equal(renderTemplate('{backends:server NAME HOST:PORT check} ${HOME}', values, '\n'), 'server b1 127.0.0.2:6443 check\nserver b2 127.0.0.3:7443 check ${HOME}');
  assert.throws(() => renderTemplate('{listn}', values, ' '), { code: 'ERR_VERIFY_USAGE' });
  assert.throws(() => renderTemplate('{config}', { ...values, config: undefined }, ' '), { code: 'ERR_VERIFY_USAGE' });
});

test('the bin: a bad command line exits 2 with the code, before starting anything', { skip }, async () => {
  const run = await runVerify(['--balancer', 'lb {nope}']);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /ERR_VERIFY_USAGE/);
  assert.doesNotMatch(run.stderr, /run directory/);
});

test('quick run through the fault proxy against this balancer: every stream resumes, nothing left behind', { skip }, async () => {
  const run = await runVerify(['--quick', '--mode', 'proxy', '--json', '--balancer', ours]);
  assert.equal(run.code, 0, run.stderr.slice(-3000));
  const result = JSON.parse(run.stdout) as VerifyResult;
  assert.equal(result.mode, 'proxy');
  assertRecovered(result);
  assertCleanedUp(run);
});

test('quick run in a network namespace with nftables against this balancer', { skip: netnsSkip }, async () => {
  const run = await runVerify(['--quick', '--mode', 'netns', '--json', '--balancer', ours]);
  assert.equal(run.code, 0, run.stderr.slice(-3000));
  const result = JSON.parse(run.stdout) as VerifyResult;
  assert.equal(result.mode, 'netns');
  assertRecovered(result);
  assertCleanedUp(run);
});

test('a balancer that exits at once: exit 1 naming it, nothing left behind', { skip }, async () => {
  const run = await runVerify(['--quick', '--mode', 'proxy', '--balancer', 'echo "no such balancer" >&2; exit 3']);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /the balancer exited.*no such balancer/);
  assertCleanedUp(run);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} in the middle of a fault: exits ${signal === 'SIGINT' ? 130 : 143}, nothing left behind (fault proxy)`, { skip }, async () => {
    const run = await runVerify(['--quick', '--mode', 'proxy', '--balancer', ours], { line: /applying the fault/, signal });
    assert.equal(run.code, signal === 'SIGINT' ? 130 : 143, run.stderr.slice(-2000));
    assertCleanedUp(run);
  });
}

test('SIGTERM in the middle of a fault in a network namespace: nothing left behind', { skip: netnsSkip }, async () => {
  const run = await runVerify(['--quick', '--mode', 'netns', '--faults', 'blackhole', '--balancer', ours], { line: /applying the fault/, signal: 'SIGTERM' });
  assert.equal(run.code, 143, run.stderr.slice(-2000));
  assertCleanedUp(run);
});
