/**
 * The status listener as an operator leans on it: `/livez` and `/readyz`
 * answer whatever other clients hold (keep-alive hogs, idle or slow clients),
 * the page and the API refuse foreign Host headers (DNS rebinding), the admin
 * API also listens on a 0600 Unix socket, and the admin token file must be
 * private and long enough.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:http';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { readToken } from '../src/cli/setup.js';
import { ConfigError } from '../src/cli/config.js';
import { MAX_CONNECTIONS, hostAllowed, startStatusServer } from '../src/cli/status-server.js';
import { TOKEN, api, startAdminBalancer, tempDir } from './helpers/admin.js';
import { HOST, echoServer, waitFor } from './helpers/net.js';

interface Reply {
  readonly status: number;
  readonly body: string;
}

function get(options: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(options.method === 'POST' ? '{}' : undefined);
  });
}

async function statusServer(t: TestContext, options: Parameters<typeof startStatusServer>[2] = {}) {
  const server = await startStatusServer(
    { host: HOST, port: 0 },
    { stats: () => ({ ok: true }), metrics: () => 'm 1\n', ready: () => true, api: () => ({ status: 200, body: { api: true } }) },
    options,
  );
  t.after(() => server.close());
  return server.address!.port;
}

/** `n` connections that each send `request` at once and then every `everyMs` (0: never), kept open. */
async function hogs(t: TestContext, port: number, n: number, request: string, everyMs: number): Promise<Set<Socket>> {
  const sockets = new Set<Socket>();
  const timers: NodeJS.Timeout[] = [];
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    for (const s of sockets) s.destroy();
  });
  await Promise.all(
    Array.from({ length: n }, async () => {
      const s = netConnect(port, HOST);
      s.on('error', () => {});
      s.resume();
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      await once(s, 'connect');
      if (request !== '') s.write(request);
      if (everyMs > 0) timers.push(setInterval(() => s.write(request), everyMs));
    }),
  );
  return sockets;
}

const keepAliveLivez = 'GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

for (const [attack, request, everyMs] of [
  ['keep-alive hogs (one /livez every 4 s each)', keepAliveLivez, 4000],
  ['idle connections that never send', '', 0],
  ['slow senders stuck in their headers', 'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a', 0],
] as const) {
  test(`/livez and /readyz answer while ${MAX_CONNECTIONS} ${attack} hold the listener`, async (t) => {
    const port = await statusServer(t);
    const held = await hogs(t, port, MAX_CONNECTIONS, request, everyMs);
    // Every attacker is in (a keep-alive hog has had its first answer).
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(held.size, MAX_CONNECTIONS);
    for (let i = 0; i < 5; i++) {
      assert.equal((await get({ host: HOST, port, path: '/livez' })).status, 200);
      assert.equal((await get({ host: HOST, port, path: '/readyz' })).status, 200);
    }
    // Room was made by evicting attackers, never by going over the cap.
    await waitFor(() => held.size <= MAX_CONNECTIONS - 1, { what: 'evictions' });
  });
}

test('a connection being answered is evicted only when every other one is too', async (t) => {
  // Two slots: one connection mid-request (a body that never ends), one idle.
  const port = await statusServer(t, { maxConnections: 2 });
  const [busy] = await hogs(t, port, 1, 'POST /api/backends HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{', 0);
  await new Promise((r) => setTimeout(r, 50));
  const [idle] = await hogs(t, port, 1, '', 0);
  assert.equal((await get({ host: HOST, port, path: '/livez' })).status, 200);
  await waitFor(() => idle!.destroyed, { what: 'the idle connection evicted' });
  assert.equal(busy!.destroyed, false, 'the connection in a request was kept while an idle one could go');
});

