// The reference balancer's admin API (/api/ on the status listener) on real
// loopback sockets: every route's happy path, every bad input refused with its
// code and nothing changed, and the status server's limits. Reload by SIGHUP
// of the real CLI is in test/cli-modes.test.ts, in both modes.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { RecentEvents } from '../src/cli/recent-events.js';
import { MAX_CONNECTIONS } from '../src/cli/status-server.js';
import { UpstreamPool } from '../src/index.js';
import { TOKEN, api, startAdminBalancer, tempDir, type ApiReply, type Doc } from './helpers/admin.js';
import { HOST, connect, echoServer, namedServer, readLine, waitFor } from './helpers/net.js';


/** The backends' servers, per test. */
const servers = new WeakMap<TestContext, { a: Awaited<ReturnType<typeof namedServer>>; b: Awaited<ReturnType<typeof namedServer>> }>();

async function twoBackends(t: TestContext, options: Parameters<typeof startAdminBalancer>[2] = {}) {
  const a = await namedServer(t, 'a');
  const b = await namedServer(t, 'b');
  servers.set(t, { a, b });
  const started = await startAdminBalancer(t, [`a=${HOST}:${a.port}`, `b=${HOST}:${b.port}`], options);
  await waitFor(() => started.balancer.pool.status('a')?.health === 'up' && started.balancer.pool.status('b')?.health === 'up', { what: 'both up' });
  return { ...started, ports: { a: a.port, b: b.port } };
}

/** A client through the balancer, and the backend it landed on. */
async function client(t: TestContext, port: number): Promise<{ socket: Socket; backend: string }> {
  const socket = await connect(t, port);
  return { socket, backend: await readLine(socket) };
}

function assertError(reply: ApiReply, status: number, code: string): void {
  assert.equal(reply.status, status, reply.text);
  assert.match(String(reply.headers['content-type']), /^application\/json/);
  assert.deepEqual(Object.keys(reply.json).sort(), ['error', 'message']);
  assert.equal(reply.json.error, code, reply.text);
  assert.equal(typeof reply.json.message, 'string');
}

/** What the API can change of every backend (health is the probe's): what a refused call must leave as it was. */
function snapshot(pool: UpstreamPool): string {
  return JSON.stringify(pool.stats().backends.map((b) => [b.id, b.host, b.port, b.admin, b.weight, b.maxConnections, b.members]));
}

test('GET /api/backends and /api/backends/{name}: both axes, cause, members, weights; HEAD has no body', async (t) => {
  const { balancer, status } = await twoBackends(t);
  const c = await client(t, balancer.address.port);
  await waitFor(() => balancer.pool.stats().active === 1, { what: 'one member' });

  const list = await api(status, 'GET', '/api/backends');
  assert.equal(list.status, 200);
  assert.equal(list.headers['cache-control'], 'no-store');
  assert.equal(list.headers['x-content-type-options'], 'nosniff');
  assert.equal(list.json.readOnly, false);
  assert.equal(list.json.allDown, false);
  assert.deepEqual(list.json.backends.map((b) => b.id), ['a', 'b']);
  for (const b of list.json.backends) {
    assert.equal(b.health, 'up');
    assert.equal(b.admin, 'active');
    assert.equal(b.state, 'up');
    assert.equal(b.cause.source, 'probe');
    assert.equal(b.weight, 1);
    assert.equal(b.effectiveWeight, 1);
    assert.equal(b.maxConnections, null, 'no cap is null in JSON');
    assert.equal(b.address, `${HOST}:${b.port}`);
  }
  const one = await api(status, 'GET', `/api/backends/${c.backend}`);
  assert.equal(one.status, 200);
  assert.equal(one.json.id, c.backend);
  assert.equal(one.json.members, 1);

  const head = await api(status, 'HEAD', '/api/backends/a');
  assert.equal(head.status, 200);
  assert.equal(head.text, '');

  const events = await api(status, 'GET', '/api/events');
  assert.equal(events.status, 200);
  assert.ok(events.json.events.some((e) => e.backend === 'a' && e.to === 'up'));
  const last = events.json.events.at(-1)!.seq;
  assert.deepEqual((await api(status, 'GET', `/api/events?after=${last}`)).json.events, []);
});

