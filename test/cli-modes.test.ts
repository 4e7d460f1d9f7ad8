// The reference balancer as an operator runs it, in both modes: one process,
// and `--workers 2` (a primary and two workers). The same test bodies run in
// each, so `--workers` stays the same balancer: /livez and /readyz, the admin
// API (drain, remove, re-add), a reload's drain deadline on SIGTERM, a
// backend failing while it drains for removal, and the second signal.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
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
  readonly backends: { id: string; state: string; admin: string; members: number }[];
  /** Only with --workers. */
  readonly workers?: { worker: number; members: Record<string, number> }[];
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
