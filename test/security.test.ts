/**
 * Security and input handling:
 *
 * - Probe TLS verification is on by default (a trusted certificate for the
 *   wrong name, or an untrusted one, fails with PROBE_TLS_FAILED and the
 *   backend never comes up); turning it off is explicit, and logged.
 * - The L4 path never parses or trusts what a client sends: PROXY lines,
 *   `X-Forwarded-For` and the like pass through as opaque bytes, the pick key
 *   and any PROXY header the pool sends come from the socket, and payload
 *   bytes never reach the debug log.
 * - The reference balancer's status endpoint listens on loopback unless told
 *   otherwise, is read-only and never echoes request data; its config and
 *   flags parser, fuzzed with random and malformed input, only ever refuses
 *   with a one-line ConfigError (exit code 2), and the CLI starts nothing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { format } from 'node:util';
import { join } from 'node:path';
import net, { type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import createDebug from 'debug';
import { startBalancer } from '../src/cli/balancer.js';
import { ConfigError } from '../src/cli/config.js';
import { parseBalancerArgs } from '../src/cli/parse-balancer-args.js';
import { startStatusServer } from '../src/cli/status-server.js';
import { ApiserverBackend } from '../examples/support/apiserver-backend.js';
import { certPaths, loadCerts } from '../examples/support/certs.js';
import { HealthProbe, UpstreamPool, type CheckResult, type HealthProbeOptions, type PickContext } from '../src/index.js';
import { Prng, root } from './helpers/faults.js';
import { connect, frontend, HOST, listen, waitFor } from './helpers/net.js';

// ------------------------------------------------------------ probe TLS

async function probeOnce(t: TestContext, backend: ApiserverBackend, check: HealthProbeOptions['check']): Promise<{ result: CheckResult; state: string | undefined }> {
  const pool = new UpstreamPool({ initialState: 'probe', backends: [{ ...backend.address, id: 'b' }] });
  t.after(() => pool.destroy());
  const probe = new HealthProbe({ check, autoStart: false, rise: 1, fall: 1 });
  t.after(() => probe.stop());
  probe.attach(pool);
  const result = await probe.checkNow('b');
  return { result, state: pool.status('b')?.state };
}

test('probe TLS verification is on by default: a wrong-name or untrusted certificate fails with PROBE_TLS_FAILED and the backend stays down', async (t) => {
  const certs = loadCerts();
  const wrongName = await ApiserverBackend.start({ name: 'wrong-name', host: HOST, tls: { cert: certs.wrongNameCert, key: certs.wrongNameKey } });
  t.after(() => wrongName.close());
  const untrusted = await ApiserverBackend.start({ name: 'untrusted', host: HOST, tls: { cert: certs.otherServerCert, key: certs.otherServerKey } });
  t.after(() => untrusted.close());
  const good = await ApiserverBackend.start({ name: 'good', host: HOST });
  t.after(() => good.close());

  for (const type of ['https', 'tls'] as const) {
    const check = type === 'https' ? ({ type, path: '/readyz', ca: certs.ca } as const) : ({ type, ca: certs.ca } as const);
    const w = await probeOnce(t, wrongName, check);
    assert.equal(w.result.error?.code, 'PROBE_TLS_FAILED', `${type} wrong name: ${w.result.error?.message}`);
    assert.equal((w.result.error.cause as { code?: string }).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.equal(w.state, 'down');
    const u = await probeOnce(t, untrusted, check);
    assert.equal(u.result.error?.code, 'PROBE_TLS_FAILED', `${type} untrusted: ${u.result.error?.message}`);
    assert.equal(u.state, 'down');
    const g = await probeOnce(t, good, check);
    assert.equal(g.result.ok, true, `${type} good: ${g.result.error?.message}`);
    assert.equal(g.state, 'up');
  }
  // Without a CA at all, Node's roots do not trust the test CA: verification is really on.
  const noCa = await probeOnce(t, good, { type: 'https', path: '/readyz' });
  assert.equal(noCa.result.error?.code, 'PROBE_TLS_FAILED');
  // Turning it off is an explicit option.
  const off = await probeOnce(t, wrongName, { type: 'https', path: '/readyz', rejectUnauthorized: false });
  assert.equal(off.result.ok, true);
  assert.equal(off.state, 'up');
});

/** Captures what the library logs through `debug` while `fn` runs. */
async function captureDebug(namespaces: string, fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const previousLog = createDebug.log;
  const previous = createDebug.disable();
  // debug hands its log function the arguments; the default one formats them like this.
  createDebug.log = (...args: unknown[]) => {
    lines.push(format(...args));
  };
  createDebug.enable(namespaces);
  try {
    await fn();
  } finally {
    createDebug.disable();
    if (previous !== '') createDebug.enable(previous);
    createDebug.log = previousLog;
  }
  return lines;
}

