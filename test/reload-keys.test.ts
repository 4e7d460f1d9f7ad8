/**
 * Reload applies every setting or says it cannot: each config key (from the
 * config module's own list) has a decision, the docs' reload table matches
 * it, and a restart-only key whose value changed is reported, in the API's
 * answer and in the log line.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configKeys, type ConfigKey } from '../src/cli/config.js';
import { reloadPolicy, restartNeeded } from '../src/cli/reload.js';
import { TOKEN, api, configOf, startAdminBalancer, tempDir } from './helpers/admin.js';
import { HOST, echoServer } from './helpers/net.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * The flags a test config starts from, and per key flags that change it.
 * Typed over every key: a new setting does not compile until it has a row.
 */
const base = ['--backend', 'a=127.0.0.1:1', '--check', 'https:/readyz', '--status', '9090'];
const changes: Readonly<Record<ConfigKey, readonly string[]>> = {
  listen: ['--listen', '127.0.0.1:7000'],
  backend: ['--backend', 'b=127.0.0.1:2'],
  check: ['--check', 'tls'],
  ca: ['--ca', '/etc/ca.pem'],
  cert: ['--cert', '/etc/c.pem', '--key', '/etc/k.pem'],
  key: ['--cert', '/etc/c.pem', '--key', '/etc/k.pem'],
  insecure: ['--insecure'],
  servername: ['--servername', 'api.example'],
  interval: ['--interval', '2000'],
  timeout: ['--timeout', '500'],
  rise: ['--rise', '3'],
  fall: ['--fall', '3'],
  strategy: ['--strategy', 'round-robin'],
  'connect-timeout': ['--connect-timeout', '100'],
  retries: ['--retries', '0'],
  'queue-timeout': ['--queue-timeout', '100'],
  status: ['--status', '9091'],
  'drain-timeout': ['--drain-timeout', '1'],
  'admin-token-file': ['--admin-token-file', '/etc/token'],
  'slow-start': ['--slow-start', '0'],
  'rebalance-rate': ['--rebalance-rate', '9'],
  'rebalance-tolerance': ['--rebalance-tolerance', '0.5'],
  'no-rebalance': ['--no-rebalance'],
  'write-stall-timeout': ['--write-stall-timeout', '0'],
  'all-down': ['--all-down', 'fail-open'],
  workers: ['--workers', '3'],
  'admin-socket': ['--admin-socket', '/run/b.sock'],
  'status-allowed-hosts': ['--status-allowed-hosts', 'lb.example'],
  'leaving-grace': ['--leaving-grace', '5000'],
  'max-clients': ['--max-clients', '100'],
  'access-log': ['--access-log', '-'],
  discover: ['--discover', 'dns:api.example:6443'],
  'dns-server': ['--discover', 'dns:api.example:6443', '--dns-server', '127.0.0.1:5353'],
  kubeconfig: ['--discover', 'kubernetes', '--kubeconfig', '/etc/kubeconfig'],
  'discovery-state': ['--discover', 'dns:api.example:6443', '--discovery-state', '/var/lib/fp/state.json'],
  intent: ['--intent', 'kube-system/failover-proxy-intent'],
};

/** A config with `extra` flags; a base flag that `extra` gives again is dropped. */
function configWith(extra: readonly string[]) {
  const argv: string[] = [];
  for (let i = 0; i < base.length; i += 2) if (!extra.includes(base[i]!)) argv.push(base[i]!, base[i + 1]!);
  return configOf([...argv, ...extra]);
}

test('every config key has a reload decision, and the docs table says the same', () => {
  assert.deepEqual(Object.keys(reloadPolicy).sort(), [...configKeys].sort(), 'keys of the reload policy against the config module');
  const doc = readFileSync(join(root, 'docs/apiserver-balancer.md'), 'utf8');
  const table = /<!-- reload-table -->([\s\S]*?)<!-- \/reload-table -->/.exec(doc)?.[1];
  assert.ok(table !== undefined, 'the reload table in docs/apiserver-balancer.md');
  const rows = new Map<string, string>();
  for (const m of table.matchAll(/^\| `([a-z-]+)` \| (live|restart) \|/gm)) rows.set(m[1]!, m[2]!);
  assert.deepEqual([...rows.keys()].sort(), [...configKeys].sort(), 'one row per key in the docs');
  for (const key of configKeys) assert.equal(rows.get(key), reloadPolicy[key].applies, `docs row for ${key}`);
});

test('a changed restart-only key is reported; a changed live key is not', () => {
  const running = configWith([]);
  for (const key of configKeys) {
    const next = configWith(changes[key]);
    assert.notDeepEqual(reloadPolicy[key].value(next), reloadPolicy[key].value(running), `the change for ${key} changes it`);
    const reported = restartNeeded(running, next);
    if (reloadPolicy[key].applies === 'restart') assert.ok(reported.includes(key), `${key} reported, got ${JSON.stringify(reported)}`);
    else assert.ok(!reported.includes(key), `${key} applies live, yet reported`);
  }
  assert.deepEqual(restartNeeded(running, configWith([])), [], 'nothing reported when nothing changed');
});

test('POST /api/reload and the log line name every restart-only setting that changed', async (t) => {
  const backend = await echoServer(t);
  const dir = tempDir(t);
  const file = join(dir, 'balancer.json');
  const settings = { backend: [`a=${HOST}:${backend.port}`], 'write-stall-timeout': 20_000, 'all-down': 'queue', 'slow-start': 10_000, 'rebalance-rate': 4 };
  writeFileSync(file, JSON.stringify(settings));
  const { status, lines } = await startAdminBalancer(t, [], { reloadable: true, extra: ['--config', file] });
  writeFileSync(file, JSON.stringify({ ...settings, 'write-stall-timeout': 0, 'all-down': 'fail-open', 'slow-start': 0, 'rebalance-rate': 8, 'drain-timeout': 100 }));
  const reply = await api(status, 'POST', '/api/reload', { token: TOKEN });
  assert.equal(reply.status, 200, JSON.stringify(reply.json));
  const body = reply.json as unknown as { restartNeeded: string[]; unchanged: string[] };
  assert.deepEqual([...body.restartNeeded].sort(), ['all-down', 'rebalance-rate', 'slow-start', 'write-stall-timeout']);
  assert.deepEqual(body.unchanged, ['a']);
  const line = lines.find((l) => l.includes('reload: '));
  assert.match(line ?? '', /needs a restart \(running value kept\): .*write-stall-timeout/);
});
