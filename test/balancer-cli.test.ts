// The reference balancer's command line: the pure parser (every bad input is a
// one-line ConfigError), the real CLI's exit codes, and a running balancer's
// log, status endpoint and shutdown.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, balancerDefaults, type BalancerConfig } from '../src/cli/config.js';
import { parseAddress } from '../src/cli/address.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { startBalancer } from '../src/cli/balancer.js';
import { EventLog } from '../src/cli/event-log.js';
import { RebalanceLog } from '../src/cli/rebalance-log.js';
import { renderMetrics } from '../src/cli/metrics.js';
import { ProbeStats } from '../src/cli/probe-stats.js';
import { binName, packageVersion, programName } from '../src/cli/program-info.js';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { certPaths } from '../examples/support/certs.js';
import { WatchFleet } from '../examples/support/watch-client.js';
import { Rebalancer, UpstreamPool } from '../src/index.js';
import { modes, startMode } from './helpers/cli.js';
import { HOST, closedPort, connect, echoServer, frontend, readLine, waitFor } from './helpers/net.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const entry = join(root, 'examples/apiserver-balancer.ts');

/** A readFile that serves an in-memory set of files. */
function files(map: Record<string, string> = {}): { readFile: (path: string) => string } {
  return {
    readFile(path) {
      const content = map[path];
      if (content === undefined) throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
      return content;
    },
  };
}

function parse(argv: string[], map?: Record<string, string>): BalancerConfig {
  const result = parseBalancerArgs(argv, files(map));
  assert.equal(result.kind, 'run');
  return result.config;
}