test('turning probe TLS verification off is logged, once per probe', async (t) => {
  const good = await ApiserverBackend.start({ name: 'good', host: HOST });
  t.after(() => good.close());
  const lines = await captureDebug('failover-proxy:*', async () => {
    const probe = new HealthProbe({ check: { type: 'https', path: '/readyz', rejectUnauthorized: false }, autoStart: false });
    probe.add({ ...good.address, id: 'b' });
    for (let i = 0; i < 3; i++) await probe.checkNow('b');
    await probe.stop();
  });
  const warnings = lines.filter((l) => /verif|rejectUnauthorized|insecure/i.test(l));
  assert.equal(warnings.length, 1, `expected one line saying verification is off, got ${JSON.stringify(lines)}`);
});

test('the reference balancer verifies by default, and says so once when --insecure turns it off', async (t) => {
  const certs = loadCerts();
  const wrongName = await ApiserverBackend.start({ name: 'wrong-name', host: HOST, tls: { cert: certs.wrongNameCert, key: certs.wrongNameKey } });
  t.after(() => wrongName.close());
  const readFile = (path: string): Buffer => loadCerts()[path === certPaths.ca ? 'ca' : 'ca'];
  for (const insecure of [false, true]) {
    const argv = ['--listen', `${HOST}:0`, '--backend', `b1=${HOST}:${wrongName.port}`, '--interval', '200', '--timeout', '200', ...(insecure ? ['--insecure'] : ['--ca', certPaths.ca])];
    const parsed = parseBalancerArgs(argv, { readFile: () => '' });
    assert.equal(parsed.kind, 'run');
    if (parsed.kind !== 'run') return;
    const lines: string[] = [];
    const balancer = await startBalancer(parsed.config, { log: (line) => lines.push(line), readFile });
    t.after(() => balancer.destroy());
    const warnings = lines.filter((l) => /insecure|not verify|verification/i.test(l));
    if (insecure) {
      assert.equal(warnings.length, 1, lines.join('\n'));
      assert.equal(balancer.pool.status('b1')?.state, 'up', 'with --insecure the wrong-name certificate passes');
      assert.equal(balancer.stats().probe.verifyTls, false);
    } else {
      assert.equal(warnings.length, 0, lines.join('\n'));
      assert.equal(balancer.pool.status('b1')?.state, 'down', 'verified by default: the wrong name fails');
      assert.equal(balancer.probe.health('b1')?.lastResult?.error?.code, 'PROBE_TLS_FAILED');
      assert.equal(balancer.stats().probe.verifyTls, true);
    }
    await balancer.destroy();
  }
});

// ------------------------------------------------------------ L4 path: no trust of client data

const spoofed = Buffer.concat([
  Buffer.from('PROXY TCP4 6.6.6.6 7.7.7.7 1111 2222\r\n'),
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c]), // a PROXY v2 signature and header start
  Buffer.from([9, 9, 9, 9, 8, 8, 8, 8, 0x11, 0x11, 0x22, 0x22]),
  Buffer.from('GET /api HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\n'),
]);

/** A backend that records everything it receives, per connection, until the client's FIN. */
async function recordingBackend(t: TestContext): Promise<{ port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const { port } = await listen(t, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.once('end', () => {
      received.push(Buffer.concat(chunks));
      socket.end();
    });
  });
  return { port, received };
}

