// The reference balancer as an operator runs it, in both modes: one process,
// and `--workers 2` (a primary and two workers). The same test bodies run in
// each, so `--workers` stays the same balancer: /livez and /readyz, the admin
// API (drain and its second deadline, maintenance, weight, remove, re-add),
// the admin socket and the Host allow-list, a SIGHUP reload (kept, updated,
// drained, added; an invalid file refused), a reload's drain deadline on
// SIGTERM, a backend failing while it drains for removal, and the second
// signal.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { TOKEN, api, tempDir, type ApiReply } from './helpers/admin.js';
import { modes, startMode, type RunningCli } from './helpers/cli.js';
import { HOST, connect, namedServer, readLine, waitFor } from './helpers/net.js';

/** `promtool check metrics` on `text`: its complaints, or why it could not run. */
function promtool(text: string): { ran: boolean; output: string } {
  const run = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  if (run.error !== undefined) return { ran: false, output: run.error.message };
  return { ran: true, output: `${run.status ?? ''} ${run.stdout}${run.stderr}`.trim() };
}
const hasPromtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).error === undefined;

interface Stats {
  readonly total: number;
  readonly teardowns: Record<string, number>;
  readonly backends: { id: string; state: string; admin: string; members: number }[];
  /** Only with --workers. */
  readonly workers?: { worker: number; total: number; members: Record<string, number> }[];
}

/** Clients each process accepted so far (one entry in one process). */
function totals(s: Stats): number[] {
  return s.workers === undefined ? [s.total] : s.workers.map((w) => w.total);
}

/**
 * New clients until every process that accepts (both workers, or the one
 * process) took at least `each` of them (bounded: 200 clients); the backends
 * they landed on.
 */
async function clientsEverywhere(t: TestContext, cli: RunningCli, into: { socket: Socket; backend: string }[], each: number): Promise<string[]> {
  const before = totals(await stats(cli.status));
  const landed: string[] = [];
  for (let i = 0; i < 200; i++) {
    const socket = await connect(t, cli.listen);
    const backend = await readLine(socket);
    into.push({ socket, backend });
    landed.push(backend);
    const now = totals(await stats(cli.status));
    if (now.length === before.length && now.every((n, k) => n - before[k]! >= each)) return landed;
  }
  assert.fail(`every process took ${each} new clients: ${JSON.stringify(await stats(cli.status))}`);
}

async function stats(port: number): Promise<Stats> {
  const reply = await api(port, 'GET', '/stats');
  assert.equal(reply.status, 200, reply.text);
  return JSON.parse(reply.text) as Stats;
}