test('Host allow-list: the page, /stats, /metrics and the API refuse foreign names; probes answer any Host', async (t) => {
  const port = await statusServer(t, { allowedHosts: ['lb.example.com'] });
  for (const path of ['/', '/stats', '/metrics', '/api/backends', '/status.js']) {
    for (const host of ['evil.example', 'lb.example.com.evil.example', 'localhost.evil']) {
      const reply = await get({ host: HOST, port, path, headers: { host } });
      assert.equal(reply.status, 421, `${path} with Host ${host}`);
      assert.equal((JSON.parse(reply.body) as { error: string }).error, 'HOST_NOT_ALLOWED');
      assert.ok(!reply.body.includes('evil'), 'the refusal does not echo the Host');
    }
    for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, '10.1.2.3:9090', 'lb.example.com', 'LB.Example.Com.:9090']) {
      assert.equal((await get({ host: HOST, port, path, headers: { host } })).status, 200, `${path} with Host ${host}`);
    }
  }
  for (const path of ['/livez', '/readyz']) {
    assert.equal((await get({ host: HOST, port, path, headers: { host: 'evil.example' } })).status, 200, path);
  }
  assert.equal(hostAllowed('a b', []), false);
  assert.equal(hostAllowed('[::1', []), false);
  assert.equal(hostAllowed(undefined, []), true);
});

test('--admin-socket: mode 0600, the same API, changes without a token; removed on close', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'admin.sock');
  const backend = await echoServer(t);
  const { balancer, status } = await startAdminBalancer(t, [`a=${HOST}:${backend.port}`], { token: false, extra: ['--admin-socket', path] });
  assert.equal(lstatSync(path).mode & 0o777, 0o600);
  assert.ok(lstatSync(path).isSocket());
  assert.equal((await get({ socketPath: path, path: '/livez' })).status, 200);
  // Over TCP the API stays read-only without a token file...
  assert.equal((await api(status, 'POST', '/api/backends/a/drain', { token: TOKEN, body: {} })).status, 403);
  // ...over the socket its permissions are the credential.
  const drained = await get({ socketPath: path, path: '/api/backends/a/drain', method: 'POST', headers: { 'content-type': 'application/json' } });
  assert.equal(drained.status, 202, drained.body);
  await balancer.close();
  assert.equal(existsSync(path), false, 'the socket file is removed on close');
});

test('--admin-socket: a stale socket file is replaced; a live one or a non-socket file is refused and left alone', async (t) => {
  const dir = tempDir(t);
  const sources = { stats: () => ({}), metrics: () => '' };
  // Stale: left by a process killed while listening.
  const stale = join(dir, 'stale.sock');
  const killed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await once(killed, 'exit');
  assert.ok(lstatSync(stale).isSocket());
  const replaced = await startStatusServer(undefined, sources, { adminSocket: stale });
  assert.equal((await get({ socketPath: stale, path: '/livez' })).status, 200);
  await replaced.close();
  // Live: another process answers on it.
  const live = join(dir, 'live.sock');
  const other = createServer((s) => s.destroy());
  await new Promise<void>((r) => other.listen(live, r));
  t.after(() => other.close());
  await assert.rejects(startStatusServer(undefined, sources, { adminSocket: live }), /another process is listening on it/);
  assert.ok(lstatSync(live).isSocket(), 'the live socket is left alone');
  // Not a socket: never removed.
  const file = join(dir, 'file.sock');
  writeFileSync(file, 'keep me');
  await assert.rejects(startStatusServer(undefined, sources, { adminSocket: file }), /exists and is not a socket/);
  assert.equal(readFileSync(file, 'utf8'), 'keep me');
});

test('--admin-token-file: refused when group or others may access it, or shorter than 32 characters', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'token');
  const io = { log: () => {}, readFile: (p: string) => readFileSync(p) };
  writeFileSync(file, `${'x'.repeat(32)}\n`, { mode: 0o600 });
  assert.ok(readToken(io, file).length === 32, 'a private 32-character token is taken');
  for (const mode of [0o640, 0o604, 0o644, 0o620]) {
    chmodSync(file, mode);
    assert.throws(
      () => readToken(io, file),
      (err: unknown) => err instanceof ConfigError && err.message.includes(`mode 0${mode.toString(8)}`) && err.message.includes('chmod 600'),
      mode.toString(8),
    );
  }
  chmodSync(file, 0o400);
  readToken(io, file);
  writeFileSync(file, `${'x'.repeat(31)}\n`);
  assert.throws(() => readToken(io, file), (err: unknown) => err instanceof ConfigError && /32 to 4096 printable characters/.test(err.message));
});
