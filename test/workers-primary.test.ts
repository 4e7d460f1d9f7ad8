// What the workers of `--workers 2` do when their primary stops answering
// (SIGSTOP, a stall) or dies (SIGKILL, a crash): they never keep serving on
// frozen verdicts. Silent primary: each worker checks the backends itself
// until the primary speaks again. Gone primary: each worker stops accepting
// (the port is free for the unit a supervisor restarts), keeps checking while
// its connections drain for drain-timeout, then exits 0.
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { api } from './helpers/admin.js';
import { startCli } from './helpers/cli.js';
import { HOST, connect, namedServer, readLine, waitFor } from './helpers/net.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: HOST, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

test('--workers 2: the primary killed, each worker stops accepting, drains for drain-timeout and exits 0', { timeout: 90_000 }, async (t) => {
  const a = await namedServer(t, 'a');
  const cli = await startCli(t, ['--listen', `${HOST}:0`, '--backend', `a=${HOST}:${a.port}`, '--check', 'tcp', '--interval', '300', '--rise', '1', '--status', '0', '--drain-timeout', '1500', '--workers', '2']);
  const workers = [...cli.pids];
  assert.equal(workers.length, 2, cli.lines.join('\n'));
  await waitFor(() => cli.lines.filter((l) => / worker \d: backend a unknown -> up/.test(l)).length === 2, { what: 'a up in both workers' });
  const client = await connect(t, cli.listen);
  assert.equal(await readLine(client), 'a');
  const told = new Promise((resolve) => {
    client.once('end', resolve);
    client.once('close', resolve);
  });
  client.resume();

  cli.child.kill('SIGKILL');
  await cli.exited;
  await waitFor(() => workers.every((pid) => !alive(pid)), { timeout: 30_000, interval: 50, what: 'both workers exited' });
  await told;
  const text = cli.lines.join('\n');
  for (let n = 1; n <= 2; n++) assert.match(text, new RegExp(` worker ${n}: the primary is gone: not accepting`), text);
  assert.match(text, /worker \d: stopped \(1 connection closed at the deadline\)/, text);
  // Nothing holds the port: a restarted unit can listen on it.
  assert.ok(await refused(cli.listen), 'the port is free');
});

test('--workers 2: the primary stopped, the workers check alone and tear down a failed backend; resumed, they follow it again', { timeout: 120_000 }, async (t) => {
  const a = await namedServer(t, 'a');
  const b = await namedServer(t, 'b');
  const cli = await startCli(t, [
    '--listen', `${HOST}:0`, '--backend', `a=${HOST}:${a.port}`, '--backend', `b=${HOST}:${b.port}`,
    '--check', 'tcp', '--interval', '300', '--rise', '1', '--fall', '2', '--status', '0', '--strategy', 'round-robin', '--slow-start', '0', '--workers', '2',
  ]);
  const primary = cli.child.pid!;
  t.after(() => {
    try {
      process.kill(primary, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  await waitFor(() => cli.lines.filter((l) => / worker \d: backend [ab] unknown -> up/.test(l)).length === 4, { what: 'both backends up in both workers' });
  const clients: { socket: Socket; backend: string }[] = [];
  for (let i = 0; i < 40 && clients.filter((c) => c.backend === 'a').length < 4; i++) {
    const socket = await connect(t, cli.listen);
    clients.push({ socket, backend: await readLine(socket) });
  }
  const onA = clients.filter((c) => c.backend === 'a');
  assert.ok(onA.length > 0);

  process.kill(primary, 'SIGSTOP');
  await waitFor(() => cli.lines.filter((l) => / worker \d: no word from the primary for \d+ ms: checking the backends in this worker/.test(l)).length === 2, {
    timeout: 30_000,
    interval: 50,
    what: 'both workers checking alone',
  });
  // a fails while the primary is stopped: the workers' own checks tear its clients down.
  const torn = Promise.all(onA.map((c) => new Promise((resolve) => c.socket.once('close', resolve))));
  for (const c of onA) c.socket.resume();
  a.server.close();
  await torn;
  assert.match(cli.lines.join('\n'), / worker \d: backend a up -> down \(probe-failed/);
  // The workers serve on meanwhile: a new client lands on b.
  const fresh = await connect(t, cli.listen);
  assert.equal(await readLine(fresh), 'b');

  process.kill(primary, 'SIGCONT');
  await waitFor(() => cli.lines.filter((l) => / worker \d: the primary answers again: following its verdicts/.test(l)).length === 2, { timeout: 30_000, interval: 50, what: 'both workers following the primary' });
  // The primary's own verdict on a arrives; its API is back.
  assert.equal((await api(cli.status, 'GET', '/livez')).status, 200);
  cli.child.kill('SIGTERM');
  const [code] = await cli.exited;
  assert.equal(code, 0, cli.stderr());
});
