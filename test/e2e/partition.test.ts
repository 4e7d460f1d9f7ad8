// The real thing: a kernel-level silent partition (nftables drop, both ways)
// and a frozen process (SIGSTOP), against the reference balancer run as a user
// runs it, in a fresh network namespace. Needs root, unshare, ip and nft; skips
// saying which is missing otherwise.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { netnsMissing } from '../../examples/support/nft-cut.js';
import type { ScenarioResult } from './partition-scenario.js';
import { healBoundMs, healSpread, probeSettings, recoveryBoundMs, type ScenarioCase } from './partition-settings.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const scenarioScript = join(root, 'test/e2e/partition-scenario.ts');

const missing = netnsMissing();

/** Runs one case in its own namespace; resolves with its result line. Kills the whole process group it started on the way out. */
async function runScenario(t: TestContext, which: ScenarioCase): Promise<ScenarioResult> {
  // detached: the scenario leads a new process group holding it and every
  // process it spawns, so one kill by that pid reaches them all.
  const child = spawn('unshare', ['-n', '--', process.execPath, '--import', 'tsx', scenarioScript, which], {
    cwd: root,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid!;
  const killGroup = (): void => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // The group is gone.
    }
  };
  t.after(killGroup);
  const output: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => output.push(line));
  let result: ScenarioResult | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('E2E_RESULT ')) result = JSON.parse(line.slice('E2E_RESULT '.length)) as ScenarioResult;
    else output.push(line);
  });
  const timer = setTimeout(killGroup, 100_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  // Whatever the scenario did, nothing of it may survive.
  killGroup();
  if (result === undefined) assert.fail(`scenario ${which} printed no result (exit ${code}):\n${output.join('\n')}`);
  if (result.error !== undefined) assert.fail(`scenario ${which} failed: ${result.error}\n${output.join('\n')}`);
  return result;
}

function report(t: TestContext, r: ScenarioResult): void {
  t.diagnostic(
    `${r.case}: ${r.victims}/${r.streams} streams on the failed backend; recovered ${r.recovered}, lost ${r.lost}; ` +
      `recovery p50 ${r.p50} ms, p99 ${r.p99} ms, max ${r.max} ms (bound ${r.boundMs} ms)`,
  );
  for (const line of r.downLines) t.diagnostic(`balancer: ${line}`);
}

/** What every fault case must show. */
function assertRecovered(r: ScenarioResult): void {
  assert.ok(r.victims > 0, 'some streams were on the failed backend');
  assert.equal(r.lost, 0, `every stream on the failed backend got data again from a live one (${r.recovered}/${r.victims})`);
  assert.ok(r.max !== undefined && r.max <= r.boundMs, `recovery within ${r.boundMs} ms (max ${r.max} ms)`);
  assert.equal(r.stalled, 0, 'no stream stays stalled');
  assert.equal(r.flowingOnLive, r.streams, 'every stream flows from a live backend');
  assert.equal(r.deadBackend?.state, 'down', '/stats shows the failed backend down');
  assert.equal(r.deadBackend?.active, 0, '/stats shows 0 connections on the failed backend');
  assert.equal(r.downLines.length, 1, 'the balancer logged one down transition');
  assert.match(r.downLines[0]!, new RegExp(`probe-failed.*, ${r.victims} connections? torn down`));
  assert.equal(r.balancerExit, 0, 'the balancer exits 0 on SIGTERM');
}

const skip = missing !== undefined;

test('e2e: nft drops every packet to and from one apiserver; its streams are torn down and recover', { timeout: 120_000 }, async (t) => {
  if (skip) {
    t.skip(missing);
    return;
  }
  const r = await runScenario(t, 'partition');
  report(t, r);
  assertRecovered(r);
  assert.equal(r.deadBackend?.lastCheckCode, 'PROBE_TIMEOUT', 'a dropped packet is a timeout, not a refusal');
});

test('e2e: the partition heals: the apiserver is marked up after rise checks, the 60 streams spread again, and it takes new streams', { timeout: 120_000 }, async (t) => {
  if (skip) {
    t.skip(missing);
    return;
  }
  const r = await runScenario(t, 'rejoin');
  report(t, r);
  assertRecovered(r);
  t.diagnostic(`marked up ${r.markedUpAfterMs} ms after the rule was removed; ${r.newStreamsOnRejoined}/${r.newStreams} new streams on it`);
  assert.ok(r.markedUpAfterMs !== undefined && r.markedUpAfterMs <= probeSettings.rise * probeSettings.interval + recoveryBoundMs);
  assert.ok((r.newStreamsOnRejoined ?? 0) > 0, 'new streams land on the backend again');

  // The heal: slow start, then rebalancing moves streams back until each backend carries its share.
  const heal = r.heal;
  assert.ok(heal !== undefined, 'the heal phase ran');
  t.diagnostic(
    `heal: spread ${JSON.stringify(heal.spread)} ${heal.spreadAfterMs} ms after the rule was removed, then ${JSON.stringify(heal.finalSpread)}; ` +
      `${heal.reconnects} re-watches for ${r.victims} cut + ${heal.moved} moved streams; ${heal.rebalancedLine ?? 'no rebalancing summary'}`,
  );
  assert.ok(heal.spreadAfterMs !== undefined && heal.spreadAfterMs <= healBoundMs, `every backend carries ${healSpread.min}-${healSpread.max} streams within ${healBoundMs} ms of the heal (${JSON.stringify(heal.spread)})`);
  for (const id of ['b2', 'b3', 'b4']) {
    const n = heal.finalSpread[id] ?? 0;
    assert.ok(n >= healSpread.min && n <= healSpread.max, `the spread holds: ${id} carries ${n} (${JSON.stringify(heal.finalSpread)})`);
  }
  assert.equal(heal.stalled, 0, 'no stream stuck after the heal');
  assert.ok(heal.moved > 0, 'the balancer moved streams back');
  assert.ok(heal.reconnects <= r.victims + heal.moved, `re-watches (${heal.reconnects}) at most the cut streams (${r.victims}) plus the moved ones (${heal.moved})`);
});

test('e2e: an apiserver frozen with SIGSTOP (TCP still answered) fails its HTTPS check by timeout; its streams recover', { timeout: 120_000 }, async (t) => {
  if (skip) {
    t.skip(missing);
    return;
  }
  const r = await runScenario(t, 'sigstop');
  report(t, r);
  assertRecovered(r);
  assert.equal(r.deadBackend?.lastCheckCode, 'PROBE_TIMEOUT', 'the kernel completes the handshake; the TLS/HTTP exchange times out');
});