test('changes need the bearer token: none or a wrong one is 401 revealing nothing, and changes nothing', async (t) => {
  const { balancer, status } = await twoBackends(t);
  const before = snapshot(balancer.pool);
  const none = await api(status, 'POST', '/api/backends/a/drain', { body: {} });
  assertError(none, 401, 'UNAUTHORIZED');
  assert.match(String(none.headers['www-authenticate']), /^Bearer /);
  const wrong = await api(status, 'POST', '/api/backends/a/drain', { token: `${TOKEN}x`, body: {} });
  const short = await api(status, 'POST', '/api/backends/a/drain', { token: 'x', body: {} });
  const basic = await api(status, 'POST', '/api/backends/a/drain', { headers: { authorization: `Basic ${TOKEN}` }, body: {} });
  // An unknown backend answers the same: without the token nothing is revealed, not even which names exist.
  const unknown = await api(status, 'DELETE', '/api/backends/nope', { token: 'wrong-token-wrong-token' });
  for (const reply of [wrong, short, basic, unknown]) {
    assertError(reply, 401, 'UNAUTHORIZED');
    assert.equal(reply.text, none.text, 'every refusal is the same');
  }
  for (const path of ['/api/backends', '/api/reload']) assertError(await api(status, 'POST', path, { body: {} }), 401, 'UNAUTHORIZED');
  assertError(await api(status, 'PATCH', '/api/backends/a', { body: { weight: 2 } }), 401, 'UNAUTHORIZED');
  assert.equal(snapshot(balancer.pool), before);
});

test('without --admin-token-file the API is read-only: changes get 403, reads work', async (t) => {
  const { balancer, status } = await twoBackends(t, { token: false });
  const before = snapshot(balancer.pool);
  assertError(await api(status, 'POST', '/api/backends/a/drain', { token: TOKEN, body: {} }), 403, 'READ_ONLY');
  assertError(await api(status, 'POST', '/api/backends/a/maintenance'), 403, 'READ_ONLY');
  assertError(await api(status, 'POST', '/api/reload'), 403, 'READ_ONLY');
  assertError(await api(status, 'DELETE', '/api/backends/a'), 403, 'READ_ONLY');
  assert.equal(snapshot(balancer.pool), before);
  const list = await api(status, 'GET', '/api/backends');
  assert.equal(list.status, 200);
  assert.equal(list.json.readOnly, true);
});

