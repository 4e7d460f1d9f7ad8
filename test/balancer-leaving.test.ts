/**
 * The reference balancer and a kube-apiserver shutting down gracefully: its
 * `https:/readyz` check reads `[-]shutdown` as `leaving`, and the log, the
 * admin API, `/metrics` and `/stats` say so, with the cause. `--leaving-grace`
 * reaches the pool, and its leftovers move at `--rebalance-rate`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { startBalancer } from '../src/cli/balancer.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { certPaths, loadCerts } from '../examples/support/certs.js';
import { WatchFleet } from '../examples/support/watch-client.js';
import { api } from './helpers/admin.js';
import { HOST, waitFor } from './helpers/net.js';

test('the balancer: a graceful shutdown is leaving in the log, the admin API, /metrics; streams stay', async (t) => {
  const backends = await Promise.all(['b1', 'b2'].map((name) => ApiserverBackend.start({ name, host: HOST })));
  t.after(() => Promise.all(backends.map((b) => b.close())));
  const argv = ['--listen', `${HOST}:0`, '--status', `${HOST}:0`, '--ca', certPaths.ca, '--interval', '200', '--timeout', '200'];
  for (const b of backends) argv.push('--backend', `${b.name}=${b.host}:${b.port}`);
  argv.push('--leaving-grace', '45000', '--rebalance-rate', '2');
  const parsed = parseBalancerArgs(argv, { readFile: (path) => readFileSync(path, 'utf8') });
  assert.equal(parsed.kind, 'run');
  if (parsed.kind !== 'run') return;
  assert.equal(parsed.config.leavingGrace, 45_000);
  const lines: string[] = [];
  const balancer = await startBalancer(parsed.config, { log: (line) => lines.push(line), readFile: (path) => readFileSync(path) });
  t.after(() => balancer.destroy());

  const { ca } = loadCerts();
  const fleet = new WatchFleet({ host: HOST, port: balancer.address.port, size: 6, tls: { ca } });
  t.after(() => fleet.stop());
  await fleet.waitFor((f) => f.connectedCount === 6 && Object.keys(f.byBackend()).length === 2, 20_000);
  const onB1 = fleet.byBackend()['b1']!;

  // A long shutdown delay: for the whole test the backend says it is leaving and serves.
  void backends[0]!.shutdown({ delayMs: 60_000, graceMs: 1000 });
  await waitFor(() => balancer.pool.status('b1')!.health === 'leaving', { what: 'b1 leaving' });
  const line = lines.find((l) => l.includes('backend b1 up -> leaving'));
  assert.ok(line !== undefined, lines.join('\n'));
  assert.match(line, / backend b1 up -> leaving \(probe-leaving: `b1` answered 500, leaving: \[-\]shutdown failed: reason withheld\)$/);
  assert.equal(fleet.byBackend()['b1'], onB1, 'its streams stay');
  assert.ok(lines.some((l) => / check of b1 says it is leaving \(`b1` answered 500, leaving: \[-\]shutdown/.test(l)), lines.join('\n'));

  const statusPort = balancer.statusAddress!.port;
  const list = await api(statusPort, 'GET', '/api/backends');
  const b1 = (list.json as { backends: { name?: string; id?: string; health: string; state: string; cause: { code: string; message: string } }[] }).backends.find(
    (b) => (b.name ?? b.id) === 'b1',
  )!;
  assert.equal(b1.health, 'leaving');
  assert.equal(b1.state, 'leaving');
  assert.equal(b1.cause.code, 'probe-leaving');
  assert.match(b1.cause.message, /\[-\]shutdown failed/);

  const metrics = await api(statusPort, 'GET', '/metrics');
  assert.match(metrics.text, /backend_health\{backend="b1",health="leaving"\} 1/);
  assert.match(metrics.text, /backend_state\{backend="b1",state="leaving"\} 1/);
  assert.match(metrics.text, /probe_checks_total\{backend="b1",result="leaving"\} [1-9]/);
  assert.equal(balancer.pool.stats().teardowns['probe-failed'] ?? 0, 0);
});
