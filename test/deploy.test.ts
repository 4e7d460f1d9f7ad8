// examples/deploy/: the static pod, the systemd unit, the Dockerfile and the
// keepalived pair are checked for what matters — they parse, their balancer
// settings are accepted by the balancer's own parser, they start node itself
// (never npx or a shell, so SIGTERM reaches the balancer), and the keepalived
// check script really follows a running balancer's readiness.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startBalancer } from '../src/cli/balancer.js';
import { type BalancerConfig } from '../src/cli/config.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { echoServer, HOST } from './helpers/net.js';
import { parseSimpleYaml } from './helpers/simple-yaml.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const deploy = join(root, 'examples', 'deploy');
const read = (path: string): string => readFileSync(join(deploy, path), 'utf8');

/** Where the examples install the package (npm install --prefix /opt/failover-proxy). */
const program = '/opt/failover-proxy/node_modules/failover-proxy/dist/apiserver-balancer.js';

function config(argv: string[], files: Record<string, string> = {}): BalancerConfig {
  const result = parseBalancerArgs(argv, {
    readFile: (path) => files[path] ?? assert.fail(`unexpected read of ${path}`),
  });
  assert.equal(result.kind, 'run');
  return (result as { config: BalancerConfig }).config;
}

/** A config file of the examples, as the balancer reads it. */
function configFile(path: string): BalancerConfig {
  return config(['--config', '/etc/failover-proxy/apiserver-balancer.json'], { '/etc/failover-proxy/apiserver-balancer.json': read(path) });
}

function assertNoLauncher(words: readonly string[], where: string): void {
  for (const word of words) {
    assert.doesNotMatch(word, /(^|\/)(npx|npm|pnpm|yarn|sh|bash|dash|env)$/, `${where}: ${word} would stand between the supervisor and the balancer`);
  }
  assert.ok(!words.includes('-c'), `${where}: no shell -c`);
}

type Obj = Record<string, unknown>;

test('static pod: parses, runs node itself as PID 1, with the settings of node-local/balancer.json', () => {
  const pod = parseSimpleYaml(read('node-local/static-pod.yaml')) as Obj;
  assert.equal(pod.apiVersion, 'v1');
  assert.equal(pod.kind, 'Pod');
  const metadata = pod.metadata as Obj;
  assert.equal(metadata.namespace, 'kube-system');
  const spec = pod.spec as Obj;
  assert.equal(spec.hostNetwork, true, 'the kubelet reaches it on the node\'s loopback');
  assert.equal(spec.priorityClassName, 'system-node-critical');
  const [container, ...others] = spec.containers as Obj[];
  assert.equal(others.length, 0);
  const command = container!.command as string[];
  assert.deepEqual(command, ['node', program]);
  assertNoLauncher(command, 'command');

  const args = container!.args as string[];
  const fromArgs = config(args);
  assert.deepEqual(fromArgs, configFile('node-local/balancer.json'), 'the manifest and node-local/balancer.json agree');
  assert.deepEqual(fromArgs.listen, { host: '127.0.0.1', port: 7445 }, 'loopback only, beside an apiserver on 6443');

  // The liveness probe asks the balancer's own status endpoint.
  const probe = (container!.livenessProbe as Obj).httpGet as Obj;
  assert.deepEqual([probe.host, probe.port, probe.path], [fromArgs.status!.host, fromArgs.status!.port, '/livez']);
  // The drain fits in the grace period, with room to spare.
  assert.ok((spec.terminationGracePeriodSeconds as number) * 1000 >= fromArgs.drainTimeout + 5000);
  // The CA the check trusts is mounted.
  const mounts = container!.volumeMounts as Obj[];
  assert.ok(mounts.some((m) => m.mountPath === fromArgs.ca && m.readOnly === true), `${fromArgs.ca} is mounted read-only`);
  const volumes = spec.volumes as Obj[];
  assert.ok(volumes.some((v) => (v.hostPath as Obj | undefined)?.path === fromArgs.ca));
});