test('bad input: 404, 405, 400 (JSON, types, fields), 413; nothing echoed, nothing changed', async (t) => {
  const { balancer, status } = await twoBackends(t);
  const before = snapshot(balancer.pool);
  const token = TOKEN;
  assertError(await api(status, 'GET', '/api/backends/nope'), 404, 'UNKNOWN_BACKEND');
  assertError(await api(status, 'POST', '/api/backends/nope/drain', { token, body: {} }), 404, 'UNKNOWN_BACKEND');
  assertError(await api(status, 'PATCH', '/api/backends/nope', { token, body: { weight: 2 } }), 404, 'UNKNOWN_BACKEND');
  assertError(await api(status, 'DELETE', '/api/backends/nope', { token }), 404, 'UNKNOWN_BACKEND');
  assertError(await api(status, 'GET', '/api/backends/%E0%A4%A'), 404, 'NOT_FOUND');
  assertError(await api(status, 'GET', '/api/nothing'), 404, 'NOT_FOUND');
  assertError(await api(status, 'GET', '/api/backends/a/reboot'), 404, 'NOT_FOUND');

  const wrongMethod = await api(status, 'PUT', '/api/backends/a', { token, body: {} });
  assertError(wrongMethod, 405, 'METHOD_NOT_ALLOWED');
  assert.equal(wrongMethod.headers['allow'], 'GET, HEAD, PATCH, DELETE');
  assertError(await api(status, 'GET', '/api/backends/a/drain'), 405, 'METHOD_NOT_ALLOWED');
  assertError(await api(status, 'DELETE', '/api/reload', { token }), 405, 'METHOD_NOT_ALLOWED');

  const hostile = '<script>alert(1)</script>';
  assertError(await api(status, 'POST', '/api/backends/a/drain', { token, body: `{"timeoutMs": ${hostile}` }), 400, 'INVALID_JSON');
  const invalid: [method: string, path: string, body: unknown][] = [
    ['POST', '/api/backends/a/drain', { timeoutMs: '100' }],
    ['POST', '/api/backends/a/drain', { timeoutMs: -1 }],
    ['POST', '/api/backends/a/drain', { timeoutMs: 1.5 }],
    ['POST', '/api/backends/a/drain', { timeoutMs: 2 ** 31 }],
    ['POST', '/api/backends/a/drain', { [hostile]: 1 }],
    ['POST', '/api/backends/a/drain', [1]],
    ['POST', '/api/backends/a/drain', 'null'],
    ['POST', '/api/backends/a/maintenance', { reason: hostile }],
    ['POST', '/api/backends/a/ready', { x: 1 }],
    ['PATCH', '/api/backends/a', {}],
    ['PATCH', '/api/backends/a', { weight: hostile }],
    ['PATCH', '/api/backends/a', { weight: -1 }],
    ['PATCH', '/api/backends/a', { weight: 2, maxConnections: 0 }],
    ['PATCH', '/api/backends/a', { maxConnections: 1.5 }],
    ['PATCH', '/api/backends/a', { weight: 1, id: 'b' }],
    ['POST', '/api/backends', { name: hostile, address: `${HOST}:1` }],
    ['POST', '/api/backends', { name: 'c' }],
    ['POST', '/api/backends', { name: 'c', address: hostile }],
    ['POST', '/api/backends', { name: 'c', address: `${HOST}:70000` }],
    ['POST', '/api/backends', { name: 'c', address: 6443 }],
    ['POST', '/api/backends', { name: 'c', address: `${HOST}:1`, weight: '2' }],
    ['POST', '/api/backends', { name: 'c', address: `${HOST}:1`, host: HOST }],
    ['DELETE', '/api/backends/a', { timeoutMs: 'soon' }],
    ['POST', '/api/reload', { force: true }],
  ];
  for (const [method, path, body] of invalid) {
    const reply = await api(status, method, path, { token, body });
    assertError(reply, 400, 'INVALID_ARGUMENT');
    assert.doesNotMatch(reply.text, /script|soon|alert/, `${method} ${path} ${JSON.stringify(body)}: nothing echoed`);
  }

  // Over 16 KiB: refused as declared, and as streamed (chunked, no length).
  const big = JSON.stringify({ timeoutMs: 1, pad: 'x'.repeat(17 * 1024) });
  assertError(await api(status, 'POST', '/api/backends/a/drain', { token, body: big }), 413, 'PAYLOAD_TOO_LARGE');
  const chunked = await new Promise<ApiReply>((resolve, reject) => {
    const req = request({ host: HOST, port: status, method: 'POST', path: '/api/backends/a/drain', headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: JSON.parse(text) as Doc }));
    });
    req.on('error', reject);
    req.write(big.slice(0, 9000));
    req.end(big.slice(9000));
  });
  assertError(chunked, 413, 'PAYLOAD_TOO_LARGE');

  // Duplicate names and addresses.
  assertError(await api(status, 'POST', '/api/backends', { token, body: { name: 'a', address: `${HOST}:1` } }), 409, 'DUPLICATE_BACKEND');
  const taken = balancer.pool.get('b')!;
  assertError(await api(status, 'POST', '/api/backends', { token, body: { name: 'c', address: `${HOST}:${taken.port}` } }), 409, 'DUPLICATE_BACKEND');

  assert.equal(snapshot(balancer.pool), before, 'no refused call changed anything');
  // The status endpoint is still read-only and still never echoes.
  const post = await api(status, 'POST', '/stats', { body: hostile });
  assert.equal(post.status, 405);
  assert.doesNotMatch(post.text, /script/);
});