/** Sends `bytes` and a FIN, waits for the answer's end; resolves with the client's local port. */
async function sendAndFinish(t: TestContext, port: number, bytes: Buffer): Promise<number> {
  const c: Socket = await connect(t, port);
  const localPort = c.localPort!;
  c.resume();
  c.end(bytes);
  await once(c, 'end');
  return localPort;
}

test('client-supplied PROXY lines and forwarding headers pass through as opaque bytes, and never steer the pick', async (t) => {
  const b = await recordingBackend(t);
  const other = await recordingBackend(t);
  const keys: (string | undefined)[] = [];
  const pool = new UpstreamPool({
    backends: [
      { host: HOST, port: b.port, id: 'b' },
      { host: HOST, port: other.port, id: 'other' },
    ],
    balancer: (candidates, context: PickContext) => {
      keys.push(context.key);
      return candidates[0];
    },
  });
  t.after(() => pool.destroy());
  const port = await frontend(t, pool);
  for (let i = 0; i < 3; i++) await sendAndFinish(t, port, spoofed);
  await waitFor(() => b.received.length === 3);
  for (const got of b.received) assert.ok(got.equals(spoofed), 'byte for byte what the client sent');
  assert.deepEqual(keys, [HOST, HOST, HOST], 'the pick key is the socket address, not a header');

  // The hash strategy hashes the socket address: spoofed headers naming many clients all land together.
  const hashed = new UpstreamPool({
    backends: [
      { host: HOST, port: b.port, id: 'b' },
      { host: HOST, port: other.port, id: 'other' },
    ],
    balancer: 'hash',
  });
  t.after(() => hashed.destroy());
  const placed: string[] = [];
  hashed.on('connectionOpened', (conn) => placed.push(conn.backend!.id));
  const hashedPort = await frontend(t, hashed);
  for (let i = 0; i < 8; i++) {
    await sendAndFinish(t, hashedPort, Buffer.from(`PROXY TCP4 10.0.0.${i} 7.7.7.7 ${1000 + i} 443\r\nX-Forwarded-For: 10.0.${i}.1\r\n\r\n`));
  }
  assert.equal(new Set(placed).size, 1, `every client from ${HOST} went to one backend: ${placed.join(',')}`);
});

test('with proxyProtocol on, the header the pool sends carries the socket addresses, and the client’s own PROXY line follows as data', async (t) => {
  const b = await recordingBackend(t);
  for (const version of ['v1', 'v2'] as const) {
    b.received.length = 0;
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: b.port, id: 'b' }], proxyProtocol: version });
    t.after(() => pool.destroy());
    const port = await frontend(t, pool);
    const clientPort = await sendAndFinish(t, port, spoofed);
    await waitFor(() => b.received.length === 1);
    const got = b.received[0]!;
    let header: Buffer;
    if (version === 'v1') {
      const end = got.indexOf('\r\n');
      header = got.subarray(0, end + 2);
      assert.equal(header.toString('latin1'), `PROXY TCP4 ${HOST} ${HOST} ${clientPort} ${port}\r\n`);
    } else {
      // 12-byte signature, version/command, family, 2-byte length, then the addresses.
      const length = got.readUInt16BE(14);
      header = got.subarray(0, 16 + length);
      assert.equal(header[12], 0x21, 'v2, PROXY command');
      assert.equal(header[13], 0x11, 'TCP over IPv4');
      assert.equal([...header.subarray(16, 20)].join('.'), HOST);
      assert.equal([...header.subarray(20, 24)].join('.'), HOST);
      assert.equal(header.readUInt16BE(24), clientPort);
      assert.equal(header.readUInt16BE(26), port);
    }
    assert.ok(got.subarray(header.length).equals(spoofed), `${version}: the client's bytes follow unchanged`);
  }
});

test('payload bytes never reach the debug log', async (t) => {
  const marker = 'S3CR3T-PAYLOAD-MARKER';
  const { port: up } = await listen(t, (s) => s.pipe(s));
  const lines = await captureDebug('failover-proxy:*', async () => {
    const pool = new UpstreamPool({ backends: [{ host: HOST, port: up, id: 'b' }] });
    const port = await frontend(t, pool);
    const c = await connect(t, port);
    c.write(`${marker}\r\nX-Forwarded-For: ${marker}\r\n`);
    await once(c, 'data');
    pool.markDown('b', 'probe-failed');
    await pool.destroy();
  });
  assert.ok(lines.length > 0, 'the library logged something');
  assert.deepEqual(lines.filter((l) => l.includes(marker)), []);
});