test('Dockerfile: exec-form ENTRYPOINT running node on the path the pod uses', () => {
  const lines = read('Dockerfile').split('\n');
  const entrypoints = lines.filter((l) => l.startsWith('ENTRYPOINT'));
  assert.equal(entrypoints.length, 1);
  // Exec form (a JSON array): no /bin/sh -c wrapper, node is PID 1.
  const entrypoint = JSON.parse(entrypoints[0]!.slice('ENTRYPOINT'.length)) as string[];
  assert.deepEqual(entrypoint, ['node', program]);
  assertNoLauncher(entrypoint, 'ENTRYPOINT');
  assert.ok(lines.some((l) => l.includes('npm install --prefix /opt/failover-proxy')), 'installed where ENTRYPOINT looks');
});

/** `[Section]` → key → values (a key may repeat), comments and blank lines dropped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '' || /^\s*[#;]/.test(line)) continue;
    assert.ok(!line.endsWith('\\'), `line ${i + 1}: keep ExecStart on one line, so it can be checked`);
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(kv && current, `line ${i + 1} is neither a section nor Key=value: ${line}`);
    current.set(kv[1]!, [...(current.get(kv[1]!) ?? []), kv[2]!]);
  }
  return sections;
}

test('systemd unit: ExecStart runs node directly (no npx), SIGTERM to it, and its config parses', () => {
  const unit = parseUnit(read('failover-proxy-apiserver.service'));
  assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
  const service = unit.get('Service')!;
  const execStart = service.get('ExecStart') ?? [];
  assert.equal(execStart.length, 1);
  assert.doesNotMatch(execStart[0]!, /npx|npm |\bsh\b|\$/, 'no npx, no shell, no variable expansion');
  const [node, script, ...args] = execStart[0]!.split(/\s+/);
  assert.match(node!, /^\/\S+\/node$/, 'an absolute path to node');
  assert.equal(script, program);
  assertNoLauncher([node!, script, ...args], 'ExecStart');
  assert.deepEqual(args, ['--config', '/etc/failover-proxy/apiserver-balancer.json']);
  assert.deepEqual(service.get('Type'), ['exec']);
  assert.deepEqual(service.get('KillSignal'), ['SIGTERM']);
  // SIGTERM to the main process (the balancer) only; SIGKILL to the rest at the timeout.
  assert.deepEqual(service.get('KillMode'), ['mixed']);
  const stopSeconds = Number(service.get('TimeoutStopSec')?.[0]);
  for (const path of ['node-local/balancer.json', 'ha/balancer.json']) {
    const parsed = configFile(path);
    assert.ok(stopSeconds * 1000 >= parsed.drainTimeout + 5000, `${path}: the drain fits in TimeoutStopSec`);
    assert.equal(parsed.ca, '/etc/kubernetes/pki/ca.crt', `${path}: the check verifies against the cluster CA`);
    assert.equal(parsed.insecure, false);
  }
});

/** `keyword value…` lines of a keepalived.conf, comments dropped. */
function keepalived(text: string): { words: string[][]; braces: number } {
  const words: string[][] = [];
  let depth = 0;
  for (const line of text.split('\n')) {
    const bare = line.replace(/[!#].*$/, '').trim();
    if (bare === '') continue;
    depth += (bare.match(/\{/g) ?? []).length - (bare.match(/\}/g) ?? []).length;
    assert.ok(depth >= 0, `unbalanced braces at ${JSON.stringify(line)}`);
    words.push(bare.split(/\s+/));
  }
  return { words, braces: depth };
}

function value(words: string[][], keyword: string): string[] {
  const found = words.filter((w) => w[0] === keyword);
  assert.equal(found.length, 1, `one ${keyword}`);
  return found[0]!.slice(1);
}

test('keepalived pair: one VIP, a MASTER and a BACKUP, both tracking the balancer check that hits /readyz', () => {
  const [lb1, lb2] = ['ha/keepalived-lb1.conf', 'ha/keepalived-lb2.conf'].map((path) => {
    const { words, braces } = keepalived(read(path));
    assert.equal(braces, 0, `${path}: braces balance`);
    return words;
  });
  for (const keyword of ['virtual_router_id', 'interface', 'advert_int', 'auth_pass']) {
    assert.deepEqual(value(lb1!, keyword), value(lb2!, keyword), `${keyword} is the same on both`);
  }
  const vip = (words: string[][]): string => words[words.findIndex((w) => w[0] === 'virtual_ipaddress') + 1]![0]!;
  assert.equal(vip(lb1!), vip(lb2!));
  assert.deepEqual([value(lb1!, 'state'), value(lb2!, 'state')], [['MASTER'], ['BACKUP']]);
  const [p1, p2] = [Number(value(lb1!, 'priority')[0]), Number(value(lb2!, 'priority')[0])];
  const weight = Number(value(lb1!, 'weight')[0]);
  assert.ok(p1 > p2 && p1 + weight < p2, 'a failing check on the MASTER puts it under the BACKUP');
  for (const words of [lb1!, lb2!]) {
    assert.equal(value(words, 'script')[0], '"/etc/keepalived/check-balancer.sh"');
    assert.equal(words[words.findIndex((w) => w[0] === 'track_script') + 1]![0], value(words, 'vrrp_script')[0]);
  }
  // The check asks the status endpoint ha/balancer.json serves.
  const status = configFile('ha/balancer.json').status!;
  assert.ok(read('ha/check-balancer.sh').includes(`http://${status.host}:${status.port}/readyz`));
  // keepalived refuses (enable_script_security) a script others can write.
  const mode = statSync(join(deploy, 'ha/check-balancer.sh')).mode;
  assert.equal(mode & 0o022, 0, 'not group- or world-writable');
  assert.equal(mode & 0o100, 0o100, 'executable');
});

const curl = (() => {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('check-balancer.sh exits 0 while the balancer is ready, non-zero when no apiserver is up or it is gone', { skip: !curl && 'curl is not installed' }, async (t) => {
  const { port: upstream } = await echoServer(t);
  const balancer = await startBalancer(
    config(['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${upstream}`, '--check', 'tcp', '--status', '0']),
    { log: () => {}, readFile: (path) => readFileSync(path) },
  );
  t.after(() => balancer.destroy());
  const run = promisify(execFile);
  const check = async (): Promise<number> => {
    const env = { ...process.env, BALANCER_READYZ_URL: `http://${HOST}:${balancer.statusAddress!.port}/readyz` };
    try {
      await run(join(deploy, 'ha/check-balancer.sh'), [], { env, timeout: 10_000 });
      return 0;
    } catch (err) {
      return (err as { code: number }).code;
    }
  };
  assert.equal(await check(), 0);
  balancer.pool.markDown('b1', 'marked-down');
  assert.notEqual(await check(), 0, 'no apiserver up: not ready');
  balancer.pool.markUp('b1');
  assert.equal(await check(), 0);
  await balancer.destroy();
  assert.notEqual(await check(), 0, 'nothing answering: not ready');
});

test('discovering static pod: agrees with its balancer.json, mounts the kubeconfig and state; RBAC reads only what discovery and the intent need', () => {
  const pod = parseSimpleYaml(read('node-local-discovery/static-pod.yaml')) as Obj;
  const spec = pod.spec as Obj;
  const [container] = spec.containers as Obj[];
  assert.deepEqual(container!.command, ['node', program]);
  const fromArgs = config(container!.args as string[]);
  assert.deepEqual(fromArgs, configFile('node-local-discovery/balancer.json'));
  assert.deepEqual(fromArgs.discover, [{ kind: 'kubernetes' }]);
  assert.ok(fromArgs.backends.length >= 1, 'a bootstrap backend');
  assert.deepEqual(fromArgs.intent, { namespace: 'kube-system', name: 'failover-proxy-intent' });
  const mounts = container!.volumeMounts as Obj[];
  for (const path of [fromArgs.kubeconfig!, fromArgs.discoveryState!]) {
    assert.ok(mounts.some((m) => path.startsWith(`${String(m.mountPath)}/`)), `${path} is mounted`);
  }
  const rbac = parseSimpleYaml(read('node-local-discovery/rbac.yaml')) as Obj;
  const items = rbac.items as Obj[];
  const roles = items.filter((i) => i.kind === 'Role');
  const rules = roles.flatMap((r) => ((r.rules as Obj[]).map((rule) => ({ ns: (r.metadata as Obj).namespace, ...rule }))));
  assert.deepEqual(rules, [
    { ns: 'default', apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
    { ns: 'kube-system', apiGroups: [''], resources: ['configmaps'], resourceNames: ['failover-proxy-intent'], verbs: ['get', 'list', 'watch'] },
  ]);
  assert.ok(!read('node-local-discovery/rbac.yaml').includes('ClusterRole'), 'namespaced roles only');
  assert.ok(read('Dockerfile').includes('"yaml@'), 'the image carries the optional YAML parser for kubeconfig files');
});