test('drain with a deadline: no new clients, what is left is closed at the deadline; ready ends it', async (t) => {
  const { balancer, status, lines } = await twoBackends(t);
  // One client on each backend.
  const clients: { socket: Socket; backend: string }[] = [];
  for (let i = 0; i < 20 && new Set(clients.map((c) => c.backend)).size < 2; i++) clients.push(await client(t, balancer.address.port));
  const onA = clients.find((c) => c.backend === 'a')!;
  assert.ok(onA, 'a client landed on a');
  const closed = new Promise((resolve) => onA.socket.once('close', resolve));

  const drained = await api(status, 'POST', '/api/backends/a/drain', { token: TOKEN, body: { timeoutMs: 300 } });
  assert.equal(drained.status, 202, drained.text);
  assert.equal(drained.json.admin, 'draining');
  assert.equal(drained.json.health, 'up');
  assert.equal(drained.json.state, 'draining');
  assert.equal(drained.json.eligible, false);
  for (let i = 0; i < 3; i++) assert.equal((await client(t, balancer.address.port)).backend, 'b', 'a draining backend takes no new client');
  await closed;
  assert.equal(balancer.pool.stats().teardowns['drained'], 1);
  assert.ok(lines.some((l) => l.endsWith('admin: draining backend a (deadline 300 ms)')), lines.join('\n'));

  const ready = await api(status, 'POST', '/api/backends/a/ready', { token: TOKEN });
  assert.equal(ready.status, 200);
  assert.equal(ready.json.admin, 'active');
  assert.equal(ready.json.state, 'up');
  const { events } = (await api(status, 'GET', '/api/events')).json;
  assert.deepEqual(
    events.filter((e) => e.backend === 'a' && e.axis === 'admin').map((e) => e.to),
    ['draining', 'up'],
  );
});

test('drain of a down backend is allowed: it only sets the admin axis', async (t) => {
  const { balancer, status } = await twoBackends(t);
  // Really down: its listener is gone, and the probe says so.
  await new Promise<void>((resolve) => servers.get(t)!.a.server.close(() => resolve()));
  await waitFor(() => balancer.pool.status('a')?.health === 'down', { what: 'a probed down' });
  const reply = await api(status, 'POST', '/api/backends/a/drain', { token: TOKEN });
  assert.equal(reply.status, 202);
  assert.equal(reply.json.health, 'down');
  assert.equal(reply.json.admin, 'draining');
  assert.equal(reply.json.state, 'down', 'health wins the one-word state');
  assert.equal(reply.json.cause.source, 'probe');
});

test('maintenance takes every member out now; PATCH changes weight and cap live; ready restores', async (t) => {
  const { balancer, status } = await twoBackends(t);
  const clients: { socket: Socket; backend: string }[] = [];
  for (let i = 0; i < 20 && clients.filter((c) => c.backend === 'b').length < 2; i++) clients.push(await client(t, balancer.address.port));
  const onB = clients.filter((c) => c.backend === 'b');
  const m = await api(status, 'POST', '/api/backends/b/maintenance', { token: TOKEN, body: {} });
  assert.equal(m.status, 200);
  assert.equal(m.json.admin, 'maintenance');
  assert.equal(m.json.tornDown, onB.length);
  assert.equal(m.json.members, 0);

  const patched = await api(status, 'PATCH', '/api/backends/a', { token: TOKEN, body: { weight: 2.5, maxConnections: 10 } });
  assert.equal(patched.status, 200, patched.text);
  assert.equal(patched.json.weight, 2.5);
  assert.equal(patched.json.maxConnections, 10);
  assert.equal(balancer.pool.get('a')!.weight, 2.5);
  const uncapped = await api(status, 'PATCH', '/api/backends/a', { token: TOKEN, body: { maxConnections: null } });
  assert.equal(uncapped.json.maxConnections, null);
  assert.equal(balancer.pool.get('a')!.maxConnections, Infinity);

  const ready = await api(status, 'POST', '/api/backends/b/ready', { token: TOKEN });
  assert.equal(ready.json.admin, 'active');
  assert.equal(ready.json.health, 'up');
});