/** Polls an answer until `ok` holds (bounded; a safety net, not a speed assertion). */
async function poll<T>(get: () => Promise<T>, ok: (value: T) => boolean, what: string, timeout = 30_000): Promise<T> {
  const start = Date.now();
  let last: T | undefined;
  while (Date.now() - start < timeout) {
    last = await get();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

/** One request over the admin socket: its status and body. */
function overSocket(socketPath: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method, agent: false, headers: method === 'POST' ? { 'content-type': 'application/json', 'content-length': '0' } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function status(reply: ApiReply, expected: number): ApiReply {
  assert.equal(reply.status, expected, reply.text);
  return reply;
}

/**
 * Clients until `name` holds some in every process that accepts (both
 * workers, or the one process); bounded: 120 clients.
 */
async function clientsOn(t: TestContext, cli: RunningCli, name: string, into: { socket: Socket; backend: string }[]): Promise<void> {
  const spread = (s: Stats): boolean =>
    s.workers === undefined ? (s.backends.find((b) => b.id === name)?.members ?? 0) > 0 : s.workers.length === 2 && s.workers.every((w) => (w.members[name] ?? 0) > 0);
  for (let i = 0; i < 120; i++) {
    const socket = await connect(t, cli.listen);
    into.push({ socket, backend: await readLine(socket) });
    if (into.some((c) => c.backend === name) && spread(await stats(cli.status))) return;
  }
  assert.fail(`every process placed clients on ${name}: ${JSON.stringify(await stats(cli.status))}`);
}

for (const mode of modes) {
  test(`${mode}: /livez and /readyz follow the verdicts; a reloaded drain-timeout is the one SIGTERM uses`, { timeout: 120_000 }, async (t) => {
    const a = await namedServer(t, 'a');
    const dir = tempDir(t);
    const file = join(dir, 'balancer.json');
    const write = (port: number, drainTimeout: number): void =>
      writeFileSync(
        file,
        JSON.stringify({ backend: [`a=${HOST}:${port}`], listen: `${HOST}:0`, check: 'tcp', interval: 300, rise: 1, fall: 2, status: '0', 'drain-timeout': drainTimeout }),
      );
    write(a.port, 60_000);
    const cli = await startMode(t, mode, ['--config', file]);
    const readyz = (): Promise<number> => api(cli.status, 'GET', '/readyz').then((r) => r.status);
    await poll(readyz, (s) => s === 200, '/readyz 200 with a backend up');
    assert.equal((await api(cli.status, 'GET', '/livez')).status, 200);

    // The only backend stops answering its checks: not ready, still alive.
    a.server.close();
    await poll(readyz, (s) => s === 503, '/readyz 503 with no backend up');
    assert.equal((await api(cli.status, 'GET', '/livez')).status, 200, 'alive all the same: restarting would not bring a backend up');

    // A reload moves a elsewhere and shortens the drain deadline.
    const moved = await namedServer(t, 'a');
    write(moved.port, 400);
    cli.child.kill('SIGHUP');
    await waitFor(() => cli.lines.some((l) => l.includes(' reload: ')), { what: 'the reload line' });
    await poll(readyz, (s) => s === 200, '/readyz 200 again');
    const client = await connect(t, cli.listen);
    assert.equal(await readLine(client), 'a');

    // SIGTERM with that client open: the reloaded 400 ms, not the 60 s the balancer started with.
    // Told at the deadline: a FIN (the client is half-open) or a reset.
    const closed = new Promise((resolve) => {
      client.once('end', resolve);
      client.once('close', resolve);
    });
    client.resume();
    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    const [code] = await cli.exited;
    const took = Date.now() - signalled;
    assert.equal(code, 0, cli.stderr());
    await closed;
    const text = cli.lines.join('\n');
    assert.match(text, mode === 'workers' ? /2 workers draining, 400 ms to finish/ : /1 connection open, 400 ms to finish/);
    assert.doesNotMatch(text, /60000 ms to finish/);
    // Far below the 60 s deadline of the start (a bound, not a speed claim).
    assert.ok(took < 30_000, `stopped ${took} ms after SIGTERM`);
    t.diagnostic(`${mode}: stopped ${took} ms after SIGTERM (reloaded drain-timeout 400 ms, started with 60000)`);
  });

  test(`${mode}: a backend draining for removal is still checked; re-adding it waits for the removal; the second SIGTERM closes at once`, { timeout: 180_000 }, async (t) => {
    const a = await namedServer(t, 'a');
    const b = await namedServer(t, 'b');
    const dir = tempDir(t);
    writeFileSync(join(dir, 'admin.token'), TOKEN, { mode: 0o600 });
    const cli = await startMode(t, mode, [
      '--listen', `${HOST}:0`,
      '--backend', `a=${HOST}:${a.port}`,
      '--backend', `b=${HOST}:${b.port}`,
      '--check', 'tcp', '--interval', '300', '--rise', '1', '--fall', '2',
      '--status', '0', '--admin-token-file', join(dir, 'admin.token'),
      '--strategy', 'round-robin', '--slow-start', '0', '--drain-timeout', '60000',
    ]);
    await poll(() => stats(cli.status), (s) => s.backends.every((x) => x.state === 'up'), 'both backends up');
    const clients: { socket: Socket; backend: string }[] = [];
    await clientsOn(t, cli, 'a', clients);
    const onA = clients.filter((c) => c.backend === 'a');

    // Removal with a 60 s drain: still listed, draining, its clients stay.
    const removing = status(await api(cli.status, 'DELETE', '/api/backends/a', { token: TOKEN, body: { timeoutMs: 60_000 } }), 202);
    assert.equal(removing.json.admin, 'draining');
    // Back during its drain: refused, as the name is still taken (in a single process too).
    const early = status(await api(cli.status, 'POST', '/api/backends', { token: TOKEN, body: { name: 'a', address: `${HOST}:${a.port}` } }), 409);
    assert.equal(early.json.error, 'DUPLICATE_BACKEND');
    const listed = status(await api(cli.status, 'GET', '/api/backends/a'), 200).json;
    assert.deepEqual([listed.admin, listed.members], ['draining', onA.length]);

    // a fails while it drains: it is still checked, so its clients are torn down long before the 60 s deadline.
    const torn = Promise.all(onA.filter((c) => !c.socket.closed).map((c) => new Promise((resolve) => c.socket.once('close', resolve))));
    for (const c of onA) c.socket.resume();
    a.server.close();
    const failed = Date.now();
    await torn;
    const after = Date.now() - failed;
    assert.ok(after < 30_000, `clients of the failed draining backend closed ${after} ms after it failed`);
    t.diagnostic(`${mode}: ${onA.length} clients of the failed draining backend closed ${after} ms after its listener closed`);
    await waitFor(() => cli.lines.some((l) => / backend a draining -> down \(probe-failed/.test(l)), { what: 'the down line' });
    // Drained (nothing left): removed everywhere.
    await poll(() => api(cli.status, 'GET', '/api/backends/a'), (r) => r.status === 404, 'a removed once drained');

    // Added back (at a new address): every process places clients on it.
    const back = await namedServer(t, 'a');
    status(await api(cli.status, 'POST', '/api/backends', { token: TOKEN, body: { name: 'a', address: `${HOST}:${back.port}` } }), 201);
    await poll(() => stats(cli.status), (s) => s.backends.find((x) => x.id === 'a')?.state === 'up', 'a up again');
    await clientsOn(t, cli, 'a', clients);
    assert.ok(!cli.lines.some((l) => l.includes('did not apply')), cli.lines.join('\n'));

    // SIGTERM: draining for 60 s, not ready; the second SIGTERM closes what is left now.
    cli.child.kill('SIGTERM');
    await waitFor(() => cli.lines.some((l) => l.includes('shutting down: not accepting')), { what: 'the shutdown line' });
    assert.equal((await api(cli.status, 'GET', '/readyz')).status, 503, 'not ready while draining');
    cli.child.kill('SIGTERM');
    const [code] = await cli.exited;
    assert.equal(code, 0, cli.stderr());
    assert.equal(cli.stderr(), '');
  });

  test(`${mode}: drain through the admin API: no process places on it, a sooner second deadline applies, what is left is closed as drained; maintenance tears down every process's clients and says how many; weight 0 takes none`, { timeout: 180_000 }, async (t) => {
    const a = await namedServer(t, 'a');
    const b = await namedServer(t, 'b');
    const dir = tempDir(t);
    writeFileSync(join(dir, 'admin.token'), TOKEN, { mode: 0o600 });
    const cli = await startMode(t, mode, [
      '--listen', `${HOST}:0`,
      '--backend', `a=${HOST}:${a.port}`,
      '--backend', `b=${HOST}:${b.port}`,
      // Quick to rise, slow to fall: a check timing out on a loaded machine must not take a backend down here.
      '--check', 'tcp', '--interval', '300', '--rise', '1', '--fall', '5',
      '--status', '0', '--admin-token-file', join(dir, 'admin.token'),
      '--strategy', 'round-robin', '--slow-start', '0', '--drain-timeout', '60000', '--no-rebalance',
    ]);
    await poll(() => stats(cli.status), (s) => s.backends.every((x) => x.state === 'up'), 'both backends up');
    const clients: { socket: Socket; backend: string }[] = [];
    await clientsOn(t, cli, 'a', clients);
    const onA = clients.filter((c) => c.backend === 'a');
    const aClosed = Promise.all(onA.map((c) => new Promise((resolve) => c.socket.once('close', resolve))));
    // The clients answer a FIN: the drain's deadline, not the clients, decides when they go.
    for (const c of onA) c.socket.resume();

    // A 60 s drain: still listed, its clients stay, no process places on it.
    const drained = status(await api(cli.status, 'POST', '/api/backends/a/drain', { token: TOKEN, body: { timeoutMs: 60_000 } }), 202);
    assert.equal(drained.json.admin, 'draining');
    assert.equal(drained.json.members, onA.length, 'members are every process\'s');
    const meanwhile = await clientsEverywhere(t, cli, clients, 2);
    assert.ok(!meanwhile.includes('a'), `nothing placed on a draining backend: ${meanwhile.join(' ')}`);
    assert.equal(onA.filter((c) => c.socket.closed).length, 0, 'a drain closes nothing before its deadline');

    // A second drain with a sooner deadline brings it forward; what is left closes then, as drained.
    status(await api(cli.status, 'POST', '/api/backends/a/drain', { token: TOKEN, body: { timeoutMs: 300 } }), 202);
    const sooner = Date.now();
    await aClosed;
    const took = Date.now() - sooner;
    // Far below the first deadline of 60 s (a bound against it, not a speed claim).
    assert.ok(took < 30_000, `the drained clients closed ${took} ms after the 300 ms deadline was asked for`);
    t.diagnostic(`${mode}: ${onA.length} drained clients closed ${took} ms after the second drain (300 ms)`);
    const afterDrain = await poll(() => stats(cli.status), (s) => (s.teardowns['drained'] ?? 0) === onA.length, `${onA.length} closed as drained`);
    assert.equal(afterDrain.backends.find((x) => x.id === 'a')?.members, 0);
    assert.ok(cli.lines.some((l) => l.endsWith('admin: backend a already draining (deadline 300 ms applies if sooner)')), cli.lines.join('\n'));

    // Ready: every process places on a again.
    status(await api(cli.status, 'POST', '/api/backends/a/ready', { token: TOKEN }), 200);
    const before = clients.length;
    await clientsOn(t, cli, 'a', clients);
    assert.ok(clients.slice(before).some((c) => c.backend === 'a'));

    // Maintenance: every process's clients of a torn down now, and the answer counts them all.
    const aOpen = clients.filter((c) => c.backend === 'a' && !c.socket.closed);
    const aGone = Promise.all(aOpen.map((c) => new Promise((resolve) => c.socket.once('close', resolve))));
    for (const c of aOpen) c.socket.resume();
    const maintenance = status(await api(cli.status, 'POST', '/api/backends/a/maintenance', { token: TOKEN }), 200);
    assert.equal(maintenance.json.admin, 'maintenance');
    assert.equal(maintenance.json.tornDown, aOpen.length);
    await aGone;
    const logged = cli.lines.filter((l) => / backend a up -> maintenance \(maintenance\), \d+ connections? torn down$/.test(l));
    assert.equal(logged.length, mode === 'workers' ? 2 : 1, `each process logs its own:\n${cli.lines.join('\n')}`);
    status(await api(cli.status, 'POST', '/api/backends/a/ready', { token: TOKEN }), 200);

    // Weight 0 on b: no process places on it (a takes everything).
    const weighed = status(await api(cli.status, 'PATCH', '/api/backends/b', { token: TOKEN, body: { weight: 0 } }), 200);
    assert.equal(weighed.json.weight, 0);
    const weightless = await clientsEverywhere(t, cli, clients, 2);
    assert.deepEqual([...new Set(weightless)], ['a'], 'a backend of weight 0 takes no new client');
    assert.ok(!cli.lines.some((l) => l.includes('did not apply')), cli.lines.join('\n'));

    // Two signals sent at once may arrive as one: the second after the first is handled.
    cli.child.kill('SIGTERM');
    await waitFor(() => cli.lines.some((l) => l.includes('shutting down: not accepting')), { what: 'the shutdown line' });
    cli.child.kill('SIGTERM');
    const [code] = await cli.exited;
    assert.equal(code, 0, cli.stderr());
    assert.equal(cli.stderr(), '');
  });

  test(`${mode}: SIGHUP reloads --config; the unchanged backend keeps its connections, the changed one updates live, the removed one drains, the new one is probed; an invalid file changes nothing`, { timeout: 120_000 }, async (t) => {
    const servers = { a: await namedServer(t, 'a'), b: await namedServer(t, 'b'), c: await namedServer(t, 'c'), d: await namedServer(t, 'd') };
    const dir = tempDir(t);
    const file = join(dir, 'balancer.json');
    writeFileSync(join(dir, 'admin.token'), TOKEN, { mode: 0o600 });
    // No rebalancing: once d's slow start is half over, moves toward it would
    // close survivors, and `lost` counts only what the reload closes.
    const write = (backend: unknown): void =>
      writeFileSync(
        file,
        JSON.stringify({
          backend, listen: `${HOST}:0`, check: 'tcp', interval: 300, rise: 1, fall: 3, status: '0', 'admin-token-file': 'admin.token', 'drain-timeout': 400, strategy: 'round-robin', 'no-rebalance': true,
        }),
      );
    const at = (name: keyof typeof servers): string => `${HOST}:${servers[name].port}`;
    write([`a=${at('a')}`, { name: 'b', address: at('b'), weight: 1 }, `c=${at('c')}`]);

    const cli = await startMode(t, mode, ['--config', file]);
    const { child, lines } = cli;
    const processes = mode === 'workers' ? 2 : 1;
    const backends = async (): Promise<Record<string, { admin: string; health: string; weight: number; members: number }>> => {
      const list = (await api(cli.status, 'GET', '/api/backends')).json.backends;
      return Object.fromEntries(list.map((b) => [b.id, b]));
    };
    await poll(() => stats(cli.status), (s) => s.backends.length === 3 && s.backends.every((x) => x.state === 'up'), 'three backends up');

    // Clients on every backend in every process (round-robin), every one answering.
    const clients: { socket: Socket; backend: string }[] = [];
    for (const name of ['a', 'b', 'c']) await clientsOn(t, cli, name, clients);
    const on = (name: string): Socket[] => clients.filter((c) => c.backend === name).map((c) => c.socket);
    const cClosed = Promise.all(on('c').map((s) => new Promise((resolve) => s.once('close', resolve))));
    // They answer the drain's FIN, or are closed at its 400 ms deadline.
    for (const s of on('c')) s.resume();
    const survivors = [...on('a'), ...on('b')];
    let lost = 0;
    for (const s of survivors) s.once('close', () => lost++);

    // b's weight changes, c goes, d comes: SIGHUP.
    write([`a=${at('a')}`, { name: 'b', address: at('b'), weight: 3 }, `d=${at('d')}`]);
    child.kill('SIGHUP');
    await waitFor(() => lines.some((l) => l.includes(' reload: ')), { what: 'the reload line' });
    assert.match(lines.find((l) => l.includes(' reload: '))!, / reload: added d; updated b; draining c \(400 ms\); replaced -; unchanged a$/);
    await cClosed;
    await waitFor(() => lines.filter((l) => / backend c removed$/.test(l)).length === processes, { what: 'c removed in every process' });
    await waitFor(() => lines.filter((l) => / backend d unknown -> up/.test(l)).length === processes, { what: 'd probed up in every process' });
    const after = await poll(backends, (b) => Object.keys(b).sort().join() === 'a,b,d', 'a, b and d listed');
    assert.equal(after['b']!.weight, 3);
    await clientsOn(t, cli, 'd', clients);
    assert.equal(lost, 0, 'no connection of an unchanged or updated backend was closed');
    for (const s of survivors) {
      s.write('still here\n');
      assert.equal(await readLine(s), 'still here');
    }

    // An invalid file: one line with the reason, the running config stays.
    writeFileSync(file, '{"backend": ["a=127.0.0.1:1"], "rise": 0}');
    child.kill('SIGHUP');
    await waitFor(() => lines.some((l) => l.includes('reload refused')), { what: 'the refusal line' });
    assert.match(lines.find((l) => l.includes('reload refused'))!, /reload refused, running config kept: .*"rise": expected an integer from 1 to 1000, got 0$/);
    assert.deepEqual(Object.keys(await backends()).sort(), ['a', 'b', 'd']);
    assert.equal(lost, 0);
    const refused = await api(cli.status, 'POST', '/api/reload', { token: TOKEN });
    assert.equal(refused.status, 422);
    assert.equal(refused.json.error, 'CONFIG_INVALID');
    assert.ok(!lines.some((l) => l.includes('did not apply')), lines.join('\n'));

    child.kill('SIGTERM');
    const [code] = await cli.exited;
    assert.equal(code, 0, cli.stderr());
    assert.equal(cli.stderr(), '');
  });

  test(`${mode}: --admin-socket is mode 0600, serves the API without a token and is removed at exit; a foreign Host is refused, probes answer any`, { timeout: 90_000 }, async (t) => {
    const a = await namedServer(t, 'a');
    const dir = tempDir(t);
    const path = join(dir, 'admin.sock');
    // No token file: over TCP the API is read-only; over the socket its permissions are the credential.
    const cli = await startMode(t, mode, ['--listen', `${HOST}:0`, '--backend', `a=${HOST}:${a.port}`, '--check', 'tcp', '--interval', '300', '--rise', '1', '--status', '0', '--admin-socket', path]);
    assert.ok(lstatSync(path).isSocket());
    assert.equal(lstatSync(path).mode & 0o777, 0o600);
    status(await api(cli.status, 'POST', '/api/backends/a/drain', { token: TOKEN, body: {} }), 403);
    const drained = await overSocket(path, 'POST', '/api/backends/a/drain');
    assert.equal(drained.status, 202, drained.body);
    assert.equal((JSON.parse(drained.body) as { admin: string }).admin, 'draining');
    await poll(() => stats(cli.status), (s) => s.backends.find((x) => x.id === 'a')?.admin === 'draining', 'a draining in every process');
    assert.equal((await overSocket(path, 'GET', '/livez')).status, 200);
    // DNS rebinding: a page served under another name must not read the API, /stats or /metrics.
    for (const route of ['/', '/stats', '/metrics', '/api/backends']) {
      const refused = await api(cli.status, 'GET', route, { headers: { host: 'evil.example' } });
      assert.equal(refused.status, 421, route);
      assert.equal(refused.json.error, 'HOST_NOT_ALLOWED');
    }
    for (const probe of ['/livez', '/readyz']) assert.notEqual((await api(cli.status, 'GET', probe, { headers: { host: 'evil.example' } })).status, 421, probe);
    cli.child.kill('SIGTERM');
    const [code] = await cli.exited;
    assert.equal(code, 0, cli.stderr());
    assert.equal(existsSync(path), false, 'the socket file is removed at exit');
  });

  test(`${mode}: /metrics passes promtool with build, process, event-loop, bytes, check-latency and verdict families; the access log has one line per closed connection`, { timeout: 120_000 }, async (t) => {
    const a = await namedServer(t, 'a');
    const dir = tempDir(t);
    const accessLog = join(dir, 'access.log');
    const cli = await startMode(t, mode, [
      '--listen', `${HOST}:0`, '--backend', `a=${HOST}:${a.port}`, '--backend', `gone=${HOST}:1`,
      '--check', 'tcp', '--interval', '300', '--rise', '1', '--fall', '1', '--status', '0', '--access-log', accessLog,
    ]);
    await poll(() => stats(cli.status), (s) => s.backends.find((x) => x.id === 'a')?.state === 'up', 'a up');
    const client = await connect(t, cli.listen);
    assert.equal(await readLine(client), 'a');
    client.write('hello\n');
    assert.equal(await readLine(client), 'hello');
    client.end();
    await new Promise((resolve) => client.once('close', resolve));
    const line = await poll(
      () => {
        try {
          return Promise.resolve(readFileSync(accessLog, 'utf8'));
        } catch {
          return Promise.resolve('');
        }
      },
      (text) => text.includes('\n'),
      'the access log line',
    );
    const entries = line.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(entries.length, 1, line);
    const entry = entries[0]!;
    assert.equal(entry['backend'], 'a');
    assert.equal(entry['address'], `${HOST}:${a.port}`);
    assert.match(String(entry['client']), /^127\.0\.0\.1:\d+$/);
    assert.deepEqual([entry['bytesFromClient'], entry['bytesFromUpstream']], [6, 8]);
    assert.equal(typeof entry['durationMs'], 'number');
    assert.equal(typeof entry['reason'], 'string');
    assert.match(String(entry['time']), /^\d{4}-\d\d-\d\dT.*Z$/);
    if (mode === 'workers') assert.equal(typeof entry['worker'], 'number');

    const metrics = (await api(cli.status, 'GET', '/metrics')).text;
    assert.match(metrics, /^failover_proxy_build_info\{version="[^"]+",node="v\d+\.\d+\.\d+"\} 1$/m);
    const processes = mode === 'workers' ? ['primary', 'worker-1', 'worker-2'] : ['main'];
    for (const p of processes) {
      for (const family of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'process_max_fds', 'failover_proxy_event_loop_delay_max_seconds']) {
        assert.match(metrics, new RegExp(`^${family}\\{process="${p}"\\} [0-9.e+-]+$`, 'm'), `${family} of ${p}`);
      }
      assert.match(metrics, new RegExp(`^failover_proxy_event_loop_delay_seconds\\{process="${p}",quantile="0.99"\\} [0-9.e+-]+$`, 'm'));
    }
    assert.match(metrics, /^failover_proxy_backend_sent_bytes_total\{backend="a"\} 6$/m);
    assert.match(metrics, /^failover_proxy_backend_received_bytes_total\{backend="a"\} 8$/m);
    assert.match(metrics, /^failover_proxy_probe_duration_seconds_bucket\{backend="a",le="\+Inf"\} [1-9]/m);
    // Counted once (at the primary with --workers), not once per worker.
    assert.match(metrics, /^failover_proxy_backend_verdicts_total\{backend="a",health="up",cause="probe-passed"\} 1$/m);
    assert.match(metrics, /^failover_proxy_backend_verdicts_total\{backend="gone",health="down",cause="PROBE_CONNECT_FAILED"\} 1$/m);
    if (!hasPromtool) {
      t.diagnostic('promtool is not installed (Debian package prometheus): the exposition was not linted');
      return;
    }
    const lint = promtool(metrics);
    assert.ok(lint.ran, lint.output);
    assert.equal(lint.output, '0', `promtool check metrics:\n${lint.output}`);
  });
}