// ------------------------------------------------------------ status endpoint

test('status endpoint: loopback by default, read-only, and it never echoes request data', async (t) => {
  const parsed = parseBalancerArgs(['--backend', `${HOST}:6443`, '--status', '0'], { readFile: () => '' });
  assert.equal(parsed.kind, 'run');
  if (parsed.kind !== 'run') return;
  assert.equal(parsed.config.status?.host, '127.0.0.1', '--status PORT listens on loopback');
  const defaults = parseBalancerArgs(['--backend', `${HOST}:6443`], { readFile: () => '' });
  assert.equal(defaults.kind === 'run' && defaults.config.status, undefined, 'not served unless asked for');

  let reads = 0;
  const status = await startStatusServer(parsed.config.status, {
    stats: () => {
      reads++;
      return { active: 1 };
    },
    metrics: () => {
      reads++;
      return 'failover_proxy_active_connections 1\n';
    },
  });
  t.after(() => status.close());
  assert.equal(status.address?.host, '127.0.0.1');

  const marker = 'EcH0mArKeR';
  const raw = async (request: string | Buffer): Promise<string> => {
    const c = net.connect({ host: HOST, port: status.address!.port });
    c.on('error', () => undefined);
    t.after(() => c.destroy());
    await once(c, 'connect');
    let text = '';
    c.setEncoding('latin1').on('data', (d: string) => (text += d));
    c.end(request);
    await new Promise((resolve) => c.once('close', resolve));
    return text;
  };

  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE']) {
    for (const path of ['/stats', '/metrics', '/']) {
      const body = `${marker}=1`;
      const res = await raw(`${method} ${path}?${marker} HTTP/1.1\r\nHost: localhost\r\nX-${marker}: ${marker}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      assert.match(res, /^HTTP\/1\.1 405 /, `${method} ${path}`);
      assert.match(res, /\r\nallow: GET, HEAD\r\n/i);
      assert.ok(!res.includes(marker), `${method} ${path} echoed request data: ${res}`);
    }
  }
  assert.equal(reads, 0, 'no write method reached the sources');

  const probes = [
    `GET /stats?${marker}=<script> HTTP/1.1\r\nHost: ${marker}\r\nConnection: close\r\n\r\n`,
    `GET /metrics?x=${marker} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ${marker}\r\nCookie: a=${marker}\r\nConnection: close\r\n\r\n`,
    `GET /${marker}%3Cscript%3E HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    `GET /stats/../${marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    `HEAD /stats HTTP/1.1\r\nHost: ${marker}\r\nConnection: close\r\n\r\n`,
    `GET /stats HTTP/1.1\r\nHost: localhost\r\n${marker}\r\n\r\n`, // a malformed header line
    `${marker} / HTTP/1.1\r\n\r\n`, // a bogus method
    `GET /stats HTTP/1.1\r\nHost: localhost\r\nX-Big: ${marker}${'a'.repeat(20_000)}\r\n\r\n`, // headers too large
  ];
  for (const request of probes) {
    const res = await raw(request);
    assert.match(res, /^HTTP\/1\.1 \d{3} /, `an HTTP answer to ${JSON.stringify(request.slice(0, 40))}`);
    assert.ok(!res.includes(marker), `echoed request data for ${JSON.stringify(request.slice(0, 40))}: ${res.slice(0, 300)}`);
  }
  // Garbage bytes: answered (or hung up on) without echo, and the endpoint still serves.
  const random = new Prng(0x5ec);
  for (let i = 0; i < 20; i++) {
    const res = await raw(Buffer.concat([random.bytes(random.int(1, 512)), Buffer.from(marker)]));
    assert.ok(!res.includes(marker));
  }
  const ok = await raw('GET /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.match(ok, /^HTTP\/1\.1 200 /);
  assert.match(ok, /\r\nx-content-type-options: nosniff\r\n/i);
});

// ------------------------------------------------------------ config and flags parser

const flagNames = [
  'listen', 'backend', 'check', 'ca', 'cert', 'key', 'insecure', 'servername', 'interval', 'timeout', 'rise', 'fall',
  'strategy', 'connect-timeout', 'retries', 'queue-timeout', 'status', 'drain-timeout', 'admin-token-file', 'config', 'help',
];

/** A random JSON value, up to `depth` deep, biased towards the shapes a config has. */
function randomJson(random: Prng, depth: number): unknown {
  const kind = random.int(0, depth > 0 ? 9 : 6);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return random.chance(0.5);
    case 2:
      return random.pick([0, -1, 1, 1.5, 1e308, -1e308, 2 ** 31, 2 ** 53 + 1, 6443, 65536, Number.MAX_SAFE_INTEGER]);
    case 3:
      return random.pick(['', ' ', 'h:1', '127.0.0.1:6443', '[::1]:6443', 'a=h:1', 'https:/readyz', 'tls', 'hash', '\u0000', '\n', 'x'.repeat(10_000), '../../etc/passwd', '__proto__', '%s%n', '\u202e', '1e3']);
    case 4:
      return random.bytes(random.int(0, 24)).toString('latin1');
    case 5:
      return String.fromCodePoint(...Array.from({ length: random.int(0, 12) }, () => random.int(0, 0x10ffff) & 0xd7ff));
    case 6:
      return random.int(-5, 70_000);
    case 7:
    case 8: {
      const out: Record<string, unknown> = {};
      for (let i = random.int(0, 6); i > 0; i--) out[random.chance(0.7) ? random.pick(flagNames) : random.pick(['backends', 'constructor', 'prototype', '', 'x'])] = randomJson(random, depth - 1);
      return out;
    }
    default:
      return Array.from({ length: random.int(0, 4) }, () => randomJson(random, depth - 1));
  }
}

function assertRefusal(err: unknown, context: string): void {
  assert.ok(err instanceof ConfigError, `${context}: threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  assert.equal(err.exitCode, 2);
  assert.doesNotMatch(err.message, /[\r\n]/, `${context}: multi-line message`);
  assert.ok(err.message.length <= 400, `${context}: ${err.message.length}-character message`);
  assert.doesNotMatch(err.message, /\bat .+:\d+:\d+/, `${context}: a stack frame in the message`);
}

test('fuzz: 4,000 random config files (random JSON, truncated, raw bytes) and flag values only ever parse or refuse with one line', () => {
  const random = new Prng(0xc0f19);
  let parsed = 0;
  let refused = 0;
  for (let n = 0; n < 4000; n++) {
    let source: string;
    const shape = random.int(0, 9);
    if (shape <= 5) {
      const doc = randomJson(random, 3);
      source = JSON.stringify(random.chance(0.8) && typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? { backend: random.pick(['h:1', ['h:1', 'h:2'], 'a=h:3']), ...doc } : doc) ?? 'undefined';
    } else if (shape <= 7) {
      const valid = JSON.stringify({ backend: ['h:1'], interval: 500, check: 'https:/readyz', status: '9090' });
      source = valid.slice(0, random.int(0, valid.length - 1));
    } else {
      source = random.bytes(random.int(0, 200)).toString(random.chance(0.5) ? 'latin1' : 'utf8');
    }
    const extra: string[] = [];
    for (let i = random.int(0, 3); i > 0; i--) {
      const name = random.pick(flagNames.filter((f) => f !== 'help' && f !== 'config'));
      const value = randomJson(random, 0);
      extra.push(`--${name}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
    }
    const argv = ['--config', 'c.json', ...extra];
    try {
      const result = parseBalancerArgs(argv, { readFile: () => source });
      parsed++;
      if (result.kind === 'run') {
        assert.ok(result.config.backends.length > 0);
        assert.ok(result.config.timeout <= result.config.interval);
        assert.ok(Object.isFrozen(result.config));
      }
    } catch (err) {
      refused++;
      assertRefusal(err, `${JSON.stringify(argv).slice(0, 200)} with ${JSON.stringify(source).slice(0, 200)}`);
    }
  }
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  assert.ok(refused > 3000 && parsed > 0, `${parsed} parsed, ${refused} refused`);
});

test('fuzz: 4,000 argv of random bytes and unicode only ever parse or refuse with one line', () => {
  const random = new Prng(0xa4c7);
  for (let n = 0; n < 4000; n++) {
    const argv = Array.from({ length: random.int(0, 8) }, () => {
      switch (random.int(0, 4)) {
        case 0:
          return `--${random.pick(flagNames)}`;
        case 1:
          return `--${random.pick(flagNames)}=${random.bytes(random.int(0, 40)).toString('latin1')}`;
        case 2:
          return random.bytes(random.int(0, 40)).toString('utf8');
        case 3:
          return String(randomJson(random, 0));
        default:
          return `--${random.bytes(random.int(1, 10)).toString('latin1')}`;
      }
    });
    try {
      parseBalancerArgs(argv, { readFile: () => '{"backend":"h:1"}' });
    } catch (err) {
      assertRefusal(err, JSON.stringify(argv).slice(0, 300));
    }
  }
});

const entry = join(root, 'examples/apiserver-balancer.ts');

/** Runs the balancer CLI with `args`; asserts exit 2, one line on stderr, no stack trace, nothing on stdout. */
async function assertCliRefuses(t: TestContext, args: string[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  const label = JSON.stringify(args).slice(0, 120);
  assert.equal(code, 2, `${label}: exit ${code}, stderr ${stderr}`);
  assert.equal(stdout, '', `${label}: nothing started`);
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `${label}: ${JSON.stringify(stderr)}`);
  assert.match(lines[0]!, /^apiserver-balancer: /);
  assert.doesNotMatch(stderr, /\n\s+at |node:internal/, `${label}: a stack trace`);
}

test('CLI: malformed configs and flags exit 2 with one line, no stack trace, nothing started', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'security-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: string | Buffer): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  // A port that must stay free: the CLI must not have bound it when it refuses.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, HOST, resolve));
  const freePort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const listenFlag = ['--listen', `${HOST}:${freePort}`];
  const cases: string[][] = [
    ['--config', file('truncated.json', '{"backend": ["127.0.0.1:6443"], "interval": 5')],
    ['--config', file('bytes.json', new Prng(7).bytes(300))],
    ['--config', file('proto.json', '{"backend":"127.0.0.1:6443","__proto__":{"listen":"0.0.0.0:1"}}'), ...listenFlag],
    ['--backend', '127.0.0.1:6443', '--status', `${'9'.repeat(300)}`, ...listenFlag],
    ['--backend', '127.0.0.1:6443\n--listen 0.0.0.0:1', ...listenFlag],
    ['--backend', '127.0.0.1:6443', '--interval', '1e3', ...listenFlag],
  ];
  await Promise.all(cases.map((args) => assertCliRefuses(t, args)));
  // Nothing was left listening on the address the refused runs were given.
  const check = net.createServer();
  await new Promise<void>((resolve, reject) => {
    check.once('error', reject);
    check.listen(freePort, HOST, resolve);
  });
  await new Promise<void>((resolve) => check.close(() => resolve()));
});

// Regression: a config value nested thousands deep (valid JSON) once made the
// parser's value formatter overflow the stack, so a RangeError escaped
// parseBalancerArgs and the CLI exited 1 with a stack-overflow message.

test('a config value nested 5,000 deep is refused with a ConfigError', () => {
  for (const source of [`${'['.repeat(5000)}${']'.repeat(5000)}`, `{"backend":"h:1","interval":${'['.repeat(5000)}${']'.repeat(5000)}}`]) {
    try {
      parseBalancerArgs(['--config', 'c.json'], { readFile: () => source });
      assert.fail('parsed');
    } catch (err) {
      assertRefusal(err, `${source.slice(0, 40)}...`);
    }
  }
});

test('CLI: a config nested 5,000 deep exits 2 with one line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'security-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'deep.json');
  writeFileSync(path, `${'['.repeat(5000)}${']'.repeat(5000)}`);
  await assertCliRefuses(t, ['--config', path]);
});