test('POST /api/backends adds a backend the probe checks; DELETE drains then removes it', async (t) => {
  const { balancer, status, lines } = await twoBackends(t);
  const c = await echoServer(t);
  const added = await api(status, 'POST', '/api/backends', { token: TOKEN, body: { name: 'c', address: `${HOST}:${c.port}`, weight: 3 } });
  assert.equal(added.status, 201, added.text);
  assert.equal(added.json.id, 'c');
  assert.equal(added.json.weight, 3);
  assert.equal(added.json.health, 'unknown', 'no client before its first check');
  await waitFor(() => balancer.pool.status('c')?.health === 'up', { what: 'c probed up' });
  assert.ok(balancer.probe.health('c'), 'the probe follows the pool');

  // Without a name the address is the id, as on the command line.
  const d = await echoServer(t);
  const unnamed = await api(status, 'POST', '/api/backends', { token: TOKEN, body: { address: `${HOST}:${d.port}` } });
  assert.equal(unnamed.json.id, `${HOST}:${d.port}`);

  const removing = await api(status, 'DELETE', '/api/backends/c', { token: TOKEN, body: { timeoutMs: 0 } });
  assert.equal(removing.status, 202);
  await waitFor(() => !balancer.pool.has('c'), { what: 'c removed' });
  assert.equal(balancer.probe.health('c'), undefined);
  const removeUnnamed = await api(status, 'DELETE', `/api/backends/${encodeURIComponent(`${HOST}:${d.port}`)}`, { token: TOKEN });
  assert.equal(removeUnnamed.status, 202);
  await waitFor(() => balancer.pool.backends().length === 2, { what: 'd removed' });
  assert.ok(lines.some((l) => l.endsWith('admin: backend c drained and removed')), lines.join('\n'));
});

test('POST /api/reload: 409 without a config file; the ids of what changed; 422 for an invalid file, nothing changed', async (t) => {
  const plain = await twoBackends(t);
  assertError(await api(plain.status, 'POST', '/api/reload', { token: TOKEN }), 409, 'NO_CONFIG_FILE');
  assert.ok(plain.lines.some((l) => / reload refused, running config kept: no config file/.test(l)));

  const a = await namedServer(t, 'a');
  const c = await namedServer(t, 'c');
  const dir = tempDir(t);
  const file = join(dir, 'balancer.json');
  const write = (backend: unknown): void =>
    writeFileSync(file, JSON.stringify({ backend, listen: `${HOST}:0`, check: 'tcp', interval: 300, rise: 1, fall: 3, status: '0', 'admin-token-file': 'admin.token', 'drain-timeout': 300 }));
  writeFileSync(join(dir, 'admin.token'), TOKEN, { mode: 0o600 });
  write([`a=${HOST}:${a.port}`]);
  const { balancer, status } = await startAdminBalancer(t, [], { token: false, extra: ['--config', file], reloadable: true });
  const ok = await api(status, 'POST', '/api/reload', { token: TOKEN });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, { added: [], updated: [], removed: [], replaced: [], unchanged: ['a'], restartNeeded: [] });

  write([`a=${HOST}:${a.port}`, { name: 'c', address: `${HOST}:${c.port}`, weight: 2 }]);
  const grown = await api(status, 'POST', '/api/reload', { token: TOKEN });
  assert.deepEqual(grown.json.added, ['c']);
  assert.equal(balancer.pool.get('c')!.weight, 2);
  // Probed like any other (and settled, so the probe changes nothing below).
  await waitFor(() => balancer.pool.status('c')?.health === 'up', { what: 'c probed up' });

  // c's address changes under the same name: replaced, probed anew.
  const c2 = await namedServer(t, 'c2');
  write([`a=${HOST}:${a.port}`, { name: 'c', address: `${HOST}:${c2.port}`, weight: 2 }]);
  const moved = await api(status, 'POST', '/api/reload', { token: TOKEN });
  assert.deepEqual(moved.json, { added: [], updated: [], removed: [], replaced: ['c'], unchanged: ['a'], restartNeeded: [] });
  assert.equal(balancer.pool.get('c')!.port, c2.port);
  await waitFor(() => balancer.pool.status('c')?.health === 'up', { what: 'the new c probed up' });

  // A short or unreadable token file is refused like any bad setting.
  writeFileSync(join(dir, 'admin.token'), 'short');
  const weak = await api(status, 'POST', '/api/reload', { token: TOKEN });
  assertError(weak, 422, 'CONFIG_INVALID');
  assert.match(weak.json.message, /--admin-token-file .*: expected one line of 32 to 4096 printable characters/);
  writeFileSync(join(dir, 'admin.token'), TOKEN, { mode: 0o600 });

  const before = snapshot(balancer.pool);
  writeFileSync(file, '{"backend": ["a=');
  const bad = await api(status, 'POST', '/api/reload', { token: TOKEN });
  assertError(bad, 422, 'CONFIG_INVALID');
  assert.match(bad.json.message, /not valid JSON/);
  write([`a=${HOST}:${a.port}`, `a=${HOST}:${c.port}`]);
  assertError(await api(status, 'POST', '/api/reload', { token: TOKEN }), 422, 'CONFIG_INVALID');
  assert.equal(snapshot(balancer.pool), before);
});