function parseError(argv: string[], map?: Record<string, string>): ConfigError {
  try {
    parseBalancerArgs(argv, files(map));
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(argv)} to be refused`);
}

test('one backend and every default', () => {
  const config = parse(['--backend', '10.0.0.1:6443']);
  assert.deepEqual(config, {
    listen: { host: '0.0.0.0', port: 6443 },
    backends: [{ host: '10.0.0.1', port: 6443, id: '10.0.0.1:6443' }],
    discover: [],
    dnsServer: undefined,
    kubeconfig: undefined,
    discoveryState: undefined,
    intent: undefined,
    check: { type: 'https', path: '/readyz' },
    ca: undefined,
    cert: undefined,
    key: undefined,
    insecure: false,
    servername: undefined,
    interval: 1000,
    timeout: 1000,
    rise: 2,
    fall: 2,
    strategy: 'least-connections',
    connectTimeout: 3000,
    retries: 2,
    queueTimeout: 10_000,
    status: undefined,
    drainTimeout: 5000,
    adminTokenFile: undefined,
    slowStart: 10_000,
    rebalance: true,
    rebalanceRate: 4,
    rebalanceTolerance: 0.2,
    // interval × fall + timeout + 5000
    writeStallTimeout: 8000,
    leavingGrace: 90_000,
    allDown: 'queue',
    workers: 1,
    // auto: from the descriptor limit, at start
    maxClients: undefined,
    adminSocket: undefined,
    statusAllowedHosts: [],
    accessLog: undefined,
  });
  assert.ok(Object.isFrozen(config));
  assert.equal(balancerDefaults.interval, 1000);
});

test('--max-clients: an integer from 1, or auto; the config key too; anything else refused naming the flag', () => {
  assert.equal(parse(['--backend', '10.0.0.1:6443', '--max-clients', '500']).maxClients, 500);
  assert.equal(parse(['--backend', '10.0.0.1:6443', '--max-clients=auto']).maxClients, undefined);
  const file = JSON.stringify({ backend: '10.0.0.1:6443', 'max-clients': 2000 });
  assert.equal(parse(['--config', 'c.json'], { 'c.json': file }).maxClients, 2000);
  const auto = JSON.stringify({ backend: '10.0.0.1:6443', 'max-clients': 'auto' });
  assert.equal(parse(['--config', 'c.json'], { 'c.json': auto }).maxClients, undefined);
  for (const bad of ['0', '-1', '1e3', 'lots', '', '10000001']) {
    assert.match(parseError(['--backend', '10.0.0.1:6443', `--max-clients=${bad}`]).message, /^--max-clients: expected an integer from 1 to 10000000 or auto, got /);
  }
  assert.match(parseError(['--config', 'c.json'], { 'c.json': JSON.stringify({ backend: '10.0.0.1:6443', 'max-clients': '500' }) }).message, /"max-clients": expected an integer/);
  assert.match(parseError(['--config', 'c.json'], { 'c.json': JSON.stringify({ backend: '10.0.0.1:6443', maxClients: 5 }) }).message, /did you mean "max-clients"/);
});

test('every flag, in both --flag value and --flag=value forms', () => {
  const config = parse([
    '--listen=127.0.0.1:7443',
    '--backend',
    'a=10.0.0.1:6443',
    '--backend=[fd00::2]:6443',
    '--backend',
    'api-3.example.com:443',
    '--check',
    'https:/livez?verbose',
    '--ca',
    '/pki/ca.crt',
    '--cert',
    '/pki/c.crt',
    '--key=/pki/c.key',
    '--servername',
    'kubernetes.default.svc',
    '--interval',
    '500',
    '--timeout',
    '400',
    '--rise',
    '3',
    '--fall=1',
    '--strategy',
    'hash',
    '--connect-timeout',
    '1500',
    '--retries',
    '0',
    '--queue-timeout',
    '2000',
    '--status',
    '9090',
    '--drain-timeout',
    '0',
    '--slow-start',
    '0',
    '--rebalance-rate=0.5',
    '--rebalance-tolerance',
    '0.1',
    '--write-stall-timeout',
    '20000',
    '--all-down',
    'fail-open',
    '--access-log',
    '/var/log/access.log',
  ]);
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 7443 });
  assert.deepEqual(config.backends, [
    { host: '10.0.0.1', port: 6443, id: 'a' },
    { host: 'fd00::2', port: 6443, id: '[fd00::2]:6443' },
    { host: 'api-3.example.com', port: 443, id: 'api-3.example.com:443' },
  ]);
  assert.deepEqual(config.check, { type: 'https', path: '/livez?verbose' });
  assert.equal(config.ca, '/pki/ca.crt');
  assert.equal(config.cert, '/pki/c.crt');
  assert.equal(config.key, '/pki/c.key');
  assert.equal(config.servername, 'kubernetes.default.svc');
  assert.deepEqual(
    [config.interval, config.timeout, config.rise, config.fall, config.connectTimeout, config.retries, config.queueTimeout, config.drainTimeout],
    [500, 400, 3, 1, 1500, 0, 2000, 0],
  );
  assert.equal(config.strategy, 'hash');
  assert.deepEqual(
    [config.slowStart, config.rebalance, config.rebalanceRate, config.rebalanceTolerance, config.writeStallTimeout, config.allDown],
    [0, true, 0.5, 0.1, 20_000, 'fail-open'],
  );
  // A bare port is served on loopback only.
  assert.deepEqual(config.status, { host: '127.0.0.1', port: 9090 });
  assert.equal(config.accessLog, '/var/log/access.log');
  assert.equal(parse(['--backend', 'h:1', '--access-log=-']).accessLog, '-');
});

test('rebalancing, slow start, write stalls and the all-down policy', () => {
  assert.equal(parse(['--backend', 'h:1', '--no-rebalance']).rebalance, false);
  // --no-rebalance wins over a rate given elsewhere (the rate is then unused).
  assert.equal(parse(['--backend', 'h:1', '--rebalance-rate', '10', '--no-rebalance']).rebalance, false);
  // The default write-stall timeout follows the probe's detection time.
  assert.equal(parse(['--backend', 'h:1', '--interval', '500', '--timeout', '200', '--fall', '3']).writeStallTimeout, 500 * 3 + 200 + 5000);
  assert.equal(parse(['--backend', 'h:1', '--write-stall-timeout', '0']).writeStallTimeout, 0);
  const fromFile = parse(['--config', 'c.json'], {
    'c.json': JSON.stringify({
      backend: 'h:1',
      'slow-start': 2500,
      'rebalance-rate': 2,
      'rebalance-tolerance': 0,
      'no-rebalance': false,
      'write-stall-timeout': 100,
      'all-down': 'fail-open',
    }),
  });
  assert.deepEqual(
    [fromFile.slowStart, fromFile.rebalance, fromFile.rebalanceRate, fromFile.rebalanceTolerance, fromFile.writeStallTimeout, fromFile.allDown],
    [2500, true, 2, 0, 100, 'fail-open'],
  );
  assert.equal(parse(['--config', 'c.json'], { 'c.json': '{"backend":"h:1","no-rebalance":true}' }).rebalance, false);
});

test('--check forms', () => {
  const check = (value: string): BalancerConfig['check'] => parse(['--backend', 'h:1', '--check', value]).check;
  assert.deepEqual(check('https'), { type: 'https', path: '/readyz' });
  assert.deepEqual(check('http'), { type: 'http', path: '/readyz' });
  assert.deepEqual(check('http:/healthz'), { type: 'http', path: '/healthz' });
  assert.deepEqual(check('tls'), { type: 'tls' });
  assert.deepEqual(check('tcp'), { type: 'tcp' });
  assert.equal(parse(['--backend', 'h:1', '--check', 'tls', '--insecure']).insecure, true);
});

test('an unset --timeout follows a shorter --interval', () => {
  const config = parse(['--backend', 'h:1', '--interval', '300']);
  assert.equal(config.timeout, 300);
});

test('--status with an explicit host listens there; :PORT is loopback', () => {
  assert.deepEqual(parse(['--backend', 'h:1', '--status', '0.0.0.0:9090']).status, { host: '0.0.0.0', port: 9090 });
  assert.deepEqual(parse(['--backend', 'h:1', '--status', ':0']).status, { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parse(['--backend', 'h:1', '--status', '[::1]:9090']).status, { host: '::1', port: 9090 });
});

test('--help wins over everything else', () => {
  assert.deepEqual(parseBalancerArgs(['--nonsense', '--help'], files()), { kind: 'help' });
  assert.deepEqual(parseBalancerArgs(['-h'], files()), { kind: 'help' });
  assert.deepEqual(parseBalancerArgs(['--version', '--help'], files()), { kind: 'help' });
});

test('--version wins over everything but --help, and is no config key', () => {
  assert.deepEqual(parseBalancerArgs(['--nonsense', '--version'], files()), { kind: 'version' });
  assert.deepEqual(parseBalancerArgs(['--backend', 'h:1', '--version'], files()), { kind: 'version' });
  const err = parseError(['--config', 'c.json'], { 'c.json': '{"backend":"h:1","version":true}' });
  assert.equal(err.message, 'c.json: "version" cannot be set in a config file');
});

test('programName: the bin name through npm\'s symlink, else the script name without extension', () => {
  assert.equal(programName('/usr/local/bin/failover-proxy-apiserver'), 'failover-proxy-apiserver');
  assert.equal(programName('/srv/app/node_modules/.bin/failover-proxy-apiserver'), 'failover-proxy-apiserver');
  assert.equal(programName('/src/examples/apiserver-balancer.ts'), 'apiserver-balancer');
  assert.equal(programName('/opt/fp/dist/apiserver-balancer.js'), 'apiserver-balancer');
  assert.equal(programName('/opt/lb.mjs'), 'lb');
  // Nothing to go by, or nothing printable: the bin's name.
  assert.equal(programName(undefined), binName);
  assert.equal(programName(''), binName);
  assert.equal(programName('/tmp/evil\nname'), binName);
  assert.equal(binName, Object.keys((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin)[0]);
});

test('packageVersion: found walking up from the module, only in failover-proxy\'s package.json', (t) => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  assert.equal(packageVersion(), version);
  assert.equal(packageVersion(join(root, 'dist', 'apiserver-balancer.js')), version);
  const dir = mkdtempSync(join(tmpdir(), 'balancer-version-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(packageVersion(join(dir, 'a', 'b', 'c.js')), undefined);
  // Another package's manifest on the way up is skipped, not reported.
  writeFileSync(join(dir, 'package.json'), '{"name":"someone-else","version":"9.9.9"}');
  assert.equal(packageVersion(join(dir, 'x.js')), undefined);
  writeFileSync(join(dir, 'package.json'), '{"name":"failover-proxy","version":"1.2.3-rc.1"}');
  assert.equal(packageVersion(join(dir, 'dist', 'x.js')), '1.2.3-rc.1');
});

test('config file: same settings, flags override, --backend flags replace the list, paths relative to the file', () => {
  const configFile = '/etc/balancer/config.json';
  const map = {
    [configFile]: JSON.stringify({
      listen: '127.0.0.1:6443',
      backend: ['b1=10.0.0.1:6443', 'b2=10.0.0.2:6443'],
      check: 'https:/readyz',
      ca: 'pki/ca.crt',
      cert: '/abs/client.crt',
      key: 'client.key',
      interval: 2000,
      timeout: 800,
      rise: 3,
      fall: 3,
      strategy: 'round-robin',
      'connect-timeout': 1000,
      retries: 1,
      'queue-timeout': 5000,
      status: '127.0.0.1:9090',
      'drain-timeout': 1000,
    }),
  };
  const fromFile = parse(['--config', configFile], map);
  assert.deepEqual(fromFile.listen, { host: '127.0.0.1', port: 6443 });
  assert.deepEqual(
    fromFile.backends.map((b) => b.id),
    ['b1', 'b2'],
  );
  assert.equal(fromFile.ca, '/etc/balancer/pki/ca.crt');
  assert.equal(fromFile.cert, '/abs/client.crt');
  assert.equal(fromFile.key, '/etc/balancer/client.key');
  assert.equal(fromFile.interval, 2000);
  assert.equal(fromFile.timeout, 800);
  assert.equal(fromFile.strategy, 'round-robin');
  assert.equal(fromFile.drainTimeout, 1000);

  const overridden = parse(['--config', configFile, '--interval', '900', '--backend', '10.9.9.9:6443', '--ca', 'rel/ca.crt'], map);
  assert.equal(overridden.interval, 900);
  assert.equal(overridden.timeout, 800);
  assert.deepEqual(
    overridden.backends.map((b) => b.id),
    ['10.9.9.9:6443'],
  );
  // A path given on the command line is the caller's to resolve (against the cwd).
  assert.equal(overridden.ca, 'rel/ca.crt');
  // A single backend may be a string.
  assert.equal(parse(['--config', 'c.json'], { 'c.json': '{"backend":"h:1","insecure":true}' }).insecure, true);
});

// Every one of these must be refused with one line that names what is wrong.
const bad: [argv: string[], mentions: string, map?: Record<string, string>][] = [
  [[], 'no backend'],
  [['--backend'], '--backend needs a value'],
  [['--backend', '--listen', '1.2.3.4:5'], '--backend needs a value'],
  [['--backend', '10.0.0.1'], '--backend'],
  [['--backend', '10.0.0.1:0'], '--backend'],
  [['--backend', '10.0.0.1:65536'], '--backend'],
  [['--backend', ':6443'], '--backend'],
  [['--backend', 'a b:6443'], '--backend'],
  [['--backend', '[not-v6]:6443'], '--backend'],
  [['--backend', '=10.0.0.1:6443'], 'NAME'],
  [['--backend', 'bad name=10.0.0.1:6443'], 'NAME'],
  [['--backend', '10.0.0.1:6443', '--backend', '10.0.0.1:6443'], 'given twice'],
  [['--backend', 'a=10.0.0.1:6443', '--backend', 'a=10.0.0.2:6443'], 'given twice'],
  [['--backend', 'a=10.0.0.1:6443', '--backend', 'b=10.0.0.1:6443'], 'given twice'],
  [['10.0.0.1:6443'], 'unexpected argument'],
  [['--backend', 'h:1', 'extra'], 'unexpected argument'],
  [['--backend', 'h:1', '--'], 'unexpected argument'],
  [['--backend', 'h:1', '-v'], 'unexpected argument'],
  [['--backend', 'h:1', '--verbose'], 'unknown flag "--verbose"'],
  [['--backend', 'h:1', '--Listen', '1.2.3.4:5'], 'unknown flag'],
  [['--backend', 'h:1', '--listen', '1.2.3.4'], '--listen'],
  [['--backend', 'h:1', '--listen', '1.2.3.4:99999'], '--listen'],
  [['--backend', 'h:1', '--listen', ''], '--listen'],
  [['--backend', 'h:1', '--listen=1.2.3.4:5', '--listen=1.2.3.4:6'], '--listen given twice'],
  [['--backend', 'h:1', '--check', 'grpc'], '--check'],
  [['--backend', 'h:1', '--check', 'https:readyz'], '--check'],
  [['--backend', 'h:1', '--check', 'https:/a b'], '--check'],
  [['--backend', 'h:1', '--check', 'HTTPS:/readyz'], '--check'],
  [['--backend', 'h:1', '--interval', '0'], '--interval'],
  [['--backend', 'h:1', '--interval', '-5'], '--interval'],
  [['--backend', 'h:1', '--interval', '1e3'], '--interval'],
  [['--backend', 'h:1', '--interval', '10ms'], '--interval'],
  [['--backend', 'h:1', '--interval', '1.5'], '--interval'],
  [['--backend', 'h:1', '--interval', ' 5'], '--interval'],
  [['--backend', 'h:1', '--interval', '0x10'], '--interval'],
  [['--backend', 'h:1', '--interval', '2147483648'], '--interval'],
  [['--backend', 'h:1', '--interval', '99999999999999999999'], '--interval'],
  [['--backend', 'h:1', '--timeout', '0'], '--timeout'],
  [['--backend', 'h:1', '--interval', '500', '--timeout', '600'], '--timeout: expected at most the interval'],
  [['--backend', 'h:1', '--rise', '0'], '--rise'],
  [['--backend', 'h:1', '--fall', '1001'], '--fall'],
  [['--backend', 'h:1', '--fall', 'two'], '--fall'],
  [['--backend', 'h:1', '--strategy', 'least_connections'], '--strategy'],
  [['--backend', 'h:1', '--strategy', 'weighted'], '--strategy'],
  [['--backend', 'h:1', '--connect-timeout', '0'], '--connect-timeout'],
  [['--backend', 'h:1', '--retries', '-1'], '--retries'],
  [['--backend', 'h:1', '--retries', '1001'], '--retries'],
  [['--backend', 'h:1', '--queue-timeout', '0'], '--queue-timeout'],
  [['--backend', 'h:1', '--drain-timeout', 'x'], '--drain-timeout'],
  [['--backend', 'h:1', '--slow-start', '-1'], '--slow-start'],
  [['--backend', 'h:1', '--slow-start', '1.5'], '--slow-start'],
  [['--backend', 'h:1', '--rebalance-rate', '0'], '--rebalance-rate: expected a number from 0.01 to 10000'],
  [['--backend', 'h:1', '--rebalance-rate', '1e3'], '--rebalance-rate'],
  [['--backend', 'h:1', '--rebalance-rate', '-4'], '--rebalance-rate'],
  [['--backend', 'h:1', '--rebalance-rate', '.5'], '--rebalance-rate'],
  [['--backend', 'h:1', '--rebalance-tolerance', '11'], '--rebalance-tolerance'],
  [['--backend', 'h:1', '--rebalance-tolerance', 'NaN'], '--rebalance-tolerance'],
  [['--backend', 'h:1', '--no-rebalance=yes'], '--no-rebalance takes no value'],
  [['--backend', 'h:1', '--no-rebalance', '--no-rebalance'], '--no-rebalance given twice'],
  [['--backend', 'h:1', '--write-stall-timeout', '50'], '--write-stall-timeout: expected 0 (off) or an integer from 100'],
  [['--backend', 'h:1', '--write-stall-timeout', 'off'], '--write-stall-timeout'],
  [['--backend', 'h:1', '--all-down', 'panic'], '--all-down: expected queue | fail-open'],
  [['--config', 'c.json'], 'c.json: "rebalance-rate": expected a number', { 'c.json': '{"backend":"h:1","rebalance-rate":"4"}' }],
  [['--config', 'c.json'], 'c.json: "no-rebalance": expected true or false', { 'c.json': '{"backend":"h:1","no-rebalance":"yes"}' }],
  [['--config', 'c.json'], 'unknown setting "rebalance" (did you mean "no-rebalance"?)', { 'c.json': '{"backend":"h:1","rebalance":false}' }],
  [['--config', 'c.json'], 'did you mean "write-stall-timeout"', { 'c.json': '{"backend":"h:1","writeStallTimeout":100}' }],
  [['--backend', 'h:1', '--status', 'localhost'], '--status'],
  [['--backend', 'h:1', '--status', '70000'], '--status'],
  [['--backend', 'h:1', '--insecure=true'], '--insecure takes no value'],
  [['--backend', 'h:1', '--insecure', '--insecure'], '--insecure given twice'],
  [['--backend', 'h:1', '--insecure', '--ca', '/ca.crt'], 'contradict'],
  [['--backend', 'h:1', '--cert', '/c.crt'], '--cert needs --key'],
  [['--backend', 'h:1', '--key', '/c.key'], '--key needs --cert'],
  [['--backend', 'h:1', '--check', 'tcp', '--ca', '/ca.crt'], '--ca only applies'],
  [['--backend', 'h:1', '--check', 'http:/readyz', '--insecure'], '--insecure only applies'],
  [['--backend', 'h:1', '--check', 'tcp', '--servername', 'x'], '--servername only applies'],
  [['--backend', 'h:1', '--servername', '10.0.0.1'], '--servername'],
  [['--backend', 'h:1', '--servername', 'under_score'], '--servername'],
  [['--backend', 'h:1', '--ca', ''], '--ca'],
  [['--config'], '--config needs a value'],
  [['--config', 'a.json', '--config', 'b.json'], '--config given twice'],
  [['--config', 'missing.json'], 'cannot read it (ENOENT)'],
  [['--config', 'c.json'], 'not valid JSON', { 'c.json': '{"backend": ' }],
  [['--config', 'c.json'], 'expected a JSON object', { 'c.json': '["h:1"]' }],
  [['--config', 'c.json'], 'expected a JSON object', { 'c.json': 'null' }],
  [['--config', 'c.json'], 'did you mean "backend"', { 'c.json': '{"backends":["h:1"]}' }],
  [['--config', 'c.json'], 'unknown setting "connectTimeout" (did you mean "connect-timeout"?)', { 'c.json': '{"backend":"h:1","connectTimeout":5}' }],
  [['--config', 'c.json'], 'unknown setting', { 'c.json': '{"backend":"h:1","__proto__":{"x":1}}' }],
  [['--config', 'c.json'], '"config" cannot be set', { 'c.json': '{"config":"other.json"}' }],
  [['--config', 'c.json'], 'c.json: "interval": expected an integer', { 'c.json': '{"backend":"h:1","interval":"500"}' }],
  [['--config', 'c.json'], 'c.json: "interval"', { 'c.json': '{"backend":"h:1","interval":1.5}' }],
  [['--config', 'c.json'], 'c.json: "insecure": expected true or false', { 'c.json': '{"backend":"h:1","insecure":"yes"}' }],
  [['--config', 'c.json'], 'at least one backend', { 'c.json': '{"backend":[]}' }],
  [['--config', 'c.json'], 'c.json: "backend"', { 'c.json': '{"backend":[6443]}' }],
  [['--config', 'c.json'], 'c.json: "listen"', { 'c.json': '{"backend":"h:1","listen":6443}' }],
  [['--config', 'c.json'], 'no backend', { 'c.json': '{}' }],
  [['--config', 'c.json'], 'c.json: "backend"', { 'c.json': '{"backend":"h:1\\nx"}' }],
  [['--config', 'c.json'], 'unknown key "port"', { 'c.json': '{"backend":[{"address":"h:1","port":1}]}' }],
  [['--config', 'c.json'], '"address": "HOST:PORT"', { 'c.json': '{"backend":[{"name":"a"}]}' }],
  [['--config', 'c.json'], 'a "name" of letters', { 'c.json': '{"backend":[{"name":"<b>","address":"h:1"}]}' }],
  [['--config', 'c.json'], 'a "weight" from 0', { 'c.json': '{"backend":[{"address":"h:1","weight":-1}]}' }],
  [['--config', 'c.json'], 'a "maxConnections" integer', { 'c.json': '{"backend":[{"address":"h:1","maxConnections":0}]}' }],
  [['--config', 'c.json'], '"a" given twice', { 'c.json': '{"backend":[{"name":"a","address":"h:1"},"a=h:2"]}' }],
  [['--backend', 'h:1', '--admin-token-file', ''], '--admin-token-file'],
];

test('config file backends as objects carry tunables; --admin-token-file resolves against the file', () => {
  const config = parse(['--config', '/etc/b/c.json'], {
    '/etc/b/c.json': JSON.stringify({
      backend: ['a=10.0.0.1:6443', { name: 'b', address: '10.0.0.2:6443', weight: 2.5, maxConnections: 100 }, { address: '[fd00::3]:6443' }],
      'admin-token-file': 'admin.token',
    }),
  });
  assert.deepEqual(config.backends, [
    { host: '10.0.0.1', port: 6443, id: 'a' },
    { host: '10.0.0.2', port: 6443, id: 'b', weight: 2.5, maxConnections: 100 },
    { host: 'fd00::3', port: 6443, id: '[fd00::3]:6443' },
  ]);
  assert.equal(config.adminTokenFile, '/etc/b/admin.token');
  assert.equal(parse(['--backend', 'h:1', '--admin-token-file', 'rel/t']).adminTokenFile, 'rel/t');
});

for (const [argv, mentions, map] of bad) {
  test(`refused with one line: ${JSON.stringify(argv)}${map ? ` ${JSON.stringify(map)}` : ''}`, () => {
    const err = parseError(argv, map);
    assert.equal(err.exitCode, 2);
    assert.doesNotMatch(err.message, /[\r\n]/);
    assert.ok(err.message.length < 300, err.message);
    assert.ok(err.message.includes(mentions), `${JSON.stringify(err.message)} should mention ${JSON.stringify(mentions)}`);
  });
}

test('parseAddress', () => {
  assert.deepEqual(parseAddress('127.0.0.1:6443'), { host: '127.0.0.1', port: 6443 });
  assert.deepEqual(parseAddress('[::1]:6443'), { host: '::1', port: 6443 });
  assert.deepEqual(parseAddress('localhost:1'), { host: 'localhost', port: 1 });
  assert.equal(parseAddress('127.0.0.1:0'), undefined);
  assert.deepEqual(parseAddress('127.0.0.1:0', { minPort: 0 }), { host: '127.0.0.1', port: 0 });
  assert.equal(parseAddress('::1:6443'), undefined);
  assert.equal(parseAddress('6443'), undefined);
  assert.deepEqual(parseAddress('6443', { loopbackDefault: true }), { host: '127.0.0.1', port: 6443 });
});

test('fuzz: any argv either parses or is refused with a one-line ConfigError', () => {
  // A fixed seed: the same 5,000 command lines every run.
  let seed = 0x2545f491;
  const random = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const tokens = [
    '--listen', '--backend', '--check', '--ca', '--cert', '--key', '--insecure', '--servername', '--interval', '--timeout',
    '--rise', '--fall', '--strategy', '--connect-timeout', '--retries', '--queue-timeout', '--status', '--drain-timeout',
    '--slow-start', '--rebalance-rate', '--rebalance-tolerance', '--no-rebalance', '--write-stall-timeout', '--all-down', '0.5',
    'fail-open', 'queue', '--config', '--help=1', '--interval=', '--backend=', '-', '--', '', ' ', '0', '1', '-1', '500', '1000', '2147483647',
    '2147483648', '1e3', 'NaN', 'Infinity', 'h:1', '127.0.0.1:6443', '[::1]:6443', 'a=h:2', '=h:3', 'x=', '::', '[]:1',
    'https', 'https:/readyz', 'http:/', 'tls', 'tcp', 'udp', 'hash', 'random-two', 'c.json', 'bad.json', 'x\ny', '\u0000',
    '__proto__', 'constructor', '{}', '"',
  ];
  const map = {
    'c.json': '{"backend":["h:9"],"interval":700,"check":"tls"}',
    'bad.json': '{"__proto__":{"polluted":true},"backend":"h:1"}',
  };
  for (let n = 0; n < 5000; n++) {
    const argv = Array.from({ length: Math.floor(random() * 8) }, () => tokens[Math.floor(random() * tokens.length)]!);
    try {
      const result = parseBalancerArgs(argv, files(map));
      if (result.kind === 'run') {
        assert.ok(result.config.backends.length > 0);
        assert.ok(result.config.timeout <= result.config.interval);
      }
    } catch (err) {
      assert.ok(err instanceof ConfigError, `${JSON.stringify(argv)} threw ${String(err)}`);
      assert.doesNotMatch(err.message, /[\r\n]/, JSON.stringify(argv));
    }
  }
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
});

// ------------------------------------------------------------------ the CLI

interface Exited {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

async function runCli(t: TestContext, args: string[], script = entry): Promise<Exited> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  t.after(kill);
  // A CLI that should have exited but runs on fails the test instead of hanging the file.
  const timer = setTimeout(kill, 20_000);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function assertRefused(result: Exited, mentions: string, command = 'apiserver-balancer'): void {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, '', 'nothing started');
  const lines = result.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr, got ${JSON.stringify(result.stderr)}`);
  assert.ok(lines[0]!.startsWith(`${command}: `), lines[0]);
  assert.ok(lines[0]!.includes(mentions), lines[0]);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