test('status listener: the page, its script and style under a strict CSP; the path is never echoed', async (t) => {
  const { status } = await twoBackends(t);
  const page = await api(status, 'GET', '/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html; charset=utf-8/);
  const csp = String(page.headers['content-security-policy']);
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"]) {
    assert.ok(csp.includes(directive), directive);
  }
  assert.doesNotMatch(page.text, /<script>|<style>| style=| on[a-z]+=/i, 'no inline script, style or handler');
  assert.match(page.text, /<script src="\/status.js" defer><\/script>/);
  const js = await api(status, 'GET', '/status.js');
  assert.match(String(js.headers['content-type']), /^text\/javascript/);
  assert.doesNotMatch(js.text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/, 'DOM built with textContent only');
  const css = await api(status, 'GET', '/status.css');
  assert.match(String(css.headers['content-type']), /^text\/css/);
  const missing = await api(status, 'GET', '/%3Cimg%20src=x%3E');
  assert.equal(missing.status, 404);
  assert.doesNotMatch(missing.text, /img/);
});

test('nothing from the request comes back: paths, headers, bodies and tokens with a marker; names are escaped JSON', async (t) => {
  const { balancer, status } = await twoBackends(t);
  const marker = 'EcH0mArKeR';
  const raw = async (request: string): Promise<string> => {
    const c = netConnect({ host: HOST, port: status });
    c.on('error', () => undefined);
    t.after(() => c.destroy());
    await once(c, 'connect');
    let text = '';
    c.setEncoding('utf8').on('data', (d: string) => (text += d));
    c.end(request);
    await new Promise((resolve) => c.once('close', resolve));
    return text;
  };
  const bodies = [`{"${marker}":1}`, `{"timeoutMs":"${marker}"}`, `${marker}`, `{"weight":"${marker}"}`, `{"name":"${marker}<","address":"${marker}:1"}`];
  const paths = [`/api/backends/${marker}`, `/api/backends/a/${marker}`, `/api/backends/a/drain?${marker}`, '/api/backends/a', '/api/backends', '/api/reload', `/api/${marker}`, `/api/events?after=${marker}`];
  for (const method of ['GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'OPTIONS']) {
    for (const path of paths) {
      for (const auth of [`Bearer ${TOKEN}`, `Bearer ${marker}`, marker]) {
        const body = bodies[(method.length + path.length) % bodies.length]!;
        const res = await raw(`${method} ${path} HTTP/1.1\r\nHost: ${marker}\r\nAuthorization: ${auth}\r\nX-${marker}: ${marker}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
        assert.match(res, /^HTTP\/1\.1 \d{3} /, `${method} ${path}`);
        assert.ok(!res.includes(marker), `${method} ${path} (${auth.slice(0, 12)}) echoed request data: ${res.slice(0, 400)}`);
      }
    }
  }
  assert.deepEqual(balancer.pool.backends().map((b) => b.id), ['a', 'b'], 'no marker became a backend');

  // A name from elsewhere (a pool fed by other code holds any string) is escaped JSON: no '<' on the wire.
  const evil = await echoServer(t);
  const name = '<img src=x onerror=alert(1)>&\u2028';
  balancer.pool.add({ id: name, host: HOST, port: evil.port });
  const list = await api(status, 'GET', '/api/backends');
  assert.doesNotMatch(list.text, /[<>&\u2028]/);
  assert.ok(list.json.backends.some((b) => b.id === name), 'the JSON still reads back the name');
});

test('the events ring is bounded and oldest-first', (t) => {
  const pool = new UpstreamPool({ backends: [{ host: HOST, port: 1, id: 'x' }] });
  t.after(() => pool.destroy());
  const recent = new RecentEvents(pool, { size: 3, now: () => 42 });
  t.after(() => recent.close());
  for (let i = 0; i < 5; i++) {
    pool.markDown('x');
    pool.markUp('x');
  }
  const kept = recent.since(0);
  assert.deepEqual(kept.map((e) => e.seq), [8, 9, 10]);
  assert.deepEqual(kept.map((e) => e.to), ['up', 'down', 'up']);
  assert.equal(kept[0]!.at, 42);
  assert.deepEqual(recent.since(9).map((e) => e.seq), [10]);
  recent.close();
  pool.markDown('x');
  assert.equal(recent.since(0).length, 3, 'closed: no longer listening');
});

test('the status listener holds at most MAX_CONNECTIONS connections: one more is served and evicts the longest-idle', async (t) => {
  const { status } = await twoBackends(t);
  const idle: Socket[] = [];
  for (let i = 0; i < MAX_CONNECTIONS; i++) idle.push(await connect(t, status));
  // Accepted and counted by the server before the next one arrives.
  await new Promise((r) => setTimeout(r, 50));
  const page = await api(status, 'GET', '/api/backends');
  assert.equal(page.status, 200, 'one connection too many is served, not refused');
  // The cap holds: the oldest idle connection made room.
  await waitFor(() => idle[0]!.destroyed || idle[0]!.readableEnded, { what: 'the oldest idle connection closed' });
  assert.equal(idle.slice(1).filter((s) => s.destroyed || s.readableEnded).length, 0, 'only the oldest was evicted');
  for (const s of idle) s.destroy();
});

test('DELETE then ready: the removal is called off and logged as such, never as "drained and removed"', async (t) => {
  const { balancer, status, lines } = await twoBackends(t);
  // Clients that never answer a FIN keep a's drain going until the operator changes their mind.
  const clients = [await client(t, balancer.address.port), await client(t, balancer.address.port)];
  assert.ok(clients.some((c) => c.backend === 'a'), 'a client on a');
  const removing = await api(status, 'DELETE', '/api/backends/a', { token: TOKEN, body: { timeoutMs: 30_000 } });
  assert.equal(removing.status, 202);
  assert.equal(balancer.pool.status('a')?.admin, 'draining');
  const ready = await api(status, 'POST', '/api/backends/a/ready', { token: TOKEN });
  assert.equal(ready.status, 200, ready.text);
  await waitFor(() => lines.some((l) => l.endsWith('admin: removal of a called off (ready); backend a stays')), { what: 'the called-off line' });
  assert.equal(balancer.pool.has('a'), true);
  assert.ok(!lines.some((l) => l.endsWith('admin: backend a drained and removed')), lines.join('\n'));
});