test('CLI: a bad flag exits 2 with one line and starts nothing', async (t) => {
  assertRefused(await runCli(t, ['--backend', '127.0.0.1:6443', '--interval', 'soon']), '--interval');
});

test('CLI: a bad config file exits 2 with one line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'balancer-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'config.json');
  writeFileSync(config, '{"backend": ["127.0.0.1:6443"], "rise": 0}');
  assertRefused(await runCli(t, ['--config', config]), '"rise"');
});

test('CLI: an unreadable or unusable --ca exits 2 with one line, before listening', async (t) => {
  assertRefused(await runCli(t, ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:6443', '--ca', '/nonexistent/ca.crt']), 'cannot read it (ENOENT)');
  // A key is not a CA certificate.
  assertRefused(await runCli(t, ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:6443', '--ca', certPaths.clientKey]), 'not usable for TLS');
  // A key that does not match the certificate.
  assertRefused(
    await runCli(t, ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:6443', '--cert', certPaths.clientCert, '--key', certPaths.serverKey]),
    '--cert/--key: not usable for TLS',
  );
});

test('CLI: an unreadable or weak --admin-token-file exits 2 with one line, before listening', async (t) => {
  assertRefused(await runCli(t, ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:6443', '--admin-token-file', '/nonexistent/token']), 'cannot read it (ENOENT)');
  const dir = mkdtempSync(join(tmpdir(), 'balancer-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const weak = join(dir, 'token');
  writeFileSync(weak, 'short\n', { mode: 0o600 });
  assertRefused(await runCli(t, ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:6443', '--admin-token-file', weak]), 'expected one line of 32 to 4096');
  const shared = join(dir, 'shared-token');
  writeFileSync(shared, `${'t'.repeat(40)}\n`, { mode: 0o644 });
  assertRefused(await runCli(t, ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:6443', '--admin-token-file', shared]), 'make it private with chmod 600');
});

test('CLI: --help prints the usage and exits 0', async (t) => {
  const result = await runCli(t, ['--help']);
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^Usage: apiserver-balancer/);
  for (const flag of ['--listen', '--backend', '--check', '--ca', '--cert', '--key', '--insecure', '--interval', '--timeout', '--rise', '--fall', '--strategy', '--connect-timeout', '--retries', '--queue-timeout', '--status', '--config', '--admin-token-file', '--drain-timeout', '--version', '--slow-start', '--rebalance-rate', '--rebalance-tolerance', '--no-rebalance', '--write-stall-timeout', '--all-down']) {
    assert.ok(result.stdout.includes(flag), flag);
  }
});

test('CLI: --version prints the package version and exits 0', async (t) => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const result = await runCli(t, ['--version']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, `${version}\n`);
  assert.equal(result.stderr, '');
});

test('CLI: run under the bin\'s name (npm\'s symlink), usage and errors use that name', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'balancer-bin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'failover-proxy-apiserver');
  symlinkSync(entry, bin);
  const help = await runCli(t, ['--help'], bin);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: failover-proxy-apiserver --backend /);
  assertRefused(await runCli(t, ['--backend', '127.0.0.1:6443', '--interval', 'soon'], bin), '--interval', 'failover-proxy-apiserver');
});

const builtBin = join(root, 'dist', 'apiserver-balancer.js');
test('CLI from the build, through a symlink as npm installs it: name and version', { skip: !existsSync(builtBin) && 'dist/ is missing (npm test builds it)' }, async (t) => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const dir = mkdtempSync(join(tmpdir(), 'balancer-built-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'failover-proxy-apiserver');
  symlinkSync(builtBin, bin);
  const result = await runCli(t, ['--version'], bin);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, `${version}\n`);
  const help = await runCli(t, ['--help'], bin);
  assert.match(help.stdout, /^Usage: failover-proxy-apiserver /);
});

// ------------------------------------------------------- the running balancer

test('event log: one line per transition with its count, other closes aggregated by reason', async (t) => {
  const { port: upstream } = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b1' }] });
  t.after(() => pool.destroy());
  const lines: string[] = [];
  const log = new EventLog(pool, undefined, { write: (line) => lines.push(line), now: () => Date.UTC(2030, 0, 1) });
  t.after(() => log.close());
  const front = await frontend(t, pool);
  const clients = await Promise.all(Array.from({ length: 50 }, () => connect(t, front)));
  await waitFor(() => pool.stats().active === 50, { what: '50 pinned' });
  // Two ordinary closes, then a mass teardown.
  clients[0]!.end();
  clients[1]!.end();
  await waitFor(() => pool.stats().active === 48, { what: '2 closed' });
  assert.equal(pool.markDown('b1', 'probe-failed'), 48);
  pool.markUp('b1', 'probe-passed');
  log.flush();
  assert.deepEqual(lines, [
    '2030-01-01T00:00:00.000Z backend b1 up -> down (probe-failed), 48 connections torn down',
    '2030-01-01T00:00:00.000Z backend b1 down -> up (probe-passed)',
    '2030-01-01T00:00:00.000Z in the last 0 s: connections closed: client-closed 2',
  ]);
});

test('rebalance log: a line when moves start, one summary when balanced, never one per move', async (t) => {
  const a = await echoServer(t);
  const b = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: a.port, id: 'a' }, { host: HOST, port: b.port, id: 'b' }] });
  t.after(() => pool.destroy());
  const front = await frontend(t, pool);
  // Watch-like clients: a new connection as soon as one ends (at most 100 in all).
  let budget = 100;
  const open = (): void => {
    const socket = netConnect({ host: HOST, port: front });
    socket.on('error', () => {});
    socket.once('close', () => {
      if (budget-- > 0 && !pool.closed) open();
    });
    t.after(() => {
      budget = 0;
      socket.destroy();
    });
  };
  pool.markDown('b');
  for (let i = 0; i < 10; i++) open();
  await waitFor(() => pool.status('a')!.members === 10, { what: '10 on a' });
  const lines: string[] = [];
  const rebalancer = new Rebalancer(pool, { rate: 20, minAge: 0, stableFor: 0, tolerance: 0 });
  t.after(() => rebalancer.close());
  let now = Date.UTC(2030, 0, 1);
  const rebalanceLog = new RebalanceLog(pool, rebalancer, (line) => lines.push(line), () => now);
  t.after(() => rebalanceLog.close());
  rebalancer.once('started', () => (now += 1500));
  pool.markUp('b');
  await waitFor(() => lines.length === 2, { what: 'the start and summary lines' });
  assert.equal(lines[0], 'rebalancing: a 10, b 0');
  assert.match(lines[1]!, /^rebalanced: [4-5] connections moved \(from a [4-5]\) in 1\.5 s; now a [5-6], b [4-5]$/);
  rebalanceLog.close();
  assert.equal(lines.length, 2, 'nothing more to sum up');
});

test('the running balancer: the pool gets the new settings, a rebalancer unless --no-rebalance, closed on shutdown', async (t) => {
  const a = await echoServer(t);
  const b = await echoServer(t);
  const base = ['--listen', `${HOST}:0`, '--backend', `a=${HOST}:${a.port}`, '--backend', `b=${HOST}:${b.port}`, '--check', 'tcp'];
  const lines: string[] = [];
  const io = { log: (line: string) => lines.push(line), readFile: () => Buffer.alloc(0) };

  const balancer = await startBalancer(parse([...base, '--slow-start', '2500', '--write-stall-timeout', '0', '--all-down', 'fail-open']), io);
  t.after(() => balancer.destroy());
  assert.ok(balancer.rebalancer !== undefined, 'rebalancing is on by default');
  assert.equal(balancer.pool.listenerCount('connectionOpened'), 1, 'the rebalancer follows new connections');
  assert.ok(lines.some((l) => l.endsWith(' slow start 2500 ms; rebalancing at 4/s, tolerance 0.2; write-stall timeout off; all down: fail-open')), lines.join('\n'));
  // The policy reaches the pool: with both backends down, a client is placed anyway.
  balancer.pool.markDown('a');
  balancer.pool.markDown('b');
  assert.equal(balancer.pool.stats().allDown, true);
  const client = await connect(t, balancer.address.port);
  await waitFor(() => balancer.pool.stats().active === 1, { what: 'a client placed while all are down (fail-open)' });
  client.destroy();
  await balancer.close();
  assert.equal(balancer.pool.listenerCount('connectionOpened'), 0, 'the rebalancer stopped with the balancer');
  assert.equal(balancer.rebalancer.active, false);

  const plain = await startBalancer(parse([...base, '--no-rebalance']), io);
  t.after(() => plain.destroy());
  assert.equal(plain.rebalancer, undefined);
  assert.equal(plain.pool.listenerCount('connectionOpened'), 0);
  await plain.close();
});

test('metrics: Prometheus text with every documented family', async (t) => {
  const { port: upstream } = await echoServer(t);
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: upstream, id: 'b"1' }] });
  t.after(() => pool.destroy());
  const front = await frontend(t, pool);
  const client = await connect(t, front);
  client.write('hello\n');
  assert.equal(await readLine(client), 'hello');
  const probeStats = new ProbeStats();
  probeStats.record({ backend: pool.get('b"1')!, ok: true, outcome: 'pass', error: undefined, durationMs: 12, at: 1, passive: false });
  const text = renderMetrics(pool.stats(), probeStats.snapshot());
  for (const family of [
    'backend_up', 'backend_state', 'backend_active_connections', 'backend_connections_total', 'backend_connect_failures_total',
    'backend_sent_bytes_total', 'backend_received_bytes_total', 'backend_teardowns_total', 'active_connections', 'waiting_clients',
    'connections_total', 'teardowns_total', 'pin_failures_total', 'probe_checks_total', 'probe_last_success',
    'probe_last_duration_seconds', 'probe_duration_seconds',
  ]) {
    assert.match(text, new RegExp(`^# TYPE failover_proxy_${family} (gauge|counter|histogram)$`, 'm'), family);
  }
  // Label values are escaped.
  assert.match(text, /^failover_proxy_backend_up\{backend="b\\"1"\} 1$/m);
  assert.match(text, /^failover_proxy_backend_active_connections\{backend="b\\"1"\} 1$/m);
  assert.match(text, /^failover_proxy_backend_sent_bytes_total\{backend="b\\"1"\} 6$/m);
  assert.match(text, /^failover_proxy_probe_checks_total\{backend="b\\"1",result="ok"\} 1$/m);
  assert.match(text, /^failover_proxy_probe_duration_seconds_bucket\{backend="b\\"1",le="0.025"\} 1$/m);
  assert.match(text, /^failover_proxy_probe_duration_seconds_bucket\{backend="b\\"1",le="0.01"\} 0$/m);
  assert.match(text, /^failover_proxy_probe_duration_seconds_count\{backend="b\\"1"\} 1$/m);
  // Every line is a comment or `name{labels} value`.
  for (const line of text.trimEnd().split('\n')) assert.match(line, /^(# (HELP|TYPE) \S+ .+|[a-z_]+(\{.*\})? [-+0-9.eInfNa]+)$/, line);
});

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function httpGet(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '<script>x</script>' : undefined);
  });
}

test('status endpoint: /livez while the process answers; /readyz 503 with no backend up or while draining, else 200', async (t) => {
  const { port: upstream } = await echoServer(t);
  const down = await closedPort();
  const config = parse(['--listen', `${HOST}:0`, '--backend', `up=${HOST}:${upstream}`, '--backend', `down=${HOST}:${down}`, '--check', 'tcp', '--status', '0', '--drain-timeout', '10000']);
  const lines: string[] = [];
  const balancer = await startBalancer(config, { log: (line) => lines.push(line), readFile: (path) => readFileSync(path) });
  t.after(() => balancer.destroy());
  const status = balancer.statusAddress!.port;
  assert.equal((await httpGet(status, '/livez')).status, 200);
  const ready = await httpGet(status, '/readyz');
  assert.deepEqual([ready.status, ready.body], [200, 'ready\n']);
  assert.equal((await httpGet(status, '/readyz', 'HEAD')).status, 200);

  balancer.pool.markDown('up', 'marked-down');
  const none = await httpGet(status, '/readyz');
  assert.deepEqual([none.status, none.body], [503, 'not ready\n']);
  assert.equal((await httpGet(status, '/livez')).status, 200, 'alive all the same: restarting would not bring a backend up');
  balancer.pool.markUp('up');
  assert.equal((await httpGet(status, '/readyz')).status, 200);

  // A connection keeps the drain going; meanwhile the balancer says it is not ready.
  const client = await connect(t, balancer.address.port);
  client.write('hi\n');
  assert.equal(await readLine(client), 'hi');
  const closing = balancer.close();
  const draining = await httpGet(status, '/readyz');
  assert.equal(draining.status, 503);
  assert.equal((await httpGet(status, '/livez')).status, 200);
  client.end();
  await closing;
});

for (const mode of modes) {
test(`${mode}: CLI runs, serves watches, /stats and /metrics read-only, logs transitions, drains and exits 0 on SIGTERM`, { timeout: 90_000 }, async (t) => {
  const backends = await Promise.all(['b1', 'b2'].map((name) => ApiserverBackend.start({ name })));
  t.after(() => Promise.all(backends.map((b) => b.close())));
  const cli = await startMode(t, mode, [
      '--listen', `${HOST}:0`,
      '--backend', `b1=${HOST}:${backends[0]!.port}`,
      '--backend', `b2=${HOST}:${backends[1]!.port}`,
      '--ca', certPaths.ca,
      '--interval', '500',
      '--timeout', '500',
      '--status', '0',
      '--drain-timeout', '300',
  ]);
  const { child, lines, exited } = cli;
  const addresses = { listen: cli.listen, status: cli.status };
  assert.ok(addresses.status > 0, 'the status address is printed before listening');
  // On a loaded machine a first check may time out; the backend then rises a moment later.
  assert.match(lines.join('\n'), /first checks: [0-2] of 2 backends up/);
  // With workers, each logs its own transitions (`worker N: backend …`).
  const processes = mode === 'workers' ? 2 : 1;
  await waitFor(() => lines.filter((l) => / backend b[12] unknown -> up \(probe-passed\)$/.test(l)).length === 2 * processes, { what: 'both backends up' });

  const fleet = new WatchFleet({ size: 4, host: HOST, port: addresses.listen, backoffMs: 20 });
  t.after(() => fleet.stop());
  await fleet.waitFor((f) => f.connectedCount === 4 && Object.keys(f.byBackend()).length === 2);

  const stats = await httpGet(addresses.status, '/stats');
  assert.equal(stats.status, 200);
  assert.match(String(stats.headers['content-type']), /^application\/json/);
  const doc = JSON.parse(stats.body) as { active: number; backends: { id: string; state: string }[]; probe: { check: string; backends: Record<string, unknown> } };
  assert.equal(doc.active, 4);
  assert.deepEqual(doc.backends.map((b) => [b.id, b.state]), [['b1', 'up'], ['b2', 'up']]);
  assert.equal(doc.probe.check, 'https:/readyz');
  assert.deepEqual(Object.keys(doc.probe.backends).sort(), ['b1', 'b2']);

  assert.equal((await httpGet(addresses.status, '/livez')).status, 200);
  assert.equal((await httpGet(addresses.status, '/readyz')).status, 200);

  const metrics = await httpGet(addresses.status, '/metrics');
  assert.equal(metrics.status, 200);
  assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(metrics.body, /^failover_proxy_active_connections 4$/m);
  assert.match(metrics.body, /^failover_proxy_probe_checks_total\{backend="b1",result="ok"\} [1-9]/m);

  const head = await httpGet(addresses.status, '/metrics', 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  const post = await httpGet(addresses.status, '/stats', 'POST');
  assert.equal(post.status, 405);
  assert.equal(post.headers['allow'], 'GET, HEAD');
  assert.doesNotMatch(post.body, /script/);
  const missing = await httpGet(addresses.status, '/%3Cscript%3Ex%3C/script%3E');
  assert.equal(missing.status, 404);
  assert.doesNotMatch(missing.body, /script/i, 'the path is never echoed');

  // An apiserver that stops being ready is taken down; its watches move.
  backends[0]!.setReady(false);
  await fleet.waitFor((f) => (f.byBackend()['b2'] ?? 0) === 4, 15_000);
  backends[0]!.setReady(true);
  await waitFor(() => lines.filter((l) => / backend b1 down -> up \(probe-passed\)$/.test(l)).length === processes, { what: 'b1 back up' });
  const down = lines.filter((l) => l.includes('backend b1 up -> down'));
  assert.equal(down.length, processes, lines.join('\n'));
  for (const line of down) {
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (worker \d+: )?backend b1 up -> down \(probe-failed: PROBE_BAD_RESPONSE: .*\), \d+ connections? torn down$/);
  }

  // SIGTERM with watches still open: stop accepting, ask every connection to
  // close (a FIN both ways: the watch clients end their streams and leave
  // before the deadline, none is cut), exit 0.
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, cli.stderr());
  assert.equal(cli.stderr(), '');
  assert.match(lines.join('\n'), mode === 'workers' ? /shutting down: not accepting; 2 workers draining, 300 ms to finish/ : /shutting down: not accepting; 4 connections open, 300 ms to finish/);
  assert.doesNotMatch(lines.join('\n'), /closed at the deadline/, 'every watch left on the FIN; none waited for the deadline');
  assert.match(lines.at(-1)!, /stopped$/, 'every watch left on the FIN; none waited for the deadline');
});
}
